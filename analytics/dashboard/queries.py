"""The dashboard's SQL, one function per data request, every URL value a bound parameter.

Each function takes ``run(sql, params) -> rows as dicts``: the dashboard passes its
snapshot reader, the benchmark a plain DuckDB connection (the same statements, run
directly). Counts are those of the raw ``exceptions`` rows and of ``sends_minutely``,
read where they are cheap: whole minutes and hours of the range from the sink's rollups
(``analytics/rollups.py``), the rest from the raw rows (``_F``, ``Edges``), and distinct
groups and senders from the "seen" tables while no row of the app is dated after the
range (``SEEN_VALID``), else from the raw rows; ``tests/analytics/dashboard/
test_rollups.py`` holds every answer to the raw SQL. A failure ratio is failures /
(failures + sends) and is absent (None) for an app that reports no sends in the range.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
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

# the raw statements (what every answer equals)
TOTALS = f"""
SELECT count(*) AS failures, count(DISTINCT group_id) AS groups,
       count(DISTINCT from_account) AS senders,
       (SELECT sum(sends) FROM sends_minutely WHERE {_SENDS})::BIGINT AS sends
FROM exceptions WHERE {_RAW}
"""

TOP_CODES = f"""
SELECT error_code, any_value(error_category) AS category, count(*) AS failures,
       count(DISTINCT group_id) AS groups
FROM exceptions WHERE {_RAW}
GROUP BY error_code ORDER BY failures DESC, error_code LIMIT {TOP}
"""

# --- the same answers from the rollups --------------------------------------------------
# The failures of the range as (t, error_code, error_category, failures): whole minutes
# [since, m1) from failures_minutely, the rest (m1 = until's minute) as raw rows
_F = """(
    SELECT minute AS t, error_code, error_category, failures FROM failures_minutely
    WHERE sdkappid = $app AND minute >= $since AND minute < $m1
    UNION ALL
    SELECT event_time, error_code, error_category, 1 FROM exceptions
    WHERE sdkappid = $app AND event_time >= $m1 AND event_time <= $until
)"""

# the rollups exist (migrations 3 and 4: analytics/rollups.py, analytics/group_rollup.py)
# and hold every exceptions row (the sink refreshes them before each snapshot and in it; a
# live file may lag)
HAS_ROLLUPS = """
SELECT count(*) = 2 AS has FROM duckdb_tables()
WHERE database_name = current_database() AND schema_name = 'main'
  AND table_name IN ('rollup_state', 'group_daily')
"""
ROLLUPS_WHOLE = (
    "SELECT (SELECT rows FROM rollup_state) = (SELECT count(*) FROM exceptions) AS whole"
)

# "seen at or after since" is "seen in the range" while nothing of the app is dated after it
SEEN_VALID = """
SELECT NOT EXISTS (SELECT 1 FROM exceptions WHERE sdkappid = $app AND event_time > $until)
    AS valid
"""
_GROUPS_SEEN = "code_groups_seen WHERE sdkappid = $app AND last_event_time >= $since"

TOTALS_ROLLED = f"""
SELECT (SELECT coalesce(sum(failures), 0) FROM {_F})::BIGINT AS failures,
       (SELECT count(DISTINCT group_id) FROM {_GROUPS_SEEN}) AS groups,
       (SELECT count(*) FROM senders_seen
        WHERE sdkappid = $app AND last_event_time >= $since) AS senders,
       (SELECT sum(sends) FROM sends_app_minutely WHERE {_SENDS})::BIGINT AS sends
"""

TREND_BY_CATEGORY = f"""
SELECT epoch(time_bucket($bucket, t, $since)) AS bucket, error_category,
       sum(failures)::BIGINT AS failures
FROM {_F} GROUP BY ALL
"""

SENDS_TREND = f"""
SELECT epoch(time_bucket($bucket, minute, $since)) AS bucket, sum(sends)::BIGINT AS sends
FROM sends_app_minutely WHERE {_SENDS}
GROUP BY ALL
"""

# failures per group: whole days [d0, d1) from group_daily, the other whole hours
# [h0, d0) and [d1, h1) from group_hourly, [since, h0) and [h1, until] from the raw rows
_GROUP_HOURS = """(
    SELECT group_id, failures FROM group_daily
    WHERE sdkappid = $app AND day >= $d0 AND day < $d1
    UNION ALL
    SELECT group_id, failures FROM group_hourly
    WHERE sdkappid = $app AND (hour >= $h0 AND hour < $d0 OR hour >= $d1 AND hour < $h1)
    UNION ALL
    SELECT group_id, 1 FROM exceptions
    WHERE sdkappid = $app AND event_time >= $since AND event_time < $h0
    UNION ALL
    SELECT group_id, 1 FROM exceptions
    WHERE sdkappid = $app AND event_time >= $h1 AND event_time <= $until
)"""

TOP_GROUPS = f"""
SELECT group_id, sum(failures)::BIGINT AS failures FROM {_GROUP_HOURS}
GROUP BY group_id ORDER BY failures DESC, group_id LIMIT {TOP}
"""

# the sends of the groups listed: whole hours from group_sends_hourly, the rest per minute
_IN_GROUPS = "group_id IN (SELECT unnest($groups::VARCHAR[]))"
_GROUP_SENDS_HOURS = f"""(
    SELECT group_id, sends FROM group_sends_hourly
    WHERE sdkappid = $app AND hour >= $h0 AND hour < $h1 AND {_IN_GROUPS}
    UNION ALL
    SELECT group_id, sends FROM sends_minutely
    WHERE sdkappid = $app AND minute >= $since AND minute < $h0 AND {_IN_GROUPS}
    UNION ALL
    SELECT group_id, sends FROM sends_minutely
    WHERE sdkappid = $app AND minute >= $h1 AND minute <= $until AND {_IN_GROUPS}
)"""

GROUP_SENDS = f"""
SELECT group_id, sum(sends)::BIGINT AS sends FROM {_GROUP_SENDS_HOURS} GROUP BY group_id
"""

TOP_CODES_ROLLED = f"""
WITH g AS (SELECT error_code, count(*) AS groups FROM {_GROUPS_SEEN} GROUP BY error_code)
SELECT f.error_code, any_value(f.error_category) AS category,
       sum(f.failures)::BIGINT AS failures, any_value(g.groups) AS groups
FROM {_F} f LEFT JOIN g USING (error_code)
GROUP BY f.error_code ORDER BY failures DESC, error_code LIMIT {TOP}
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

# the same question when the rollups are whole: group_ids names every (app, group) with an
# exception, so an unknown group costs a lookup in it instead of a scan of every raw row
GROUP_KNOWN_ROLLUPS = """
SELECT EXISTS (SELECT 1 FROM group_ids WHERE sdkappid = $app AND group_id = $group)
    OR EXISTS (SELECT 1 FROM sends_minutely WHERE sdkappid = $app AND group_id = $group)
    OR EXISTS (SELECT 1 FROM alerts WHERE sdkappid = $app AND group_id = $group) AS known
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

# one pass over the group's senders: the top ones (top_code: the sender's most frequent
# code, the lowest on a tie), and how many senders there are (non-NULL ones)
TOP_SENDERS = f"""
WITH c AS (
    SELECT from_account, error_code, count(*) AS n
    FROM exceptions WHERE {_RAW} AND group_id = $group
    GROUP BY ALL
)
SELECT from_account AS sender, sum(n)::BIGINT AS failures,
       arg_max(error_code, (n, -error_code::BIGINT)) AS top_code,
       count(from_account) OVER () AS senders
FROM c
GROUP BY from_account ORDER BY failures DESC, sender LIMIT {TOP}
"""

LATEST_EXCEPTIONS = f"""
SELECT event_time, from_account AS sender, error_code, error_category AS category,
       error_info, platform, msg_types
FROM exceptions WHERE {_RAW} AND group_id = $group
ORDER BY event_time DESC, event_id LIMIT {LATEST}
"""

# the same answers from the group rollup (analytics/group_rollup.py, integer ids): whole
# minutes [since, m1) of group $gid from group_senders_minutely, until's minute raw
GROUP_GID = "SELECT gid FROM group_ids WHERE sdkappid = $app AND group_id = $group"
_GROUP_RAW_TAIL = (
    "FROM exceptions WHERE sdkappid = $app AND group_id = $group "
    "AND event_time >= $m1 AND event_time <= $until"
)
_GROUP_MINUTES = "group_senders_minutely WHERE gid = $gid AND minute >= $since AND minute < $m1"

GROUP_TREND_ROLLED = f"""
SELECT epoch(time_bucket($bucket, t, $since)) AS bucket, error_code,
       sum(failures)::BIGINT AS failures
FROM (
    SELECT minute AS t, error_code, failures FROM {_GROUP_MINUTES}
    UNION ALL
    SELECT event_time, error_code, 1 {_GROUP_RAW_TAIL}
)
GROUP BY ALL
"""

# whole hours [h0, h1) from group_sends_hourly, the rest per minute: for buckets of whole
# hours (``since`` is then on an hour)
GROUP_SENDS_TREND_HOURLY = """
SELECT epoch(time_bucket($bucket, t, $since)) AS bucket, sum(sends)::BIGINT AS sends
FROM (
    SELECT hour AS t, sends FROM group_sends_hourly
    WHERE sdkappid = $app AND group_id = $group AND hour >= $h0 AND hour < $h1
    UNION ALL
    SELECT minute, sends FROM sends_minutely
    WHERE sdkappid = $app AND group_id = $group
      AND (minute >= $since AND minute < $h0 OR minute >= $h1 AND minute <= $until)
)
GROUP BY ALL
"""

# the senders' counts summed per sender id, then named (sender_ids), then as TOP_SENDERS
TOP_SENDERS_ROLLED = f"""
WITH r AS (
    SELECT n.from_account, m.error_code, m.failures
    FROM (SELECT sid, error_code, sum(failures) AS failures FROM {_GROUP_MINUTES}
          GROUP BY ALL) m
    LEFT JOIN sender_ids n USING (sid)
    UNION ALL
    SELECT from_account, error_code, 1 {_GROUP_RAW_TAIL}
), c AS (
    SELECT from_account, error_code, sum(failures)::BIGINT AS n FROM r GROUP BY ALL
)
SELECT from_account AS sender, sum(n)::BIGINT AS failures,
       arg_max(error_code, (n, -error_code::BIGINT)) AS top_code,
       count(from_account) OVER () AS senders
FROM c
GROUP BY from_account ORDER BY failures DESC, sender LIMIT {TOP}
"""

# --- the error-code page ----------------------------------------------------------
CODE_SEEN = "SELECT EXISTS (SELECT 1 FROM exceptions WHERE error_code = $code) AS seen"

CODE_TOTALS = f"""
SELECT count(*) AS failures, count(DISTINCT group_id) AS groups,
       count(DISTINCT from_account) AS senders
FROM exceptions WHERE {_RAW} AND error_code = $code
"""

CODE_TOTALS_ROLLED = f"""
SELECT (SELECT coalesce(sum(failures), 0) FROM {_F} WHERE error_code = $code)::BIGINT
           AS failures,
       (SELECT count(*) FROM {_GROUPS_SEEN} AND error_code = $code) AS groups,
       (SELECT count(*) FROM code_senders_seen
        WHERE sdkappid = $app AND error_code = $code AND last_event_time >= $since) AS senders
"""

CODE_TREND = f"""
SELECT epoch(time_bucket($bucket, t, $since)) AS bucket, sum(failures)::BIGINT AS failures
FROM {_F} WHERE error_code = $code
GROUP BY ALL
"""

CODE_TOP_GROUPS = f"""
SELECT group_id, count(*) AS failures
FROM exceptions WHERE {_RAW} AND error_code = $code
GROUP BY group_id ORDER BY failures DESC, group_id LIMIT {TOP}
"""

# --- the same statements over the raw rows only (a database without the rollups, and the
# reference every rollup-backed answer is held to in the tests) --------------------------
_F_RAW = f"""(
    SELECT event_time AS t, error_code, error_category, 1 AS failures FROM exceptions
    WHERE {_RAW}
)"""
_GROUP_HOURS_RAW = f"(SELECT group_id, 1 AS failures FROM exceptions WHERE {_RAW})"
_GROUP_SENDS_HOURS_RAW = (
    f"(SELECT group_id, sends FROM sends_minutely WHERE {_SENDS} AND {_IN_GROUPS})"
)


def _over_raw(sql: str) -> str:
    raw = sql.replace(_F, _F_RAW).replace(_GROUP_HOURS, _GROUP_HOURS_RAW)
    raw = raw.replace(_GROUP_SENDS_HOURS, _GROUP_SENDS_HOURS_RAW)
    return raw.replace("FROM sends_app_minutely", "FROM sends_minutely")


# name -> (over the raw rows, over the rollups); the distinct counts of the second read
# the "seen" tables, so they are used only where ``seen_valid``
STATEMENTS: dict[str, tuple[str, str]] = {
    "totals": (TOTALS, TOTALS_ROLLED),
    "top_codes": (TOP_CODES, TOP_CODES_ROLLED),
    "code_totals": (CODE_TOTALS, CODE_TOTALS_ROLLED),
    **{
        name: (_over_raw(sql), sql)
        for name, sql in (
            ("trend", TREND_BY_CATEGORY),
            ("sends_trend", SENDS_TREND),
            ("top_groups", TOP_GROUPS),
            ("group_sends", GROUP_SENDS),
            ("code_trend", CODE_TREND),
        )
    },
}
_DISTINCT = frozenset({"totals", "top_codes", "code_totals"})


_NAMES = re.compile(r"\$([a-z_][a-z_0-9]*)")


def _q(run: Run, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Run ``sql`` with the parameters it names (DuckDB refuses unused ones)."""
    used = set(_NAMES.findall(sql))
    return run(sql, {k: v for k, v in params.items() if k in used})


@dataclass(frozen=True)
class Edges:
    """Where the rollups take over: minutes [since, m1), hours [h0, h1) and days [d0, d1)
    are whole in the range (``since`` is a bucket start, so a whole minute); the rest is
    read raw (or by the hour, around the whole days)."""

    m1: datetime
    h0: datetime
    h1: datetime
    d0: datetime
    d1: datetime

    @classmethod
    def of(cls, window: Window) -> Edges:
        m1 = window.until.replace(second=0, microsecond=0)
        h0 = window.since.replace(minute=0, second=0, microsecond=0)
        if h0 < window.since:
            h0 += timedelta(hours=1)
        h1 = window.until.replace(minute=0, second=0, microsecond=0)
        if h1 <= h0:  # no whole hour: everything raw
            h0 = h1 = window.since
        d0 = h0.replace(hour=0)
        if d0 < h0:
            d0 += timedelta(days=1)
        d1 = h1.replace(hour=0)
        if d1 <= d0:  # no whole day: every whole hour by the hour
            d0 = d1 = h0
        return cls(m1, h0, h1, d0, d1)


def _params(app: str, window: Window, **extra: Any) -> dict[str, Any]:
    e = Edges.of(window)
    return {
        "app": app,
        "since": window.since,
        "until": window.until,
        "m1": e.m1,
        "h0": e.h0,
        "h1": e.h1,
        "d0": e.d0,
        "d1": e.d1,
        **extra,
    }


@dataclass(frozen=True)
class Reading:
    """How a request reads: the rollups (``rollups``: the database has them), the "seen"
    tables too (``seen``: ``seen_valid`` for this app and range)."""

    rollups: bool
    seen: bool

    def sql(self, name: str) -> str:
        raw, rolled = STATEMENTS[name]
        use = self.rollups and (self.seen or name not in _DISTINCT)
        return rolled if use else raw


def rollups_whole(run: Run) -> bool:
    """Whether the database's rollups hold every exceptions row (else: read raw rows)."""
    if not _q(run, HAS_ROLLUPS, {})[0]["has"]:
        return False
    return bool(_q(run, ROLLUPS_WHOLE, {})[0]["whole"])


def reading(run: Run, app: str, window: Window, rollups: bool | None = None) -> Reading:
    """``rollups``: whether to read them (None: ``rollups_whole``)."""
    if rollups is None:
        rollups = rollups_whole(run)
    return Reading(rollups, rollups and seen_valid(run, app, window))


def seen_valid(run: Run, app: str, window: Window) -> bool:
    """Whether the "seen" tables answer distinct counts for this range: no exception of
    the app is dated after its end (then seen at or after ``since`` is seen in it)."""
    return bool(_q(run, SEEN_VALID, _params(app, window))[0]["valid"])


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


def totals(run: Run, app: str, window: Window, how: Reading) -> dict[str, Any]:
    row = _q(run, how.sql("totals"), _params(app, window))[0]
    return {**row, "failure_ratio": _ratio(row["failures"], row["sends"])}


def trend(run: Run, app: str, window: Window, how: Reading) -> dict[str, Any]:
    p = _params(app, window, bucket=window.range.bucket)
    by_cat = _series(window, _q(run, how.sql("trend"), p), "error_category", "failures")
    send_rows = _q(run, how.sql("sends_trend"), p)
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


def top_groups(run: Run, app: str, window: Window, how: Reading) -> list[dict[str, Any]]:
    groups = _q(run, how.sql("top_groups"), _params(app, window))
    listed = _params(app, window, groups=[g["group_id"] for g in groups])
    sends = {r["group_id"]: r["sends"] for r in _q(run, how.sql("group_sends"), listed)}
    return [{**g, "failure_ratio": _ratio(g["failures"], sends.get(g["group_id"]))} for g in groups]


def top_codes(run: Run, app: str, window: Window, how: Reading) -> list[dict[str, Any]]:
    rows = _q(run, how.sql("top_codes"), _params(app, window))
    return [{**r, "meaning": meaning(r["error_code"])} for r in rows]


def overview(run: Run, app: str, window: Window, rollups: bool | None = None) -> dict[str, Any]:
    """``rollups``: read them (False: every count from the raw rows; None: if whole)."""
    how = reading(run, app, window, rollups)
    return {
        "totals": totals(run, app, window, how),
        "trend": trend(run, app, window, how),
        "top_groups": top_groups(run, app, window, how),
        "top_codes": top_codes(run, app, window, how),
        "alerts": alerts(run, app, window, limit=10),
    }


def group_known(run: Run, app: str, group: str, rollups: bool | None = None) -> bool:
    """Whether the data knows the group (an exception, a send or an alert of it);
    ``rollups``: ask group_ids for the exceptions (None: if the rollups are whole)."""
    if rollups is None:
        rollups = rollups_whole(run)
    sql = GROUP_KNOWN_ROLLUPS if rollups else GROUP_KNOWN
    return bool(_q(run, sql, {"app": app, "group": group})[0]["known"])


def _latest_since(window: Window, trend_rows: list[dict[str, Any]]) -> datetime:
    """The start of the newest bucket from which on the group has at least ``LATEST``
    failures in the range (else ``since``): the latest rows all lie at or after it, so
    their ordered read prunes the older row groups by ``event_time``."""
    per: dict[float, int] = {}
    for r in trend_rows:
        per[float(r["bucket"])] = per.get(float(r["bucket"]), 0) + int(r["failures"])
    seen = 0
    for bucket in sorted(per, reverse=True):
        seen += per[bucket]
        if seen >= LATEST:
            return max(window.since, datetime.fromtimestamp(bucket, UTC))
    return window.since


def group(
    run: Run, app: str, window: Window, group_id: str, rollups: bool | None = None
) -> dict[str, Any]:
    """``rollups``: read the group rollup (False: the raw rows; None: if whole)."""
    if rollups is None:
        rollups = rollups_whole(run)
    p = _params(app, window, group=group_id, bucket=window.range.bucket)
    trend_sql, sends_sql, senders_sql = GROUP_TREND_BY_CODE, GROUP_SENDS_TREND, TOP_SENDERS
    if rollups:
        found = _q(run, GROUP_GID, p)
        p["gid"] = found[0]["gid"] if found else None  # none: no failures rolled up
        trend_sql, senders_sql = GROUP_TREND_ROLLED, TOP_SENDERS_ROLLED
        if window.range.bucket % timedelta(hours=1) == timedelta(0):
            sends_sql = GROUP_SENDS_TREND_HOURLY
    # the totals are those of the trend's rows (every row of the range is in one bucket)
    trend_rows = _q(run, trend_sql, p)
    send_rows = _q(run, sends_sql, p)
    senders = _q(run, senders_sql, p)
    row: dict[str, Any] = {
        "failures": sum(int(r["failures"]) for r in trend_rows),
        "senders": senders[0]["senders"] if senders else 0,
        "codes": len({r["error_code"] for r in trend_rows}),
        "sends": sum(int(r["sends"]) for r in send_rows) if send_rows else None,
    }
    for s in senders:
        del s["senders"]
    by_code = _series(window, trend_rows, "error_code", "failures")
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
        "top_senders": senders,
        "latest": _q(run, LATEST_EXCEPTIONS, {**p, "since": _latest_since(window, trend_rows)}),
        "alerts": alerts(run, app, window, group=group_id, limit=20),
    }


def code_known(run: Run, code: int) -> bool:
    return code in ERROR_CODES or bool(_q(run, CODE_SEEN, {"code": code})[0]["seen"])


def code(
    run: Run, app: str, window: Window, error_code: int, rollups: bool | None = None
) -> dict[str, Any]:
    how = reading(run, app, window, rollups)
    p = _params(app, window, code=error_code, bucket=window.range.bucket)
    return {
        "code": error_code,
        "category": error_category(error_code),
        "meaning": meaning(error_code),
        "in_catalog": error_code in ERROR_CODES,
        "totals": _q(run, how.sql("code_totals"), p)[0],
        "trend": {
            "buckets": window.buckets(),
            "bucket_seconds": window.range.bucket.total_seconds(),
            "failures": _single(window, _q(run, how.sql("code_trend"), p), "failures"),
        },
        "top_groups": _q(run, CODE_TOP_GROUPS, p),
    }
