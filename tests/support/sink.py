"""A real ``groupwatch sink`` process for tests: its SQL endpoint, and waiting for it to
catch up with the topics it reads."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import requests

from groupwatch.contracts import Settings, Topics
from tests.support.kafka import end_offsets
from tests.support.processes import StageProcess, settings_env

GROUPWATCH = str(Path(sys.executable).parent / "groupwatch")


class SinkProcess(StageProcess):
    """``groupwatch sink`` with these settings; its SQL endpoint is the health URL."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.settings = settings
        self.url = f"http://{settings.query_host}:{settings.query_port}"
        super().__init__("sink", ["sink"], settings_env(settings), log_path, f"{self.url}/healthz")

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM; a sink that was running must exit cleanly (0)."""
        code = super().stop(timeout)
        assert code in (None, 0), f"sink exited {code}: {self.log_tail()}"
        return code

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
    return end_offsets(settings, (t.exceptions, t.sends, t.failure_windows, t.alerts))
