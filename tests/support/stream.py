"""A real ``groupwatch stream`` worker and what its tests feed it and read back: events at
chosen event times, keyed like the ingress keys them; sentinels that close windows; finals."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import requests
from confluent_kafka import Message

from groupwatch.contracts import Settings
from groupwatch.contracts.keys import group_key
from groupwatch.contracts.records import ExceptionEvent, SendEvent, decode, encode
from tests.support import events, kafka
from tests.support.events import APP
from tests.support.ports import free_port
from tests.support.processes import settings_env

HOUR_MS = 3_600_000
# Three hours ago, on the hour: a window boundary, and recent enough that the broker's
# time-based retention (Kafka timestamp = event time) does not delete the test input.
T0 = (int(time.time() * 1000) // HOUR_MS - 3) * HOUR_MS


def exc(
    group: str,
    code: int,
    t: int,
    sender: str = "alice",
    random: int | None = None,
    app: str = APP,
    group_type: str = "Public",
) -> ExceptionEvent:
    """An exception at event time ``t`` (its ``random`` derived from the rest unless given)."""
    rnd = random if random is not None else (hash((group, code, t, sender)) & 0x7FFFFFFF)
    return events.bare_exception(app, group, sender, rnd, t, code, group_type=group_type)


def send(
    group: str, t: int, sender: str = "bob", random: int | None = None, app: str = APP
) -> SendEvent:
    rnd = random if random is not None else (hash((group, "send", t, sender)) & 0x7FFFFFFF)
    return events.bare_send(app, group, sender, rnd, t, group_type="Public")


def produce(
    settings: Settings,
    topic: str,
    records: Iterable[ExceptionEvent | SendEvent],
    partition: int | None = None,
) -> int:
    """Produce records keyed by group (Kafka timestamp = event time); returns the count."""
    return kafka.produce(
        settings.bootstrap_servers,
        topic,
        (
            (
                group_key(rec.sdkappid, rec.group_id).encode(),
                encode(rec),
                rec.event_time_ms,
            )
            for rec in records
        ),
        partition=partition,
    )


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
    """All (key, JSON value) records of a topic from the start, polled until ``until`` holds."""
    return kafka.read_until(settings, topic, until, convert=_key_and_json, timeout=timeout)


def _key_and_json(msg: Message) -> tuple[str, dict[str, Any]]:
    return msg.key().decode(), msgspec.json.decode(msg.value())


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


def decode_final(value: dict[str, Any]) -> Any:
    from groupwatch.contracts.records import FailureWindow

    return decode(msgspec.json.encode(value), FailureWindow)
