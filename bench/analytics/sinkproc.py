"""A ``groupwatch sink`` of one subject, watched through its HTTP endpoint."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import requests

from bench.harness import Subject, stop_group, wait_until
from groupwatch.contracts import Settings
from tests.support.processes import settings_env


class Sink:
    """``groupwatch sink`` from ``subject``'s checkout with exactly ``settings``."""

    def __init__(self, subject: Subject, settings: Settings, log_path: Path) -> None:
        self.subject, self.settings, self.log_path = subject, settings, log_path
        self.url = f"http://{settings.query_host}:{settings.query_port}"
        self.http = requests.Session()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Sink:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log = open(self.log_path, "ab")  # noqa: SIM115
        argv = self.subject.groupwatch("sink", "--log-level", "WARNING")
        self.proc = self.subject.popen(argv, settings_env(self.settings), self.log)

        def up() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"sink exited {self.proc.returncode}: {self.tail()}")
            try:
                return self.http.get(f"{self.url}/healthz", timeout=2).ok
            except requests.RequestException:
                return False

        wait_until(up, 120, f"{self.subject.name} sink health", 0.2)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stats(self, since: float | None = None) -> dict[str, Any]:
        params = {"since": since} if since is not None else {}
        return dict(self.http.get(f"{self.url}/stats", params=params, timeout=10).json())

    def sql(self, sql: str) -> list[list[Any]]:
        resp = self.http.post(f"{self.url}/query", json={"sql": sql}, timeout=60)
        resp.raise_for_status()
        return list(resp.json()["rows"])

    def stop(self) -> None:
        if self.proc is not None:
            code = stop_group(self.proc, 60)
            self.log.close()
            if code not in (0, None):
                raise RuntimeError(f"sink exited {code}: {self.tail()}")

    def tail(self, n: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-n:] if self.log_path.exists() else ""
