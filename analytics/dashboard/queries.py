"""The dashboard's SQL, one function per data request, every URL value a bound parameter.

Each function takes ``run(sql, params) -> rows as dicts``: the dashboard passes its
snapshot reader, the benchmark a plain DuckDB connection (the same statements, run
directly). Counts come from the raw ``exceptions`` rows (exact, and what the group page
lists), sends from ``sends_minutely``; a failure ratio is failures / (failures + sends)
and is absent (None) for an app that reports no sends in the range.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from analytics.dashboard.filters import Window
from groupwatch.contracts.catalog import (
    CATEGORIES,
    CONTENT_SECURITY_RANGE,
    ERROR_CODES,
    error_category,
)

Run = Callable[[str, dict[str, Any]], list[dict[str, Any]]]
TOP = 10
LATEST = 20

APPS = """
SELECT sdkappid FROM (
    SELECT DISTINCT sdkappid FROM exceptions
    UNION SELECT DISTINCT sdkappid FROM sends_minutely
    UNION SELECT DISTINCT sdkappid FROM alerts
) ORDER BY sdkappid
"""

# --- filters shared by the statements: app, optional group / code, the range --------
_RAW = "sdkappid = $app AND event_time >= $since AND event_time <= $until"
_SENDS = "sdkappid = $app AND minute >= $since AND minute <= $until"

TOTALS = f"""
SELECT count(*) AS failures, count(DISTINCT group_id) AS groups,
       count(DISTINCT from_account) AS senders,
       (SELECT sum(sends) FROM sends_minutely WHERE {_SENDS})::BIGINT AS sends
FROM exceptions WHERE {_RAW}
"""

TREND_BY_CATEGORY = f"""
SELECT epoch(time_bucket($bucket, event_time, $since)) AS bucket, error_category,
       count(*) AS failures
FROM exceptions WHERE {_RAW}
GROUP BY ALL
"""

SENDS_TREND = f"""
SELECT epoch(time_bucket($bucket, minute, $since)) AS bucket, sum(sends)::BIGINT AS sends
FROM sends_minutely WHERE {_SENDS}
GROUP BY ALL
"""

# per group only counts: a distinct-sender count or mode() per group tripled its time
TOP_GROUPS = f"""
SELECT group_id, count(*) AS failures
FROM exceptions WHERE {_RAW}
GROUP BY group_id ORDER BY failures DESC, group_id LIMIT {TOP}
"""

GROUP_SENDS = f"""
SELECT group_id, sum(sends)::BIGINT AS sends FROM sends_minutely
WHERE {_SENDS} AND group_id IN (SELECT unnest($groups::VARCHAR[]))
GROUP BY group_id
"""

TOP_CODES = f"""
SELECT error_code, any_value(error_category) AS category, count(*) AS failures,
       count(DISTINCT group_id) AS groups
FROM exceptions WHERE {_RAW}
GROUP BY error_code ORDER BY failures DESC, error_code LIMIT {TOP}
"""

ALERTS = """
SELECT group_id, window_start, window_end, reason, failures, threshold, baseline,
       baseline_factor, failure_ratio, raised_at
FROM alerts
WHERE sdkappid = $app AND window_start >= $since AND window_start <= $until
  AND ($group IS NULL OR group_id = $group)
ORDER BY raised_at DESC, group_id LIMIT $limit
"""

# --- the group page ---------------------------------------------------------------
GROUP_KNOWN = """
SELECT EXISTS (SELECT 1 FROM exceptions WHERE sdkappid = $app AND group_id = $group)
    OR EXISTS (SELECT 1 FROM sends_minutely WHERE sdkappid = $app AND group_id = $group)
    OR EXISTS (SELECT 1 FROM alerts WHERE sdkappid = $app AND group_id = $group) AS known
"""

GROUP_TOTALS = f"""
SELECT count(*) AS failures, count(DISTINCT from_account) AS senders,
       count(DISTINCT error_code) AS codes,
       (SELECT sum(sends) FROM sends_minutely WHERE {_SENDS} AND group_id = $group)::BIGINT
           AS sends
FROM exceptions WHERE {_RAW} AND group_id = $group
"""

GROUP_TREND_BY_CODE = f"""
SELECT epoch(time_bucket($bucket, event_time, $since)) AS bucket, error_code,
       count(*) AS failures
FROM exceptions WHERE {_RAW} AND group_id = $group
GROUP BY ALL
"""

GROUP_SENDS_TREND = f"""
SELECT epoch(time_bucket($bucket, minute, $since)) AS bucket, sum(sends)::BIGINT AS sends
FROM sends_minutely WHERE {_SENDS} AND group_id = $group
GROUP BY ALL
"""

TOP_SENDERS = f"""
SELECT from_account AS sender, count(*) AS failures, mode(error_code) AS top_code
FROM exceptions WHERE {_RAW} AND group_id = $group
GROUP BY from_account ORDER BY failures DESC, sender LIMIT {TOP}
"""

LATEST_EXCEPTIONS = f"""
SELECT event_time, from_account AS sender, error_code, error_category AS category,
       error_info, platform, msg_types
FROM exceptions WHERE {_RAW} AND group_id = $group
ORDER BY event_time DESC, event_id LIMIT {LATEST}
"""

# --- the error-code page ----------------------------------------------------------
CODE_SEEN = "SELECT EXISTS (SELECT 1 FROM exceptions WHERE error_code = $code) AS seen"

CODE_TOTALS = f"""
SELECT count(*) AS failures, count(DISTINCT group_id) AS groups,
       count(DISTINCT from_account) AS senders
FROM exceptions WHERE {_RAW} AND error_code = $code
"""

CODE_TREND = f"""
SELECT epoch(time_bucket($bucket, event_time, $since)) AS bucket, count(*) AS failures
FROM exceptions WHERE {_RAW} AND error_code = $code
GROUP BY ALL
"""

CODE_TOP_GROUPS = f"""
SELECT group_id, count(*) AS failures
FROM exceptions WHERE {_RAW} AND error_code = $code
GROUP BY group_id ORDER BY failures DESC, group_id LIMIT {TOP}
"""


_NAMES = re.compile(r"\$([a-z_]+)")


def _q(run: Run, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Run ``sql`` with the parameters it names (DuckDB refuses unused ones)."""
    used = set(_NAMES.findall(sql))
    return run(sql, {k: v for k, v in params.items() if k in used})


def _params(app: str, window: Window, **extra: Any) -> dict[str, Any]:
    return {"app": app, "since": window.since, "until": window.until, **extra}


def _ratio(failures: int, sends: int | None) -> float | None:
    if sends is None:
        return None
    total = failures + sends
    return failures / total if total else 0.0


def _series(window: Window, rows: list[dict[str, Any]], key: str, value: str) -> dict[str, Any]:
    """{key value: [value per bucket]} over every bucket of the window (0 where none)."""
    buckets = window.buckets()
    index = {b: i for i, b in enumerate(buckets)}
    out: dict[Any, list[int]] = {}
    for r in rows:
        i = index.get(float(r["bucket"]))
        if i is not None:
            out.setdefault(r[key], [0] * len(buckets))[i] += int(r[value])
    return out


def _single(window: Window, rows: list[dict[str, Any]], value: str) -> list[int]:
    buckets = window.buckets()
    index = {b: i for i, b in enumerate(buckets)}
    out = [0] * len(buckets)
    for r in rows:
        i = index.get(float(r["bucket"]))
        if i is not None:
            out[i] += int(r[value] or 0)
    return out


def _ratios(failures: list[int], sends: list[int], have_sends: bool) -> list[float | None]:
    if not have_sends:
        return [None] * len(failures)
    return [f / (f + s) if f + s else None for f, s in zip(failures, sends, strict=True)]


def meaning(code: int) -> str:
    known = ERROR_CODES.get(code)
    if known:
        return known[0]
    if code in CONTENT_SECURITY_RANGE:
        return "content security (the 80000-80999 range; this code is not listed)"
    return "not in the catalog"


def apps(run: Run) -> list[str]:
    return [r["sdkappid"] for r in _q(run, APPS, {})]


def alerts(
    run: Run, app: str, window: Window, group: str | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    return _q(run, ALERTS, _params(app, window, group=group, limit=limit))


def totals(run: Run, app: str, window: Window) -> dict[str, Any]:
    row = _q(run, TOTALS, _params(app, window))[0]
    return {**row, "failure_ratio": _ratio(row["failures"], row["sends"])}


def trend(run: Run, app: str, window: Window) -> dict[str, Any]:
    p = _params(app, window, bucket=window.range.bucket)
    by_cat = _series(window, _q(run, TREND_BY_CATEGORY, p), "error_category", "failures")
    send_rows = _q(run, SENDS_TREND, p)
    failures = [sum(col) for col in zip(*by_cat.values(), strict=True)] or [0] * len(
        window.buckets()
    )
    order = [c for c in CATEGORIES if c in by_cat] + sorted(set(by_cat) - set(CATEGORIES))
    return {
        "buckets": window.buckets(),
        "bucket_seconds": window.range.bucket.total_seconds(),
        "categories": {c: by_cat[c] for c in order},
        "failure_ratio": _ratios(failures, _single(window, send_rows, "sends"), bool(send_rows)),
    }


def top_groups(run: Run, app: str, window: Window) -> list[dict[str, Any]]:
    groups = _q(run, TOP_GROUPS, _params(app, window))
    sends = {
        r["group_id"]: r["sends"]
        for r in _q(run, GROUP_SENDS, _params(app, window, groups=[g["group_id"] for g in groups]))
    }
    return [{**g, "failure_ratio": _ratio(g["failures"], sends.get(g["group_id"]))} for g in groups]


def top_codes(run: Run, app: str, window: Window) -> list[dict[str, Any]]:
    return [
        {**r, "meaning": meaning(r["error_code"])} for r in _q(run, TOP_CODES, _params(app, window))
    ]


def overview(run: Run, app: str, window: Window) -> dict[str, Any]:
    return {
        "totals": totals(run, app, window),
        "trend": trend(run, app, window),
        "top_groups": top_groups(run, app, window),
        "top_codes": top_codes(run, app, window),
        "alerts": alerts(run, app, window, limit=10),
    }


def group_known(run: Run, app: str, group: str) -> bool:
    return bool(_q(run, GROUP_KNOWN, {"app": app, "group": group})[0]["known"])


def group(run: Run, app: str, window: Window, group_id: str) -> dict[str, Any]:
    p = _params(app, window, group=group_id, bucket=window.range.bucket)
    row = _q(run, GROUP_TOTALS, p)[0]
    by_code = _series(window, _q(run, GROUP_TREND_BY_CODE, p), "error_code", "failures")
    send_rows = _q(run, GROUP_SENDS_TREND, p)
    failures = [sum(col) for col in zip(*by_code.values(), strict=True)] or [0] * len(
        window.buckets()
    )
    return {
        "totals": {**row, "failure_ratio": _ratio(row["failures"], row["sends"])},
        "trend": {
            "buckets": window.buckets(),
            "bucket_seconds": window.range.bucket.total_seconds(),
            "codes": {str(c): v for c, v in sorted(by_code.items())},
            "failure_ratio": _ratios(
                failures, _single(window, send_rows, "sends"), bool(send_rows)
            ),
        },
        "top_senders": _q(run, TOP_SENDERS, p),
        "latest": _q(run, LATEST_EXCEPTIONS, p),
        "alerts": alerts(run, app, window, group=group_id, limit=20),
    }


def code_known(run: Run, code: int) -> bool:
    return code in ERROR_CODES or bool(_q(run, CODE_SEEN, {"code": code})[0]["seen"])


def code(run: Run, app: str, window: Window, error_code: int) -> dict[str, Any]:
    p = _params(app, window, code=error_code, bucket=window.range.bucket)
    return {
        "code": error_code,
        "category": error_category(error_code),
        "meaning": meaning(error_code),
        "in_catalog": error_code in ERROR_CODES,
        "totals": _q(run, CODE_TOTALS, p)[0],
        "trend": {
            "buckets": window.buckets(),
            "bucket_seconds": window.range.bucket.total_seconds(),
            "failures": _single(window, _q(run, CODE_TREND, p), "failures"),
        },
        "top_groups": _q(run, CODE_TOP_GROUPS, p),
    }
