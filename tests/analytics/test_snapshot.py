"""The snapshot file: opened read-only by another process while the sink writes, fresh."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from groupwatch.contracts import Settings, Topics
from tests.analytics.test_served import Feeder
from tests.analytics.test_sink import sink_settings
from tests.analytics.workload import make_workload
from tests.support.sink import SinkProcess

pytestmark = pytest.mark.kafka

READER = """
import duckdb, json, sys
con = duckdb.connect(sys.argv[1], read_only=True)
taken = con.execute("SELECT epoch_ms(taken_at) FROM snapshot_info").fetchall()[0][0]
n = con.execute("SELECT count(*) FROM exceptions").fetchall()[0][0]
views = con.execute("SELECT count(*) FROM failure_trend_minute").fetchall()[0][0]
print(json.dumps({"taken_ms": taken, "exceptions": n, "trend_rows": views}))
"""


def read_snapshot(path: Path) -> dict[str, int]:
    proc = subprocess.run(
        [sys.executable, "-c", READER, str(path)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout))


def test_snapshot_opens_read_only_in_another_process_while_the_sink_writes(
    make_settings: Callable[..., Settings], topics: Topics, tmp_path: Path
) -> None:
    interval = 2.0
    settings = sink_settings(make_settings, snapshot_interval_seconds=interval)
    w = make_workload(seed=11, n_exceptions=2000, n_sends=100, n_window_keys=20)
    w.produce(settings.bootstrap_servers, topics)
    sink = SinkProcess(settings, tmp_path / "sink.log").start()
    feeder = Feeder(settings, topics, per_round=100)
    try:
        sink.wait_caught_up()
        caught_up_ms = time.time() * 1000
        applied = sink.sql("SELECT count(*) FROM exceptions")["rows"][0][0]
        feeder.start()  # the sink keeps writing from here on
        seen: list[dict[str, int]] = []
        deadline = time.monotonic() + 4 * interval + 10
        while time.monotonic() < deadline:
            if settings.snapshot_path.exists():
                snap = read_snapshot(settings.snapshot_path)
                seen.append(snap)
                if snap["taken_ms"] >= caught_up_ms + interval * 1000:
                    break
            time.sleep(0.3)
        live = sink.sql("SELECT count(*) FROM exceptions")["rows"][0][0]
    finally:
        feeder.stop()
        sink.stop()
    assert seen, "no snapshot was published"
    newest = seen[-1]
    # taken after everything applied before `caught_up_ms`: holds all of it
    assert newest["taken_ms"] >= caught_up_ms
    assert newest["exceptions"] >= applied >= len({e.event_id for e in w.exceptions})
    assert newest["trend_rows"] > 0
    assert live >= newest["exceptions"]
    assert all(a["taken_ms"] <= b["taken_ms"] for a, b in itertools.pairwise(seen))
