"""The sink's checkpoints between batches (analytics/checkpoints.py), on a real DuckDB file."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from analytics.checkpoints import Checkpoints, automatic_threshold_mb, wal_path
from analytics.db import open_read_only, open_writer
from analytics.metrics import SinkStats

MIB = 1 << 20


def writer(tmp_path: Path, bound_mb: int) -> tuple[duckdb.DuckDBPyConnection, Checkpoints]:
    path = tmp_path / "w.duckdb"
    con = open_writer(
        path, tmp_path / "s.duckdb", threads=1, checkpoint_mb=automatic_threshold_mb(bound_mb)
    )
    con.execute("CREATE TABLE t (id BIGINT PRIMARY KEY, v VARCHAR)")
    con.execute("CHECKPOINT")
    return con, Checkpoints(con, path, bound_mb, SinkStats())


def commit_batch(con: duckdb.DuckDBPyConnection, start: int, n: int = 2000) -> None:
    """One small committed transaction, like a sink batch: it goes to the WAL."""
    con.execute(
        "INSERT INTO t SELECT i, repeat('x', 200) || i FROM range($a, $b) r(i)",
        {"a": start, "b": start + n},
    )


def test_due_at_the_bound_or_a_quarter_of_it_while_idle_and_the_wal_emptied(
    tmp_path: Path,
) -> None:
    con, checkpoints = writer(tmp_path, bound_mb=1)
    try:
        assert con.execute("SELECT current_setting('checkpoint_threshold')").fetchone() == (
            "4.0 MiB",
        )
        rows = 0
        while checkpoints.wal_bytes() < MIB // 4:
            assert not checkpoints.due(idle=True)
            commit_batch(con, rows)
            rows += 2000
        assert checkpoints.due(idle=True) and not checkpoints.due(idle=False)
        while checkpoints.wal_bytes() < MIB:
            commit_batch(con, rows)
            rows += 2000
        # DuckDB did not checkpoint inside those commits (its own threshold is 4 MiB)
        assert checkpoints.due(idle=False)
        assert checkpoints.run()
        assert checkpoints.wal_bytes() < MIB // 4 and not checkpoints.due(idle=True)
        summary = checkpoints.stats.summary()
        assert summary["checkpoints"] == 1 and summary["max_checkpoint_ms"] > 0
        assert con.execute("SELECT count(*) FROM t").fetchone() == (rows,)
    finally:
        con.close()


def test_refused_while_another_transaction_writes_then_done(tmp_path: Path) -> None:
    con, checkpoints = writer(tmp_path, bound_mb=1)
    try:
        commit_batch(con, 0)
        other = con.cursor()
        other.execute("BEGIN TRANSACTION")
        # an update (a batch's offsets upsert, a rollup refresh): DuckDB refuses the
        # checkpoint while it is open (a transaction that only inserts would not stop it)
        other.execute("INSERT INTO t VALUES (1, 'open') ON CONFLICT DO UPDATE SET v = 'open'")
        assert not checkpoints.run()  # postponed, nothing lost
        other.execute("COMMIT")
        assert checkpoints.run()
        got = con.execute("SELECT count(*), count(*) FILTER (v = 'open') FROM t").fetchone()
        assert got == (2000, 1)
        assert checkpoints.stats.summary()["checkpoints"] == 1
    finally:
        con.close()


@pytest.mark.parametrize("checkpointed", [False, True])
def test_committed_rows_survive_an_unclosed_writer(tmp_path: Path, checkpointed: bool) -> None:
    """What a reader sees of a file whose writer never closed it: the WAL is replayed on
    open (read-only here, as `groupwatch query` without a running sink)."""
    con, checkpoints = writer(tmp_path, bound_mb=1)
    commit_batch(con, 0)
    if checkpointed:
        assert checkpoints.run()
    commit_batch(con, 2000)
    assert wal_path(tmp_path / "w.duckdb").stat().st_size > 0
    # a copy of the file and WAL as they are now stands for the crashed writer's
    copy = tmp_path / "copy.duckdb"
    copy.write_bytes((tmp_path / "w.duckdb").read_bytes())
    wal_path(copy).write_bytes(wal_path(tmp_path / "w.duckdb").read_bytes())
    con.close()
    reader = open_read_only(copy)
    try:
        assert reader.execute("SELECT count(*), count(DISTINCT id) FROM t").fetchone() == (
            4000,
            4000,
        )
    finally:
        reader.close()
