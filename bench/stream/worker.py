"""A ``groupwatch stream`` worker of one subject, watched through its /metrics."""

from __future__ import annotations

import subprocess
from pathlib import Path

import requests

from bench.harness import Subject, stop_group, wait_until
from groupwatch.contracts import Settings
from tests.support.ports import free_port
from tests.support.processes import settings_env


class StreamWorker:
    """``groupwatch stream`` from ``subject``'s checkout with exactly ``settings``."""

    def __init__(self, subject: Subject, settings: Settings, workdir: Path) -> None:
        self.subject, self.settings, self.workdir = subject, settings, workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> StreamWorker:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log = open(self.workdir / "worker.log", "ab")  # noqa: SIM115
        argv = self.subject.groupwatch(
            "stream",
            "--web-port",
            str(self.port),
            "--loglevel",
            "warning",
            "--worker-dir",
            str(self.workdir / "worker"),
        )
        self.proc = self.subject.popen(argv, settings_env(self.settings), self.log)
        return self

    def metrics(self) -> str:
        return requests.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).text

    def lag(self, min_series: int = 1) -> float | None:
        """Summed ``groupwatch_stream_lag`` over its series; None while unreachable or
        fewer than ``min_series`` series are shown."""
        try:
            text = self.metrics()
        except requests.RequestException:
            return None
        lines = [x for x in text.splitlines() if x.startswith("groupwatch_stream_lag{")]
        if len(lines) < max(1, min_series):
            return None
        return sum(float(x.rsplit(" ", 1)[1]) for x in lines)

    def counter(self, name: str) -> float:
        total = 0.0
        for line in self.metrics().splitlines():
            if line.split("{", 1)[0].split(" ", 1)[0] == name:
                total += float(line.rsplit(" ", 1)[1])
        return total

    def wait_healthy(self, timeout: float = 180) -> None:
        def healthy() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"stream worker exited {self.proc.returncode}: {self.tail()}")
            try:
                return requests.get(f"http://127.0.0.1:{self.port}/healthz", timeout=2).ok
            except requests.RequestException:
                return False

        wait_until(healthy, timeout, f"{self.subject.name} stream worker health", 0.3)

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc)
            self.log.close()

    def tail(self, n: int = 3000) -> str:
        path = self.workdir / "worker.log"
        return path.read_text(errors="replace")[-n:] if path.exists() else ""
