"""A real worker on the real broker at the edges: poison records, quiet input, a clock
pushed ahead."""

from __future__ import annotations

import base64
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from confluent_kafka import Producer

from groupwatch.admin.topics import create_topics
from groupwatch.contracts import Settings, Topics
from groupwatch.contracts.keys import group_key
from groupwatch.contracts.records import encode
from tests.support.kafka import read_until
from tests.support.metrics import metric
from tests.support.stream import T0, Worker, close_all, exc, finals, produce, send

pytestmark = pytest.mark.kafka
S = 1000


@pytest.fixture
def edge(
    make_settings: Callable[..., Settings], topic_prefix: str, tmp_path: Path
) -> Iterator[Any]:
    """Settings, topics and a worker (not started yet); the worker is stopped at the end."""
    workers: list[Worker] = []

    def start(**overrides: object) -> tuple[Settings, Topics, Worker]:
        settings = make_settings(stream_app_id=f"gw-{topic_prefix}", **overrides)
        create_topics(settings)
        worker = Worker(settings, tmp_path)
        workers.append(worker)
        return settings, Topics.from_settings(settings), worker

    yield start
    for w in workers:
        w.stop()


def decoded(messages: list[Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(m.key().decode(), msgspec.json.decode(m.value())) for m in messages]


# --- no poison pill ------------------------------------------------------------------
def test_poison_records_go_to_the_dlq_and_the_worker_counts_the_good_ones(edge: Any) -> None:
    settings, topics, worker = edge()
    good_key = group_key("1400000001", "g").encode()
    base = msgspec.json.decode(encode(exc("g", 10004, T0 + S)))

    def body(**fields: object) -> bytes:
        return msgspec.json.encode({**base, **fields})

    bad_exceptions: list[tuple[bytes | None, bytes]] = [
        (good_key, b"this is not json"),
        (good_key, body(error_code=1 << 40)),
        (good_key, body(event_time_ms=95_617_584_000_000)),  # year 5000
        (good_key, body(event_time_ms=-60_000)),
        (good_key, body(error_code="10004", event_time_ms="soon")),  # strings for numbers
        (None, body(event_id="nullkey")),  # a good body without a key
        (good_key, body(group_id="x" * 1_000_000)),  # a 1 MB string
        (good_key, b"[1, 2, 3]"),  # a JSON array
        (good_key, b'{"event_id": "\xff\xfe", "sdkappid": "1"}'),  # invalid UTF-8
    ]
    bad_sends: list[tuple[bytes | None, bytes]] = [
        (good_key, b"\x00\x01binary"),
        (
            good_key,
            msgspec.json.encode(
                {**msgspec.json.decode(encode(send("g", T0))), "event_time_ms": -1}
            ),
        ),
    ]
    producer = Producer(
        {"bootstrap.servers": settings.bootstrap_servers, "message.max.bytes": 2_000_000}
    )
    offsets: dict[tuple[str, bytes], int] = {}

    def report(err: Any, msg: Any) -> None:
        assert err is None, err
        offsets[(msg.topic(), msg.value())] = msg.offset()

    good = 0
    for i, (key, value) in enumerate(bad_exceptions):
        for j in range(2):  # good ones interleaved, different senders (no dedup)
            ev = exc("g", 10004, T0 + (i * 2 + j + 1) * S, sender=f"u{i}-{j}")
            producer.produce(topics.exceptions, encode(ev), good_key, partition=0)
            good += 1
        producer.produce(topics.exceptions, value, key, partition=0, on_delivery=report)
        producer.poll(0)
    for i, (key, value) in enumerate(bad_sends):
        producer.produce(topics.sends, value, key, partition=0, on_delivery=report)
        producer.produce(topics.sends, encode(send("g", T0 + (2 + i) * S)), good_key, partition=0)
    assert producer.flush(30) == 0
    close_all(settings, topics, T0 + 600 * S)  # closes the window by event time
    worker.start()
    worker.wait_healthy()

    n_bad = len(bad_exceptions) + len(bad_sends)
    dlq = read_until(settings, topics.dlq, until=lambda r: len(r) >= n_bad)
    windows = decoded(
        read_until(
            settings,
            topics.failure_windows,
            until=lambda r: any(b'"final":true' in m.value() and b'"g"' in m.value() for m in r),
        )
    )
    assert worker.proc is not None and worker.proc.poll() is None, worker.tail()
    worker.wait_healthy()

    # every bad record in the DLQ, once, with where it was read and its exact bytes
    assert len(dlq) == n_bad
    by_source = {}
    for m in dlq:
        rec = msgspec.json.decode(m.value())
        assert rec["stage"] == "stream" and rec["reason"], rec
        raw = base64.b64decode(rec["raw_base64"])
        by_source[(rec["source_topic"], raw)] = rec
    for (topic, value), offset in offsets.items():
        rec = by_source[(topic, value)]
        assert rec["source_offset"] == offset and rec["source_partition"] == 0
    nullkey = by_source[(topics.exceptions, bad_exceptions[5][1])]
    assert nullkey["source_key"] is None and "no key" in nullkey["reason"]
    big = by_source[(topics.exceptions, bad_exceptions[6][1])]
    assert big["body_truncated"] and len(big["body"]) <= 4096

    # the good ones are counted exactly
    final = [v for _, v in finals(windows) if v["group_id"] == "g"]
    assert [(v["failures"], v["senders"], v["group_sends"]) for v in final] == [
        (good, good, len(bad_sends))
    ]

    # the accounting identity, from /metrics
    deadline = time.monotonic() + 30
    while True:
        text = worker.metrics()
        outcomes = {
            (kind, outcome): metric(
                text, "groupwatch_stream_records_total", kind=kind, outcome=outcome
            )
            for kind in ("exception", "send")
            for outcome in ("counted", "duplicate", "late", "rejected", "replayed")
        }
        read = {
            k: metric(text, "groupwatch_stream_records_read_total", kind=k)
            for k in ("exception", "send")
        }
        produced = {
            "exception": good + len(bad_exceptions) + settings.partitions,
            "send": 2 * len(bad_sends) + settings.partitions,
        }
        if read == produced or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert read == produced
    for kind in ("exception", "send"):
        assert sum(n for (k, _), n in outcomes.items() if k == kind) == read[kind]
    assert outcomes[("exception", "rejected")] == len(bad_exceptions)
    assert outcomes[("send", "rejected")] == len(bad_sends)
    assert outcomes[("exception", "counted")] == good + settings.partitions
    assert outcomes[("send", "counted")] == len(bad_sends) + settings.partitions


# --- windows close when the stream goes quiet ----------------------------------------
def _on_time(settings: Settings, topic: str, groups: list[str]) -> int:
    """One on-time exception (event time = received = now) per group on partition 0."""
    now = int(time.time() * 1000)
    produce(settings, topic, [exc(g, 10004, now) for g in groups], partition=0)
    return now


def _wait_finals(settings: Settings, topics: Topics, groups: set[str], timeout: float) -> float:
    """Seconds until every group has its final (fails after ``timeout``)."""
    began = time.monotonic()
    got: set[str] = set()

    def done(records: list[Any]) -> bool:
        for m in records:
            if b'"final":true' in m.value():
                got.add(msgspec.json.decode(m.value())["group_id"])
        return groups <= got

    read_until(settings, topics.failure_windows, until=done, timeout=timeout)
    assert groups <= got, f"{len(groups - got)} of {len(groups)} windows without a final"
    return time.monotonic() - began


def test_quiet_windows_close_with_small_windows(edge: Any) -> None:
    settings, topics, worker = edge(window_seconds=4, grace_seconds=2, idle_close_seconds=3)
    # the sends topic-partition got one record long ago: it must not hold windows back
    produce(settings, topics.sends, [send("old", T0)], partition=0)
    worker.start()
    worker.wait_healthy()
    groups = [f"q{i}" for i in range(20)]
    _on_time(settings, topics.exceptions, groups)
    _wait_finals(settings, topics, set(groups), timeout=90)
    late = read_until(settings, topics.late_events, until=lambda r: False, timeout=2)
    assert late == []


@pytest.mark.wallclock
@pytest.mark.slow
def test_sixty_on_time_callbacks_then_silence_all_final_at_the_defaults(edge: Any) -> None:
    """Defaults (60 s window, 30 s grace, 30 s idle allowance): finals within w + g + 90 s."""
    settings, topics, worker = edge()
    assert (settings.window_seconds, settings.grace_seconds) == (60, 30)
    assert settings.idle_close_seconds > 0
    produce(settings, topics.sends, [send("old", T0)], partition=0)
    worker.start()
    worker.wait_healthy()
    groups = [f"cb{i}" for i in range(60)]
    sent_at = time.monotonic()
    _on_time(settings, topics.exceptions, groups)
    bound = 60 + 30 + 90
    _wait_finals(settings, topics, set(groups), timeout=bound + 5)
    took = time.monotonic() - sent_at
    print(f"60 finals {took:.0f} s after the callbacks (bound {bound} s)")
    assert took <= bound


# --- a clock that cannot be pushed ahead ---------------------------------------------
def test_events_dated_ahead_never_make_on_time_events_late(edge: Any) -> None:
    settings, topics, worker = edge(
        window_seconds=5, grace_seconds=2, idle_close_seconds=3, max_future_seconds=1
    )
    worker.start()
    worker.wait_healthy()
    ahead_ms = 20 * S
    now = int(time.time() * 1000)
    future = [
        msgspec.structs.replace(exc(f"f{i}", 10004, now + ahead_ms + i * 10), received_at_ms=now)
        for i in range(60)
    ]
    produce(settings, topics.exceptions, future, partition=0)
    # on-time traffic for 25 s, each event dated when it is sent
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers, "linger.ms": 0})
    key = group_key("1400000001", "live").encode()
    expected: Counter[int] = Counter()
    size = settings.window_seconds * S
    end = time.monotonic() + 25
    k = 0
    while time.monotonic() < end:
        t = int(time.time() * 1000)
        producer.produce(
            topics.exceptions, encode(exc("live", 10004, t, sender=f"u{k}")), key, partition=0
        )
        producer.poll(0)
        expected[t - t % size] += 1
        k += 1
        time.sleep(0.25)
    assert producer.flush(30) == 0

    def complete(records: list[Any]) -> bool:
        got = {v["window_start_ms"] for _, v in finals(decoded(records)) if v["group_id"] == "live"}
        ahead = sum(1 for _, v in finals(decoded(records)) if v["group_id"].startswith("f"))
        return got >= set(expected) and ahead == 60

    records = decoded(read_until(settings, topics.failure_windows, until=complete, timeout=90))
    live = {
        v["window_start_ms"]: v["failures"] for _, v in finals(records) if v["group_id"] == "live"
    }
    assert live == dict(expected)
    ahead = [v for _, v in finals(records) if v["group_id"].startswith("f")]
    assert len(ahead) == 60 and sum(v["failures"] for v in ahead) == 60
    late = read_until(settings, topics.late_events, until=lambda r: False, timeout=2)
    assert late == []
