"""The real sink process against the real broker: exactly once, overrides, crashes."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest

from analytics.checkpoints import wal_path
from groupwatch.contracts import Settings, Topics
from tests.analytics import reference as ref
from tests.analytics.workload import Workload, make_workload
from tests.support import events as f
from tests.support.ports import free_port
from tests.support.sink import SinkProcess, high_watermarks

pytestmark = pytest.mark.kafka


def sink_settings(make_settings: Callable[..., Settings], **overrides: object) -> Settings:
    values: dict[str, object] = {
        "query_port": free_port(),
        "sink_group_id": f"sink-{free_port()}",
        "snapshot_interval_seconds": 2.0,
    }
    values.update(overrides)
    return make_settings(**values)


def stored_total(db: Path) -> int:
    """Records applied according to the offsets table (the sink must not be running)."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        return int(
            con.execute("SELECT coalesce(sum(next_offset), 0) FROM kafka_offsets").fetchall()[0][0]
        )
    finally:
        con.close()


def assert_matches_reference(db: Path, w: Workload) -> None:
    got = ref.read_db(db)
    want_exc = ref.expected_exceptions(w.exceptions)
    assert got["exceptions_rows"] == len(want_exc)
    assert got["exceptions"] == want_exc
    assert got["sends"] == ref.expected_sends(w.sends)
    want_windows = ref.expected_windows(w.windows)
    assert got["windows_rows"] == len(want_windows)
    assert got["windows"] == want_windows
    assert got["alerts"] == ref.expected_alerts(w.alerts)


def test_duplicates_change_nothing_and_final_overrides(
    make_settings: Callable[..., Settings], topics: Topics, tmp_path: Path
) -> None:
    settings = sink_settings(make_settings)
    w = make_workload(seed=1, n_exceptions=300, n_sends=200, n_window_keys=60)
    w.produce(settings.bootstrap_servers, topics)
    sink = SinkProcess(settings, tmp_path / "sink.log").start()
    try:
        sink.wait_caught_up()
        first = sink.sql("SELECT count(*), sum(failures) FROM failure_windows")["rows"]
        # the whole input again: nothing may change
        w.produce(settings.bootstrap_servers, topics)
        sink.wait_caught_up()
        again = sink.sql("SELECT count(*), sum(failures) FROM failure_windows")["rows"]
        assert again == first
        rejects = sink.sql('SELECT raw FROM sink_rejects ORDER BY "offset"')["rows"]
        assert len(rejects) == 2 * len(w.garbage)
    finally:
        sink.stop()
    doubled = Workload(w.exceptions * 2, w.sends * 2, w.windows * 2, w.alerts * 2, w.garbage * 2)
    assert_matches_reference(settings.duckdb_path, doubled)
    assert_matches_reference(settings.duckdb_path, w)
    finals = {
        (r.sdkappid, r.group_id, r.error_code, r.window_start_ms): r for r in w.windows if r.final
    }
    stored = ref.read_db(settings.duckdb_path)["windows"]
    assert {(a, g, c, s) for a, g, c, s, _, final, _, _ in stored if final} == set(finals)
    assert all(row[4] == finals[row[:4]].failures for row in stored)


def test_a_non_final_after_the_final_never_overrides(
    make_settings: Callable[..., Settings], topics: Topics, tmp_path: Path
) -> None:
    settings = sink_settings(make_settings)
    start = f.BASE_MS
    w = Workload(
        windows=[
            f.window("1", "g", 10004, start, 5, final=False, updated_ms=start + 10),
            f.window("1", "g", 10004, start, 8, final=False, updated_ms=start + 20),
            f.window("1", "g", 10004, start, 8, final=True, updated_ms=start + 30),
            f.window("1", "g", 10004, start, 50, final=False, updated_ms=start + 40),
            f.window("1", "g", 10004, start, 3, final=False, updated_ms=start + 50),
            f.window("1", "h", 10004, start, 9, final=False, updated_ms=start + 10),
            f.window("1", "h", 10004, start, 4, final=False, updated_ms=start + 20),
        ]
    )
    sink = SinkProcess(settings, tmp_path / "sink.log").start()
    try:
        for record in w.windows:  # one at a time: each lands in its own batch
            Workload(windows=[record]).produce(settings.bootstrap_servers, topics)
            sink.wait_caught_up()
        rows = sink.sql("SELECT group_id, failures, final FROM failure_windows ORDER BY group_id")[
            "rows"
        ]
    finally:
        sink.stop()
    assert rows == [["g", 8, True], ["h", 9, False]]


@pytest.mark.slow
def test_sigkill_mid_batch_then_restart_equals_reference(
    make_settings: Callable[..., Settings], topics: Topics, tmp_path: Path
) -> None:
    """SIGKILLed while batches keep coming (mid-transaction, between a commit and the
    next checkpoint, or mid-checkpoint: the sink checkpoints between batches at a 1 MiB
    WAL here, every few batches), restarted, every record lands once."""
    settings = sink_settings(
        make_settings,
        sink_batch_rows=1500,
        sink_batch_ms=100,
        sink_checkpoint_mb=1,
    )
    w = make_workload(seed=7, n_exceptions=30_000, n_sends=15_000, n_window_keys=3_000)
    w.produce(settings.bootstrap_servers, topics)
    total = sum(high_watermarks(settings).values())
    rng = random.Random(3)
    applied: list[int] = [0]
    checkpoints = 0
    wal_at_kill: list[int] = []
    for _ in range(4):
        sink = SinkProcess(settings, tmp_path / "sink.log").start()
        target = sink.stats()["batches"] + rng.randint(2, 5)
        while (stats := sink.stats())["batches"] < target:
            time.sleep(0.01)
        sink.kill()  # while batches keep coming: mid-replay, usually mid-transaction
        checkpoints += stats["checkpoints"]
        wal = wal_path(settings.duckdb_path)
        wal_at_kill.append(wal.stat().st_size if wal.exists() else 0)
        applied.append(stored_total(settings.duckdb_path))  # the WAL replayed (read-only)
        # every batch reported committed before the kill is stored after it (its offsets
        # advance by at least its records), checkpointed or only in the WAL
        assert applied[-1] - applied[-2] >= stats["rows"], "a crash lost committed batches"
    assert applied[-1] < total, "the replay finished before the last kill"
    assert checkpoints > 0, "no checkpoint ran between batches before the kills"
    assert any(wal_at_kill), "no kill left committed batches only in the WAL"
    sink = SinkProcess(settings, tmp_path / "sink.log").start()
    try:
        sink.wait_caught_up(timeout=300)
    finally:
        sink.stop()
    assert stored_total(settings.duckdb_path) == total
    assert_matches_reference(settings.duckdb_path, w)
    assert len(ref.read_db(settings.duckdb_path)["exceptions"]) > 0
