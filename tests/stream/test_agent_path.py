"""Without the batch drain a real worker stops at the first record instead of taking Faust's
per-record agent path (~10x slower, and silently so before stream/faust_compat.py)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from groupwatch.admin.topics import create_topics
from groupwatch.contracts import Settings, Topics
from tests.support.ports import free_port
from tests.support.processes import settings_env
from tests.support.stream import T0, exc, produce

pytestmark = pytest.mark.kafka

# the worker as `groupwatch stream` runs it, with the drain's installation skipped
NO_DRAIN = (
    "import stream.app\n"
    "stream.app.install_batch_drain = lambda *args: None\n"
    "from groupwatch.cli import main\n"
    "main()\n"
)


def test_a_record_on_the_agent_path_stops_the_worker(
    make_settings: Callable[..., Settings], topic_prefix: str, tmp_path: Path
) -> None:
    settings = make_settings(stream_app_id=f"gw-{topic_prefix}")
    create_topics(settings)
    topics = Topics.from_settings(settings)
    produce(settings, topics.exceptions, [exc("g-agent", 10004, T0)], partition=0)
    log_path = tmp_path / "worker.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                NO_DRAIN,
                "stream",
                "--web-port",
                str(free_port()),
                "--loglevel",
                "info",
                "--worker-dir",
                str(tmp_path / "w"),
            ],
            env=settings_env(settings),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            code = proc.wait(120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)
    text = log_path.read_text(errors="replace")
    assert code == 70, text[-3000:]
    assert "reached the Faust agent: the batch drain" in text, text[-3000:]
