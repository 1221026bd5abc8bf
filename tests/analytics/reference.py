"""What every sink table must contain for a given input, computed in plain Python."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import duckdb
import orjson

from groupwatch.contracts.records import Alert, ExceptionEvent, FailureWindow, SendEvent


def expected_exceptions(events: list[ExceptionEvent]) -> set[tuple[Any, ...]]:
    first: dict[str, ExceptionEvent] = {}
    for e in events:
        first.setdefault(e.event_id, e)
    return {
        (
            e.event_id,
            e.sdkappid,
            e.group_id,
            e.group_type,
            e.from_account,
            e.random,
            tuple(e.msg_types),
            e.error_code,
            e.error_info,
            e.error_category,
            e.event_time_ms,
            e.received_at_ms,
            e.client_ip,
            e.platform,
            orjson.dumps(e.extra).decode() if e.extra else None,
        )
        for e in first.values()
    }


def expected_sends(events: list[SendEvent]) -> Counter[tuple[str, str, int]]:
    seen: dict[str, SendEvent] = {}
    for e in events:
        seen.setdefault(e.event_id, e)
    return Counter(
        (e.sdkappid, e.group_id, e.event_time_ms - e.event_time_ms % 60_000) for e in seen.values()
    )


def expected_windows(records: list[FailureWindow]) -> set[tuple[Any, ...]]:
    best: dict[tuple[str, str, int, int], FailureWindow] = {}
    for r in records:
        key = (r.sdkappid, r.group_id, r.error_code, r.window_start_ms)
        cur = best.get(key)
        if cur is None or (r.final, r.failures, r.updated_at_ms) > (
            cur.final,
            cur.failures,
            cur.updated_at_ms,
        ):
            best[key] = r
    return {(*k, r.failures, r.final, r.updated_at_ms, r.group_sends) for k, r in best.items()}


def expected_alerts(records: list[Alert]) -> set[tuple[Any, ...]]:
    best: dict[tuple[str, str, int, str], Alert] = {}
    for r in records:
        key = (r.sdkappid, r.group_id, r.window_start_ms, r.reason)
        cur = best.get(key)
        if cur is None or (r.raised_at_ms, r.failures) > (cur.raised_at_ms, cur.failures):
            best[key] = r
    return {(*k, r.failures, r.raised_at_ms) for k, r in best.items()}


def actual_tables(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """The same shapes read from a database."""
    exc = con.execute(
        "SELECT event_id, sdkappid, group_id, group_type, from_account, random, msg_types, "
        "error_code, error_info, error_category, epoch_ms(event_time), "
        "epoch_ms(received_at), client_ip, platform, extra::VARCHAR FROM exceptions"
    ).fetchall()
    sends = con.execute(
        "SELECT sdkappid, group_id, epoch_ms(minute), sends FROM sends_minutely"
    ).fetchall()
    windows = con.execute(
        "SELECT sdkappid, group_id, error_code, epoch_ms(window_start), failures, final, "
        "updated_at_ms, group_sends FROM failure_windows"
    ).fetchall()
    alerts = con.execute(
        "SELECT sdkappid, group_id, epoch_ms(window_start), reason, failures, raised_at_ms "
        "FROM alerts"
    ).fetchall()
    return {
        "exceptions": {(*r[:6], tuple(r[6]), *r[7:]) for r in exc},
        "exceptions_rows": len(exc),
        "sends": Counter({(a, g, m): n for a, g, m, n in sends}),
        "windows": set(windows),
        "windows_rows": len(windows),
        "alerts": set(alerts),
        "alerts_rows": len(alerts),
    }


def read_db(path: Path) -> dict[str, Any]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return actual_tables(con)
    finally:
        con.close()
