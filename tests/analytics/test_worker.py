"""The forked query worker on a real DuckDB file, and the gate that makes forking safe."""

from __future__ import annotations

import threading
from pathlib import Path

import duckdb
import pytest

from analytics.db import open_writer
from analytics.guard import QueryRefused
from analytics.served import QueryFailed, QueryTimeout
from analytics.worker import ForkGate, Limits, QueryTooLarge, run_forked

LIMITS = Limits(timeout_s=20, max_rows=100, memory_mb=256, max_response_bytes=100_000)


@pytest.fixture
def writer(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    con = open_writer(tmp_path / "db.duckdb", tmp_path / "snap.duckdb", threads=1, lock=False)
    con.execute("CREATE TABLE t AS SELECT range AS i FROM range(1000)")
    return con


def test_answers_limits_and_refusals(writer: duckdb.DuckDBPyConnection) -> None:
    gate = ForkGate()
    answer = run_forked(writer, "SELECT count(*) AS n FROM t", "arrow", LIMITS, gate.exclusive)
    assert answer.table().to_pylist() == [{"n": 1000}]
    answer = run_forked(writer, "SELECT i FROM t", "json", LIMITS, gate.exclusive)
    assert answer.truncated and b'"truncated":true' in answer.body
    with pytest.raises(QueryTooLarge, match="MiB of memory"):
        run_forked(writer, "SELECT list_sort(range(50000000))", "json", LIMITS)
    with pytest.raises(QueryTooLarge, match="larger than 100000 bytes"):
        run_forked(writer, "SELECT repeat('x', 10000) FROM range(50)", "json", LIMITS)
    with pytest.raises(QueryTimeout):
        slow = "SELECT count(*) FROM range(1000000000000) a, range(10) b"
        run_forked(writer, slow, "json", Limits(0.5, 10, 256, 100_000))
    with pytest.raises(QueryFailed, match="Catalog"):
        run_forked(writer, "SELECT * FROM missing", "json", LIMITS)
    with pytest.raises(QueryRefused):
        run_forked(writer, "DELETE FROM t", "json", LIMITS)
    # the worker locked its own copy; the writer itself is unchanged and still writes
    locked = run_forked(
        writer, "SELECT current_setting('lock_configuration') AS l", "arrow", LIMITS
    )
    assert locked.table().to_pylist() == [{"l": True}]
    writer.execute("INSERT INTO t VALUES (1000)")
    assert writer.execute("SELECT count(*) FROM t").fetchall() == [(1001,)]


def test_a_pending_fork_waits_for_holders_and_holds_back_new_short_ones() -> None:
    gate = ForkGate()
    in_snapshot, snapshot_may_end, forked = threading.Event(), threading.Event(), threading.Event()
    order: list[str] = []

    def snapshot() -> None:
        with gate.long():
            in_snapshot.set()
            snapshot_may_end.wait(10)
            order.append("snapshot done")

    def fork() -> None:
        with gate.exclusive():
            order.append("fork")
        forked.set()

    threading.Thread(target=snapshot).start()
    assert in_snapshot.wait(10)
    forker = threading.Thread(target=fork)
    forker.start()
    # while the snapshot runs, the writer's short holds still get in past the pending fork
    with gate.shared():
        order.append("apply during snapshot")
    assert not forked.is_set()
    snapshot_may_end.set()
    forker.join(10)
    assert order == ["apply during snapshot", "snapshot done", "fork"]
