"""Run a real ``groupwatch sink`` process for tests and wait for it to catch up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests
from confluent_kafka import Consumer, TopicPartition

from groupwatch.contracts import Settings, Topics

GROUPWATCH = str(Path(sys.executable).parent / "groupwatch")


def sink_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a child process see exactly these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GROUPWATCH_")}
    env["KAFKA_BOOTSTRAP_SERVERS"] = settings.bootstrap_servers
    names = (
        "topic_prefix",
        "partitions",
        "state_dir",
        "duckdb_path",
        "snapshot_path",
        "snapshot_interval_seconds",
        "sink_batch_rows",
        "sink_batch_ms",
        "sink_group_id",
        "query_host",
        "query_port",
        "query_timeout_seconds",
        "query_max_rows",
    )
    for name in names:
        env[f"GROUPWATCH_{name.upper()}"] = str(getattr(settings, name))
    return env


class SinkProcess:
    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.settings = settings
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.settings.query_host}:{self.settings.query_port}"

    def start(self, timeout: float = 60.0) -> SinkProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [GROUPWATCH, "sink"], env=sink_env(self.settings), stdout=log, stderr=log
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"sink exited: {self.log_path.read_text()[-3000:]}"
            try:
                if requests.get(f"{self.url}/healthz", timeout=1).ok:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        raise AssertionError("sink did not start serving in time")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
            assert self.proc.returncode == 0, self.log_path.read_text()[-3000:]

    def sql(self, sql: str) -> dict[str, Any]:
        resp = requests.post(f"{self.url}/query", json={"sql": sql}, timeout=30)
        return dict(resp.json())

    def stats(self, since: float | None = None) -> dict[str, Any]:
        params = {"since": since} if since is not None else {}
        return dict(requests.get(f"{self.url}/stats", params=params, timeout=10).json())

    def wait_caught_up(self, timeout: float = 120.0) -> None:
        """Until the offsets stored in DuckDB equal every partition's end."""
        ends = high_watermarks(self.settings)
        deadline = time.monotonic() + timeout
        stored: dict[tuple[str, int], int] = {}
        while time.monotonic() < deadline:
            rows = self.sql('SELECT topic, "partition", next_offset FROM kafka_offsets')["rows"]
            stored = {(t, p): o for t, p, o in rows}
            if all(stored.get(k, 0) >= v for k, v in ends.items()):
                return
            time.sleep(0.2)
        raise AssertionError(f"sink did not catch up: stored {stored}, ends {ends}")


def high_watermarks(settings: Settings) -> dict[tuple[str, int], int]:
    """End offset of every partition of the topics the sink reads (non-empty ones)."""
    t = Topics.from_settings(settings)
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": "hw"})
    try:
        out = {}
        for topic in (t.exceptions, t.sends, t.failure_windows, t.alerts):
            for p in range(settings.partitions):
                _, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                if high > 0:
                    out[(topic, p)] = high
        return out
    finally:
        consumer.close()
