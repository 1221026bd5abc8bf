"""A real ``groupwatch ingest`` server (two workers) for tests."""

from __future__ import annotations

import os
from pathlib import Path

from groupwatch.contracts import Settings
from tests.support.callbacks import APPID, SIGNED_APPID, TOKEN
from tests.support.ports import free_port
from tests.support.processes import StageProcess, children


class ServerProcess(StageProcess):
    """``groupwatch ingest`` (2 workers), started and healthy on construction."""

    def __init__(self, settings: Settings, env_overrides: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ)
        env.update(
            {
                "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
                "GROUPWATCH_TOPIC_PREFIX": settings.topic_prefix,
                "GROUPWATCH_STATE_DIR": str(settings.state_dir),
                "GROUPWATCH_SDKAPPIDS": f"{APPID},{SIGNED_APPID}",
                "GROUPWATCH_CALLBACK_TOKENS": f"{SIGNED_APPID}:{TOKEN}",
                "GROUPWATCH_UNSIGNED_SDKAPPIDS": APPID,
                "GROUPWATCH_INGEST_PORT": str(self.port),
                "GROUPWATCH_INGEST_WORKERS": "2",
                "GROUPWATCH_INGEST_THREADS": "8",
            }
        )
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        env.update(env_overrides)
        super().__init__("ingest", ["ingest"], env, log_path, f"{self.url}/healthz")
        self.start(timeout=30)

    def workers(self) -> list[int]:
        """PIDs of the server's worker processes (children of the main process)."""
        return children(self.pid)
