"""The sink's checkpoints: between batches on the apply thread, never inside a commit.

DuckDB checkpoints on its own inside the commit that takes the WAL past its
``checkpoint_threshold``; in a 500,000-row catch-up those commits took 430-570 ms and
the fetch thread waited behind them (docs/PERFORMANCE-analytics.md). The sink instead
checks the WAL's size after each batch and runs ``CHECKPOINT`` itself once it reaches
``sink_checkpoint_mb`` (or a quarter of it while the sink is idle), with no transaction
open (the fetch thread prepares the next batch meanwhile). DuckDB's own threshold
stays as a safety net at ``AUTOMATIC_FACTOR`` x the bound (a checkpoint refused because
another transaction is open, e.g. a snapshot's copy, is retried after the next batch).

Durability is DuckDB's either way: a batch is durable at its COMMIT (WAL written and
synced); a checkpoint only moves committed rows from the WAL into the file. A crash
before it replays the WAL on the next open, read-write or read-only.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import duckdb

from analytics.metrics import SinkStats

log = logging.getLogger(__name__)

# DuckDB's own checkpoint_threshold, as a multiple of the sink's bound: reached only if
# the sink's checkpoints keep being refused.
AUTOMATIC_FACTOR = 4
# While idle, checkpoint once the WAL holds this fraction of the bound.
IDLE_FRACTION = 4
MIB = 1 << 20


def automatic_threshold_mb(bound_mb: int) -> int:
    """DuckDB's ``checkpoint_threshold`` for a sink that checkpoints at ``bound_mb``."""
    return AUTOMATIC_FACTOR * bound_mb


def wal_path(duckdb_path: Path) -> Path:
    """DuckDB's write-ahead log beside the database file."""
    return duckdb_path.with_name(duckdb_path.name + ".wal")


class Checkpoints:
    """Decides after each batch (or an idle poll) whether to checkpoint, and does it."""

    def __init__(
        self, con: duckdb.DuckDBPyConnection, duckdb_path: Path, bound_mb: int, stats: SinkStats
    ) -> None:
        self.con = con
        self.wal = wal_path(duckdb_path)
        self.bound = bound_mb * MIB
        self.idle_bound = max(1, self.bound // IDLE_FRACTION)
        self.stats = stats

    def wal_bytes(self) -> int:
        try:
            return self.wal.stat().st_size
        except FileNotFoundError:  # no write since the last checkpoint
            return 0

    def due(self, idle: bool) -> bool:
        size = self.wal_bytes()
        return size >= self.bound or (idle and size >= self.idle_bound)

    def run(self) -> bool:
        """``CHECKPOINT`` now (the caller holds the apply lock: no batch is open).

        Returns False if DuckDB refused it because another transaction is open (the
        snapshot's copy); the next batch tries again.
        """
        wal = self.wal_bytes()
        started, cpu_started = time.perf_counter(), time.thread_time()
        try:
            self.con.execute("CHECKPOINT")
        except duckdb.TransactionException as exc:
            log.debug("checkpoint postponed: %s", exc)
            return False
        seconds = time.perf_counter() - started
        self.stats.record_checkpoint(seconds, time.thread_time() - cpu_started, wal)
        log.debug("checkpointed %.1f MiB of WAL in %.1f ms", wal / MIB, seconds * 1000)
        return True
