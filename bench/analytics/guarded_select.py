"""One guarded SELECT in this process, on its own cursor: read-only transaction, timeout,
row cap (the benches' way to run the report's SQL; the sink serves queries from forked
workers, ``analytics/worker.py``)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from analytics.guard import check_select
from analytics.served import QueryFailed, QueryTimeout


@dataclass(frozen=True)
class QueryResult:
    table: pa.Table
    truncated: bool
    elapsed_ms: float


def run_select(
    parent: duckdb.DuckDBPyConnection, sql: str, timeout_s: float, max_rows: int
) -> QueryResult:
    """Check, then run ``sql`` on a fresh cursor of ``parent``; at most ``max_rows`` rows."""
    statement = check_select(sql)
    started = time.perf_counter()
    cursor = parent.cursor()
    timed_out = threading.Event()

    def interrupt() -> None:
        timed_out.set()
        cursor.interrupt()

    timer = threading.Timer(timeout_s, interrupt)
    timer.daemon = True
    timer.start()
    try:
        cursor.execute("BEGIN TRANSACTION READ ONLY")
        try:
            table = cursor.sql(statement).limit(max_rows + 1).to_arrow_table()
        finally:
            cursor.execute("ROLLBACK")
    except duckdb.InterruptException as exc:
        raise QueryTimeout(f"query exceeded the {timeout_s:g} s statement timeout") from exc
    except duckdb.Error as exc:
        if timed_out.is_set():
            raise QueryTimeout(f"query exceeded the {timeout_s:g} s statement timeout") from exc
        raise QueryFailed(f"{type(exc).__name__}: {exc}") from exc
    finally:
        timer.cancel()
        cursor.close()
    truncated = table.num_rows > max_rows
    if truncated:
        table = table.slice(0, max_rows)
    return QueryResult(table, truncated, (time.perf_counter() - started) * 1000)
