"""Consistent snapshot files for BI tools: copy the live database, then swap atomically."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import duckdb

from analytics import rollups
from analytics.db import staging_dir
from analytics.metrics import SinkStats

log = logging.getLogger(__name__)


def take_snapshot(parent: duckdb.DuckDBPyConnection, snapshot_path: Path) -> float:
    """Write a consistent copy to the staging dir and ``os.replace`` it into place.

    One transaction reads the live database (MVCC: the writer is not blocked); the copy
    carries a ``snapshot_info`` table with the time it was taken. The exception rollups
    (``analytics/rollups.py``) are refreshed first in the live database, then, in the
    copy, with the rows committed in between: the copy's rollups hold all of its rows.
    The copy's per-group rollups are then rewritten in group order
    (``rollups.cluster_sql``).
    Returns seconds spent.
    """
    started = time.perf_counter()
    stage = staging_dir(snapshot_path)
    stage.mkdir(parents=True, exist_ok=True)
    tmp = stage.resolve() / f"snapshot-{os.getpid()}.duckdb"
    for leftover in (tmp, Path(f"{tmp}.wal")):
        leftover.unlink(missing_ok=True)
    cursor = parent.cursor()
    try:
        rollups.refresh(cursor)
        source = cursor.execute("SELECT current_database()").fetchall()[0][0]
        quoted = str(tmp).replace("'", "''")
        cursor.execute(f"ATTACH '{quoted}' AS gw_snapshot")
        try:
            cursor.execute("BEGIN TRANSACTION")
            cursor.execute(f'COPY FROM DATABASE "{source}" TO gw_snapshot')
            rollups.refresh(cursor, into="gw_snapshot", own=False)
            # the copy's per-group tables in group order (analytics/rollups.py cluster_sql)
            cursor.execute(rollups.cluster_sql("gw_snapshot")).fetchall()
            cursor.execute(
                "CREATE TABLE gw_snapshot.snapshot_info AS "
                "SELECT now() AS taken_at, (SELECT max(version) FROM schema_version) "
                "AS schema_version"
            )
            cursor.execute("COMMIT")
        finally:
            cursor.execute("DETACH gw_snapshot")
    finally:
        cursor.close()
    os.replace(tmp, snapshot_path)
    return time.perf_counter() - started


class Snapshotter(threading.Thread):
    """Publishes a snapshot every ``interval`` seconds until stopped."""

    def __init__(
        self,
        parent: duckdb.DuckDBPyConnection,
        snapshot_path: Path,
        interval: float,
        stats: SinkStats,
        gate: Callable[[], AbstractContextManager[object]] | None = None,
    ) -> None:
        super().__init__(name="groupwatch-snapshot", daemon=True)
        self.parent = parent
        self.snapshot_path = snapshot_path
        self.interval = interval
        self.stats = stats
        # held while the snapshot is inside DuckDB: no served query forks meanwhile
        self.gate = gate or contextlib.nullcontext
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(self.interval):
            try:
                with self.gate():
                    seconds = take_snapshot(self.parent, self.snapshot_path)
            except Exception:
                log.exception("snapshot to %s failed", self.snapshot_path)
                continue
            self.stats.record_snapshot(seconds)
            log.info("snapshot published to %s in %.3f s", self.snapshot_path, seconds)

    def stop(self) -> None:
        self.stopping.set()
