"""Where the dashboard reads: the sink's snapshot file, opened read-only, reopened when
the sink swaps a new one into place.

Every statement runs in-process with bound parameters on a read-only attach of the
snapshot (external access off, configuration locked, a read-only transaction), so a value
from a URL never becomes SQL text. The snapshot is an immutable file between swaps
(``os.replace``): the dashboard pins the file it opened by its descriptor
(``/proc/self/fd/N``) and attaches it into a fresh in-memory DuckDB instance, so the
instance cache never hands back the old file under the same path. The generation before
the current one stays open until the next swap, for requests still running on it.

When no snapshot exists yet and no sink holds the live file, the live file is read the
same way (the state of a stopped stack).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from analytics.db import BASE_CONFIG


class NoData(RuntimeError):
    """Nothing to read yet: no snapshot and no readable database file."""


@dataclass
class Generation:
    """One opened file: its identity, its connection and what is cached for it."""

    path: Path
    inode: tuple[int, int]
    con: duckdb.DuckDBPyConnection
    as_of: datetime  # snapshot_info.taken_at, else the file's modification time
    cache: dict[str, Any] = field(default_factory=dict)
    users: int = 0
    retired: bool = False


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino)


def _open(path: Path) -> Generation:
    fd = os.open(path, os.O_RDONLY)
    try:
        st = os.fstat(fd)
        con = duckdb.connect(":memory:", config=dict(BASE_CONFIG))
        try:
            con.execute(f"ATTACH '/proc/self/fd/{fd}' AS snap (READ_ONLY)")
        except duckdb.IOException as exc:
            con.close()
            raise NoData(f"{path} cannot be read: {exc}") from exc
    finally:
        os.close(fd)  # DuckDB holds its own descriptor of the same file now
    con.execute("USE snap")
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    as_of = datetime.fromtimestamp(st.st_mtime, UTC)
    with contextlib.suppress(duckdb.CatalogException):
        row = con.execute("SELECT max(taken_at) FROM snapshot_info").fetchone()
        if row and row[0] is not None:
            as_of = row[0]
    return Generation(path, (st.st_dev, st.st_ino), con, as_of)


class Source:
    """Read-only access to the newest snapshot (or the stopped stack's file)."""

    def __init__(self, snapshot_path: Path, duckdb_path: Path) -> None:
        self.snapshot_path = snapshot_path
        self.duckdb_path = duckdb_path
        self._lock = threading.Lock()
        self._current: Generation | None = None

    def _wanted(self) -> tuple[Path, tuple[int, int]]:
        for path in (self.snapshot_path, self.duckdb_path):
            ident = _identity(path)
            if ident is not None:
                return path, ident
        raise NoData(
            f"no data yet: there is no snapshot at {self.snapshot_path} (the sink writes one "
            "every GROUPWATCH_SNAPSHOT_INTERVAL_SECONDS) and no database at "
            f"{self.duckdb_path}"
        )

    def acquire(self) -> Generation:
        """The generation of the file now in place (opened on first use after a swap),
        held until ``release``."""
        path, ident = self._wanted()
        with self._lock:
            current = self._current
            if current is None or current.path != path or current.inode != ident:
                fresh = _open(path)
                if current is not None:
                    self._retire(current)
                self._current = current = fresh
            current.users += 1
            return current

    def release(self, gen: Generation) -> None:
        with self._lock:
            gen.users -= 1
            if gen.retired and gen.users == 0:
                gen.con.close()

    def _retire(self, gen: Generation) -> None:
        gen.retired = True
        if gen.users == 0:
            gen.con.close()

    def rows(self, gen: Generation, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        """One statement's rows as dicts, in a read-only transaction of its own cursor."""
        cursor = gen.con.cursor()
        try:
            cursor.execute("USE snap")
            cursor.execute("BEGIN TRANSACTION READ ONLY")
            result = cursor.execute(sql, params)
            names = [d[0] for d in result.description or ()]
            return [dict(zip(names, r, strict=True)) for r in result.fetchall()]
        finally:
            cursor.close()

    def close(self) -> None:
        with self._lock:
            if self._current is not None:
                self._retire(self._current)
            self._current = None


def age_seconds(as_of: datetime) -> float:
    return max(0.0, time.time() - as_of.timestamp())
