"""Run a SELECT the way ``groupwatch query`` and ``report`` do.

First the running sink's endpoint; when nothing listens there, the DuckDB file opened
read-only in this process, each statement run in a forked worker with the same checks
and limits as the sink's (timeout, row cap, memory, answer size; analytics.worker),
spilling at most ``query_temp_mb`` to a private temp dir.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import requests

from analytics.db import open_read_only as _open_file
from analytics.guard import QueryRefused
from analytics.served import QueryFailed, QueryTimeout
from analytics.worker import Limits, QueryTooLarge, run_forked
from groupwatch.contracts import Settings

ARROW_STREAM = "application/vnd.apache.arrow.stream"


@dataclass(frozen=True)
class Answer:
    table: pa.Table
    truncated: bool
    source: str  # "sink" or the file path


def endpoint(settings: Settings) -> str:
    return f"http://{settings.query_host}:{settings.query_port}"


def _via_sink(settings: Settings, sql: str) -> Answer | None:
    try:
        resp = requests.post(
            f"{endpoint(settings)}/query",
            json={"sql": sql, "format": "arrow"},
            timeout=settings.query_timeout_seconds + 5,
        )
    except requests.ConnectionError:
        return None
    if resp.status_code != 200:
        try:
            info = resp.json()
        except ValueError:
            raise QueryFailed(f"sink answered HTTP {resp.status_code}: {resp.text[:200]}") from None
        kind, message = info.get("kind"), info.get("error", resp.text)
        if kind == "refused":
            raise QueryRefused(message)
        if kind == "timeout":
            raise QueryTimeout(message)
        if kind == "too_large":
            raise QueryTooLarge(message)
        raise QueryFailed(message)
    table = pa.ipc.open_stream(resp.content).read_all()
    truncated = resp.headers.get("X-Groupwatch-Truncated") == "1"
    return Answer(table, truncated, "sink")


def limits(settings: Settings) -> Limits:
    return Limits(
        timeout_s=settings.query_timeout_seconds,
        max_rows=settings.query_max_rows,
        memory_mb=settings.query_memory_mb,
        max_response_bytes=settings.query_max_response_bytes,
        temp_mb=settings.query_temp_mb,
    )


def open_read_only(settings: Settings, temp_dir: Path) -> duckdb.DuckDBPyConnection:
    """The database file, when no sink answered (each query's worker locks its copy)."""
    if not settings.duckdb_path.exists():
        raise FileNotFoundError(
            f"no sink answers at {endpoint(settings)} and there is no DuckDB file at "
            f"{settings.duckdb_path}"
        )
    return _open_file(settings.duckdb_path, lock=False, temp_dir=temp_dir)


def _local(settings: Settings, con: duckdb.DuckDBPyConnection, sql: str) -> Answer:
    answer = run_forked(con, sql, "arrow", limits(settings))
    return Answer(answer.table(), answer.truncated, str(settings.duckdb_path))


def run_query(settings: Settings, sql: str) -> Answer:
    """Ask the sink, else read the file; raises QueryRefused/QueryTimeout/QueryFailed."""
    answer = _via_sink(settings, sql)
    if answer is not None:
        return answer
    temp_dir = Path(tempfile.mkdtemp(prefix="groupwatch-query-"))
    try:
        con = open_read_only(settings, temp_dir)
        try:
            return _local(settings, con, sql)
        finally:
            con.close()
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)


def runner(settings: Settings) -> Callable[[str], pa.Table]:
    """A function SQL -> Arrow table bound to one source (the sink, or one open file)."""
    probe = _via_sink(settings, "SELECT 1")
    if probe is not None:
        return lambda sql: run_query(settings, sql).table
    temp_dir = Path(tempfile.mkdtemp(prefix="groupwatch-query-"))
    atexit.register(shutil.rmtree, temp_dir, True)  # the report ends with the process
    con = open_read_only(settings, temp_dir)
    return lambda sql: _local(settings, con, sql).table
