"""Opening the DuckDB file: the sink's locked-down writer, and read-only opens for others."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb

# Only built-in extensions exist; nothing may ever try to download one.
BASE_CONFIG: dict[str, str | bool | int | float | list[str]] = {
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
}


class DatabaseBusyError(RuntimeError):
    """The file is held read-write by another process (normally the running sink)."""


def staging_dir(snapshot_path: Path) -> Path:
    """The only directory the sink's database may touch besides its own file."""
    return snapshot_path.parent / ".groupwatch-snapshot-staging"


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, e.g. a container's cpuset)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def writer_threads(configured: int | None) -> int:
    """DuckDB threads for the sink's writer: as configured, else CPUs - 1 (at least 1).

    The sink's fetch thread (Kafka consume, JSON decode, Arrow build) runs next to every
    transaction; with DuckDB on every core the two fought over them, and on 2 cores the
    sink ran 25-35 % slower than with one DuckDB thread (docs/PERFORMANCE-analytics.md).
    """
    return configured if configured is not None else max(1, usable_cpus() - 1)


def open_writer(
    duckdb_path: Path,
    snapshot_path: Path,
    threads: int | None = None,
    checkpoint_mb: int | None = None,
    lock: bool = True,
) -> duckdb.DuckDBPyConnection:
    """The sink's connection: UTC, no external access except the snapshot staging dir.

    ``threads`` sets DuckDB's thread count and ``checkpoint_mb`` the WAL size that
    triggers a checkpoint (None: DuckDB's defaults, one thread per core and 16 MB). The
    configuration is locked afterwards, so no statement can re-enable file or network
    access; with ``lock=False`` (the sink, which runs no user SQL itself) each served
    query's forked worker sets its own limits and then locks its copy
    (``analytics.worker``). External access is off either way.
    """
    duckdb_path.parent.mkdir(parents=True, exist_ok=True)
    stage = staging_dir(snapshot_path)
    stage.mkdir(parents=True, exist_ok=True)
    config = dict(BASE_CONFIG)
    if threads is not None:
        config["threads"] = threads
    if checkpoint_mb is not None:
        config["checkpoint_threshold"] = f"{checkpoint_mb}MiB"
    try:
        con = duckdb.connect(str(duckdb_path), config=config)
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise DatabaseBusyError(
                f"{duckdb_path} is held by another process: only one `groupwatch sink` may write it"
            ) from exc
        raise
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET allowed_directories = $dirs", {"dirs": [str(stage.resolve()) + "/"]})
    con.execute("SET enable_external_access = false")
    if lock:
        con.execute("SET lock_configuration = true")
    return con


def open_read_only(
    path: Path, lock: bool = True, temp_dir: Path | None = None
) -> duckdb.DuckDBPyConnection:
    """A read-only open (no sink running, or the snapshot), locked down like served SQL.

    ``lock=False`` leaves the configuration to a forked worker (``analytics.worker``),
    which sets its limits and locks it before running the statement; ``temp_dir`` is
    where DuckDB may spill.
    """
    if not path.exists():
        raise FileNotFoundError(f"no DuckDB file at {path}")
    try:
        con = duckdb.connect(str(path), read_only=True, config=dict(BASE_CONFIG))
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise DatabaseBusyError(
                f"{path} is held by another process (is `groupwatch sink` running on another port?)"
            ) from exc
        raise
    con.execute("SET TimeZone = 'UTC'")
    if temp_dir is not None:
        con.execute("SET temp_directory = $dir", {"dir": str(temp_dir)})
    con.execute("SET enable_external_access = false")
    if lock:
        con.execute("SET lock_configuration = true")
    return con
