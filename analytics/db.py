"""Opening the DuckDB file: the sink's locked-down writer, and read-only opens for others."""

from __future__ import annotations

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


def open_writer(duckdb_path: Path, snapshot_path: Path) -> duckdb.DuckDBPyConnection:
    """The sink's connection: UTC, no external access except the snapshot staging dir.

    The configuration is locked afterwards, so no statement (served SQL included) can
    re-enable file or network access.
    """
    duckdb_path.parent.mkdir(parents=True, exist_ok=True)
    stage = staging_dir(snapshot_path)
    stage.mkdir(parents=True, exist_ok=True)
    try:
        con = duckdb.connect(str(duckdb_path), config=dict(BASE_CONFIG))
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise DatabaseBusyError(
                f"{duckdb_path} is held by another process: only one `groupwatch sink` may write it"
            ) from exc
        raise
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET allowed_directories = $dirs", {"dirs": [str(stage.resolve()) + "/"]})
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


def open_read_only(path: Path) -> duckdb.DuckDBPyConnection:
    """A read-only open (no sink running, or the snapshot), locked down like served SQL."""
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
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con
