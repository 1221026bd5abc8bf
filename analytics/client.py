"""Run a SELECT the way ``groupwatch query`` and ``report`` do.

First the running sink's endpoint; when nothing listens there, the DuckDB file opened
read-only in this process, with the same checks, timeout and row cap.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import duckdb
import pyarrow as pa
import requests

from analytics.db import open_read_only as _open_file
from analytics.guard import QueryRefused
from analytics.served import QueryFailed, QueryTimeout, run_select
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
        raise QueryFailed(message)
    table = pa.ipc.open_stream(resp.content).read_all()
    truncated = resp.headers.get("X-Groupwatch-Truncated") == "1"
    return Answer(table, truncated, "sink")


def open_read_only(settings: Settings) -> duckdb.DuckDBPyConnection:
    """The database file, when no sink answered."""
    if not settings.duckdb_path.exists():
        raise FileNotFoundError(
            f"no sink answers at {endpoint(settings)} and there is no DuckDB file at "
            f"{settings.duckdb_path}"
        )
    return _open_file(settings.duckdb_path)


def run_query(settings: Settings, sql: str) -> Answer:
    """Ask the sink, else read the file; raises QueryRefused/QueryTimeout/QueryFailed."""
    answer = _via_sink(settings, sql)
    if answer is not None:
        return answer
    con = open_read_only(settings)
    try:
        result = run_select(con, sql, settings.query_timeout_seconds, settings.query_max_rows)
    finally:
        con.close()
    return Answer(result.table, result.truncated, str(settings.duckdb_path))


def runner(settings: Settings) -> Callable[[str], pa.Table]:
    """A function SQL -> Arrow table bound to one source (the sink, or one open file)."""
    probe = _via_sink(settings, "SELECT 1")
    if probe is not None:
        return lambda sql: run_query(settings, sql).table
    con = open_read_only(settings)

    def local(sql: str) -> pa.Table:
        return run_select(con, sql, settings.query_timeout_seconds, settings.query_max_rows).table

    return local
