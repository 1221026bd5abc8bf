"""SIGKILL-exact finals: a worker killed at random points while both input topics are fed.

Per seed: fresh topics, one record on each input topic-partition (so the watermark waits
for both topics from the start), then a live feed of exceptions and sends (in-grace
disorder, duplicate deliveries, late events, a storm) while one worker is SIGKILLed at
random moments and restarted — while it joins the group or recovers its table, or while
it processes — or frozen (SIGSTOP) past its session timeout, so the group rebalances
inside the running process; after the feed, sentinels close every window. The final
records must equal the reference model of ``crashmodel`` computed from the input topics
as read back from Kafka: every window has exactly its final, each final with the values
the input gives it, re-sent finals byte-identical.

CI runs ``CI_SEEDS``. ``GROUPWATCH_CRASH_SEEDS=20`` runs 20 randomized seeds instead
(printed, so a failing one can be re-run with ``GROUPWATCH_CRASH_SEED_LIST=<seed>``).
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from groupwatch.admin.topics import create_topics
from groupwatch.contracts import Settings, Topics
from groupwatch.contracts.keys import group_key
from groupwatch.contracts.records import EventKind, encode
from tests.stream.crashmodel import compare, expected_finals, generate, read_input
from tests.support.metrics import metric
from tests.support.stream import T0, Worker, exc, read_topic, send

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

CI_SEEDS = [101, 202]


def _seeds() -> list[int]:
    listed = os.environ.get("GROUPWATCH_CRASH_SEED_LIST")
    if listed:
        return [int(s) for s in listed.split(",") if s.strip()]
    n = int(os.environ.get("GROUPWATCH_CRASH_SEEDS", "0") or 0)
    if n > 0:
        base = random.SystemRandom().randrange(1, 1 << 30)
        return [base + i for i in range(n)]
    return CI_SEEDS


N_EVENTS = int(os.environ.get("GROUPWATCH_CRASH_EVENTS", "4000"))
RATE = 120.0  # records/s of the live feed
STEP_MS = 400  # event time between base events: 60 s windows fill with ~150 events


def _feed(settings: Settings, topics: Topics, records: list[Any], stop: threading.Event) -> None:
    producer = Producer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "linger.ms": 5,
            "enable.idempotence": True,
        }
    )
    names = {EventKind.EXCEPTION: topics.exceptions, EventKind.SEND: topics.sends}
    began = time.monotonic()
    for i, (kind, ev) in enumerate(records):
        if stop.is_set():
            break
        key = group_key(ev.sdkappid, ev.group_id).encode()
        producer.produce(names[kind], encode(ev), key, timestamp=ev.event_time_ms)
        if i % 20 == 0:
            producer.poll(0)
            ahead = began + i / RATE - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
    assert producer.flush(60) == 0


def _produce(settings: Settings, records: list[tuple[str, int, Any]]) -> None:
    """(topic, partition, event) records through one producer."""
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers})
    for topic, partition, ev in records:
        key = group_key(ev.sdkappid, ev.group_id).encode()
        producer.produce(topic, encode(ev), key, partition=partition, timestamp=ev.event_time_ms)
    assert producer.flush(60) == 0


def _busy(worker: Worker) -> bool:
    try:
        return metric(worker.metrics(), "groupwatch_stream_events_total") > 0
    except Exception:
        return False


def _caught_up(worker: Worker, partitions: int) -> bool:
    try:
        text = worker.metrics()
    except Exception:
        return False
    series = [ln for ln in text.splitlines() if ln.startswith("groupwatch_stream_lag{")]
    return len(series) == 2 * partitions and all(float(ln.rsplit(" ", 1)[1]) == 0 for ln in series)


@pytest.mark.parametrize("seed", _seeds())
def test_finals_exact_under_repeated_sigkills(
    kafka_bootstrap: str, tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    prefix = f"gwlive-{seed}-{uuid.uuid4().hex[:6]}"
    settings = Settings(
        kafka_bootstrap_servers=kafka_bootstrap,
        topic_prefix=prefix,
        state_dir=tmp_path,
        partitions=3,
        stream_app_id=f"gw-{prefix}",
        update_interval_seconds=1.0,
        retention_hours=24 * 365,
    )
    create_topics(settings)
    topics = Topics.from_settings(settings)
    t0 = T0 + 5 * 60_000  # a window boundary
    parts = range(settings.partitions)
    # both input topics hold data before the worker starts
    _produce(settings, [(topics.exceptions, p, exc(f"zz-seed-{p}", 10002, t0)) for p in parts])
    _produce(settings, [(topics.sends, p, send(f"zz-seed-{p}", t0)) for p in parts])
    plan = generate(seed, N_EVENTS, t0, STEP_MS)
    stop = threading.Event()
    feed = threading.Thread(target=_feed, args=(settings, topics, plan.records, stop))
    worker = Worker(settings, tmp_path, "w")
    kills: list[str] = []
    feed.start()
    try:
        feed_s = len(plan.records) / RATE
        began = time.monotonic()
        # kill points: while the feed runs and while the worker catches up after it
        while time.monotonic() - began < feed_s + 10 or len(kills) < 3:
            if worker.proc is None or worker.proc.poll() is not None:
                worker.start()
                worker.wait_healthy()
            r = rng.random()
            if r < 0.2:  # frozen past its session timeout: the group rebalances in-life
                deadline = time.monotonic() + 60
                while not _busy(worker) and time.monotonic() < deadline:
                    time.sleep(0.1)
                time.sleep(rng.uniform(0.0, 3.0))
                assert worker.proc is not None
                worker.proc.send_signal(signal.SIGSTOP)
                time.sleep(rng.uniform(11.0, 14.0))
                worker.proc.send_signal(signal.SIGCONT)
                kills.append("freeze")
                time.sleep(rng.uniform(0.0, 5.0))
                continue
            if r < 0.45:  # while it joins the group or recovers its table
                pause = rng.uniform(0.0, 8.0)
                time.sleep(pause)
                kills.append(f"join+{pause:.1f}")
            else:  # while it processes
                deadline = time.monotonic() + 60
                while not _busy(worker) and time.monotonic() < deadline:
                    time.sleep(0.1)
                pause = rng.choice([rng.uniform(0.05, 1.0), rng.uniform(1.0, 6.0)])
                time.sleep(pause)
                kills.append(f"busy+{pause:.1f}")
            worker.kill()
        feed.join(120)
        assert not feed.is_alive()
        end = plan.t_end + 3_600_000  # sentinels: every window closes
        _produce(settings, [(topics.exceptions, p, exc(f"zz-end-{p}", 10002, end)) for p in parts])
        _produce(settings, [(topics.sends, p, send(f"zz-end-{p}", end)) for p in parts])
        if worker.proc is None or worker.proc.poll() is not None:
            worker.start()
        worker.wait_healthy()
        deadline = time.monotonic() + 240
        while not _caught_up(worker, settings.partitions):
            assert time.monotonic() < deadline, worker.tail()
            time.sleep(1.0)
        exceptions = read_input(settings, topics.exceptions)
        sends = read_input(settings, topics.sends)
        expected = expected_finals(settings, exceptions, sends)
        records: list[tuple[str, dict[str, Any]]] = []
        problems: list[str] = ["not read yet"]
        deadline = time.monotonic() + 60
        while problems and time.monotonic() < deadline:
            records = read_topic(settings, topics.failure_windows, until=lambda r: False, timeout=3)
            problems = compare(expected, records)
    finally:
        stop.set()
        feed.join(120)
        worker.stop()
    print(
        f"seed {seed}: {len(plan.records)} records, {len(expected)} windows, "
        f"{len(kills)} kills after {kills} s of processing; exact: {not problems}"
    )
    assert not problems, (seed, kills, problems)
