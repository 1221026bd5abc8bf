"""Helpers for the stream tests: craft events, produce them, run real workers, read topics."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import requests
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from groupwatch.contracts import Settings
from groupwatch.contracts.catalog import error_category
from groupwatch.contracts.keys import group_key, make_event_id
from groupwatch.contracts.records import EventKind, ExceptionEvent, SendEvent, decode, encode
from stream.batch import apply_batch
from stream.effects import Effects
from stream.state import PartitionState
from tests.processes import settings_env

APP = "1400000001"
HOUR_MS = 3_600_000
# Three hours ago, on the hour: a window boundary, and recent enough that the broker's
# time-based retention (Kafka timestamp = event time) does not delete the test input.
T0 = (int(time.time() * 1000) // HOUR_MS - 3) * HOUR_MS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def exc(
    group: str,
    code: int,
    t: int,
    sender: str = "alice",
    random: int | None = None,
    app: str = APP,
    group_type: str = "Public",
) -> ExceptionEvent:
    rnd = random if random is not None else (hash((group, code, t, sender)) & 0x7FFFFFFF)
    return ExceptionEvent(
        event_id=make_event_id(app, group, sender, rnd, t),
        sdkappid=app,
        group_id=group,
        group_type=group_type,
        from_account=sender,
        random=rnd,
        error_code=code,
        error_category=error_category(code),
        event_time_ms=t,
        received_at_ms=t,
    )


def send(
    group: str, t: int, sender: str = "bob", random: int | None = None, app: str = APP
) -> SendEvent:
    rnd = random if random is not None else (hash((group, "send", t, sender)) & 0x7FFFFFFF)
    return SendEvent(
        event_id=make_event_id(app, group, sender, rnd, t),
        sdkappid=app,
        group_id=group,
        group_type="Public",
        from_account=sender,
        random=rnd,
        event_time_ms=t,
        received_at_ms=t,
    )


# --- the worker's in-memory path without Kafka (``stream.batch.apply_batch``) ------------
IN_TOPIC = {EventKind.EXCEPTION: "in.exceptions", EventKind.SEND: "in.sends"}
TICKS_TOPIC = "in.ticks"
# (kind, offset, event) or (kind, offset, raw value, raw key)
Input = tuple[EventKind, int, Any] | tuple[EventKind, int, bytes | None, bytes | None]


def run_batch(
    state: PartitionState,
    records: Iterable[Input],
    now_ms: int,
    *,
    tick: bool = False,
    unread: dict[EventKind, bool] | None = None,
) -> Effects:
    """One fetched batch of partition ``state.p`` through the worker's code: records
    encoded as on the topics, decoded, stepped, a tick after them (when ``tick``,
    ``unread`` as the worker's positions would say), the ``Effects`` finished."""
    fetched: list[tuple[str, int, int, bytes | None, bytes | None]] = []
    for rec in records:
        if len(rec) == 3:
            kind, offset, ev = rec
            key: bytes | None = group_key(ev.sdkappid, ev.group_id).encode()
            value: bytes | None = encode(ev)
        else:
            kind, offset, value, key = rec  # type: ignore[misc]
        fetched.append((IN_TOPIC[kind], state.p, offset, value, key))
    if tick:
        fetched.append((TICKS_TOPIC, state.p, 0, str(now_ms).encode(), None))
    applied = apply_batch(
        fetched,
        exceptions=IN_TOPIC[EventKind.EXCEPTION],
        ticks=TICKS_TOPIC,
        now_ms=now_ms,
        state_for=lambda p: state,
        positions={},
        skips=lambda topic, p, offset, done: False,
        unread=lambda p: unread or {},
    )
    return applied.effects.get(state.p) or state.finish(state.begin())


def step1(state: PartitionState, kind: EventKind, offset: int, ev: Any, now_ms: int) -> Effects:
    """One record as a batch of one."""
    return run_batch(state, [(kind, offset, ev)], now_ms)


def tick(
    state: PartitionState, now_ms: int, unread: dict[EventKind, bool] | None = None
) -> Effects:
    """A batch holding only a tick."""
    return run_batch(state, [], now_ms, tick=True, unread=unread)


def produce(
    settings: Settings, topic: str, records: Iterable[msgspec.Struct], partition: int | None = None
) -> int:
    """Produce records keyed by group (Kafka timestamp = event time); returns the count."""
    producer = Producer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "linger.ms": 20,
            "enable.idempotence": True,
        }
    )
    n = 0
    for rec in records:
        key = group_key(rec.sdkappid, rec.group_id)  # type: ignore[attr-defined]
        kwargs: dict[str, Any] = {"timestamp": rec.event_time_ms}  # type: ignore[attr-defined]
        if partition is not None:
            kwargs["partition"] = partition
        while True:
            try:
                producer.produce(topic, encode(rec), key.encode(), **kwargs)
                break
            except BufferError:
                producer.poll(0.1)
        n += 1
        if n % 10000 == 0:
            producer.poll(0)
    left = producer.flush(60)
    assert left == 0, f"{left} records not delivered"
    return n


def close_all(settings: Settings, topics: Any, t: int, sends: bool = True) -> None:
    """Sentinel events on every partition (both topics) that advance stream time to ``t``."""
    for p in range(settings.partitions):
        produce(settings, topics.exceptions, [exc(f"zz-sentinel-{p}", 10002, t)], partition=p)
        if sends:
            produce(settings, topics.sends, [send(f"zz-sentinel-{p}", t)], partition=p)


def read_topic(
    settings: Settings,
    topic: str,
    *,
    until: Callable[[list[tuple[str, dict[str, Any]]]], bool],
    timeout: float = 90.0,
) -> list[tuple[str, dict[str, Any]]]:
    """All (key, value) records of a topic from the start, polled until ``until`` holds."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": f"test-reader-{time.time_ns()}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        consumer.assign(
            [TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(settings.partitions)]
        )
        out: list[tuple[str, dict[str, Any]]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for msg in consumer.consume(1000, 0.5):
                if msg.error():
                    continue
                out.append((msg.key().decode(), msgspec.json.decode(msg.value())))
            if until(out):
                return out
        return out
    finally:
        consumer.close()


def finals(records: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    return [(k, v) for k, v in records if v.get("final")]


def final_set(records: list[tuple[str, dict[str, Any]]], drop_sentinels: bool = True) -> set[str]:
    """Final records as canonical JSON strings (byte-stable fields only)."""
    out = set()
    for key, value in finals(records):
        if drop_sentinels and value["group_id"].startswith("zz-sentinel"):
            continue
        out.add(key + " " + msgspec.json.encode(dict(sorted(value.items()))).decode())
    return out


@dataclass
class Worker:
    """A real ``groupwatch stream`` process."""

    settings: Settings
    log_dir: Path
    name: str = "w1"
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> Worker:
        self.starts += 1
        log = open(self.log_dir / f"{self.name}-{self.starts}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from groupwatch.cli import main; main()",
                "stream",
                "--web-port",
                str(self.port),
                "--loglevel",
                "info",
                "--worker-dir",
                str(self.settings.stream_dir / self.name),
            ],
            env=settings_env(self.settings),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        return self

    def metrics(self) -> str:
        return requests.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).text

    def lag(self, min_series: int = 1) -> float | None:
        """Summed ``groupwatch_stream_lag`` over its series; None while the metrics are
        unreachable or show fewer than ``min_series`` series."""
        try:
            text = self.metrics()
        except requests.RequestException:
            return None
        lines = [x for x in text.splitlines() if x.startswith("groupwatch_stream_lag{")]
        if not lines or len(lines) < min_series:
            return None
        return sum(float(x.rsplit(" ", 1)[1]) for x in lines)

    def wait_healthy(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, self.tail()
            try:
                if requests.get(f"http://127.0.0.1:{self.port}/healthz", timeout=2).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise AssertionError("worker not healthy: " + self.tail())

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self, n: int = 4000) -> str:
        path = self.log_dir / f"{self.name}-{self.starts}.log"
        return path.read_text(errors="replace")[-n:] if path.exists() else ""


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of a metric's samples matching the labels in Prometheus text format."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        metric_name = head.split("{", 1)[0]
        if metric_name != name:
            continue
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total


def decode_final(value: dict[str, Any]) -> Any:
    from groupwatch.contracts.records import FailureWindow

    return decode(msgspec.json.encode(value), FailureWindow)
