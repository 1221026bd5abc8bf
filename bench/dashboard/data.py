"""The dashboard bench's database: N raw exceptions over the last 7 days (the longest
range), the failure windows, per-minute sends and alerts derived from them, as the sink
would have stored them (current code's migrations), and the rollups as the sink keeps
them (``analytics/rollups.py``: the sends' statements, and the refresh it runs before each
snapshot), the group rollup in group order as the snapshot has it."""

from __future__ import annotations

from pathlib import Path

import click
import duckdb

from analytics import rollups
from analytics.db import open_writer
from analytics.migrations import LATEST, migrate

SPAN_MINUTES = 7 * 24 * 60
APPS = 3
GROUPS = 5000

# group popularity is skewed (hash(i) % 5000 squared toward the low ids), codes from the mix
EXCEPTIONS = f"""
INSERT INTO exceptions
SELECT md5(i::VARCHAR), '14000000' || (i % {APPS}), 'Group.CallbackSendMsgException',
       '@TGS#' || ((hash(i) % {GROUPS}) * (hash(i + 7) % {GROUPS}) // {GROUPS}), 'Public',
       'user' || (hash(i + 1) % 100000), NULL, i, false, ['TIMTextElem'], code,
       'ErrorInfo of ' || code,
       CASE code WHEN 10004 THEN 'invalid_param' WHEN 10006 THEN 'rate_limited'
                 WHEN 10023 THEN 'rate_limited' WHEN 10017 THEN 'muted'
                 WHEN 80001 THEN 'content_filtered' WHEN 10002 THEN 'internal'
                 ELSE 'rejected_by_app' END,
       t, t + INTERVAL 20 MILLISECOND, '10.0.0.1', 'iOS', NULL, NULL, NULL
FROM (SELECT i, [10004, 10006, 10017, 80001, 10002, 10016, 10023][1 + (hash(i + 2) % 7)::BIGINT]
             AS code,
             $now::TIMESTAMPTZ - to_milliseconds(($rows - i) * {SPAN_MINUTES} * 60000 // $rows)
             AS t
      FROM range($lo, $hi) r(i))
"""

WINDOWS = """
INSERT INTO failure_windows
WITH w AS (
    SELECT sdkappid, group_id, error_code, any_value(error_category) AS error_category,
           date_trunc('minute', event_time) AS window_start, count(*) AS failures,
           count(DISTINCT from_account) AS senders, min(event_time) AS first_event_time,
           max(event_time) AS last_event_time
    FROM exceptions GROUP BY ALL
)
SELECT sdkappid, group_id, 'Public', error_code, error_category, window_start,
       window_start + INTERVAL 1 MINUTE, failures, failures::DOUBLE, senders,
       first_event_time, last_event_time,
       sum(failures) OVER (PARTITION BY sdkappid, group_id, window_start),
       NULL, NULL, true, window_start + INTERVAL 90 SECOND, 0
FROM w ORDER BY window_start
"""

SENDS = """
INSERT INTO sends_minutely
SELECT sdkappid, group_id, window_start, sum(failures) * 20 FROM failure_windows GROUP BY ALL
ORDER BY window_start
"""

ALERTS = """
INSERT INTO alerts
SELECT sdkappid, group_id, 'Public', window_start, window_start + INTERVAL 1 MINUTE,
       'threshold', sum(failures), 20, NULL, 3.0, [], sum(failures) * 20, 1 / 21,
       window_start + INTERVAL 90 SECOND, 0
FROM failure_windows GROUP BY sdkappid, group_id, window_start HAVING sum(failures) >= 4
ORDER BY window_start
"""

# what the sink's snapshot adds (the dashboard shows it as the data's freshness)
SNAPSHOT_INFO = (
    f"CREATE TABLE snapshot_info AS SELECT now() AS taken_at, {LATEST} AS schema_version"
)


def build(db: Path, rows: int) -> None:
    """A migrated database with ``rows`` exceptions, one every 7 d / rows, ending now;
    each table in time order, as the sink appends it."""
    con = open_writer(db, db.with_suffix(".snap"), lock=False)
    migrate(con)
    con.execute("SET enable_progress_bar = false")
    now = con.execute("SELECT now()").fetchall()[0][0]
    step = 1_000_000
    for lo in range(0, rows, step):
        params = {"lo": lo, "hi": min(rows, lo + step), "rows": rows, "now": now}
        con.execute(EXCEPTIONS, params).fetchall()
        click.echo(f"  generated {min(rows, lo + step):,} rows")
    for sql in (WINDOWS, SENDS, ALERTS):
        con.execute(sql).fetchall()
    rollups.add_sends(con, "sends_minutely")
    click.echo(f"  rolled up {rollups.refresh(con):,} rows")
    # served as the snapshot: its group rollup in group order, as take_snapshot writes it
    con.execute(rollups.cluster_sql()).fetchall()
    con.execute(SNAPSHOT_INFO).fetchall()
    con.execute("CHECKPOINT")
    con.close()


def built_at(db: Path, rows: int) -> float | None:
    """Minutes since a cached database with ``rows`` rows was built, or None."""
    if not db.exists():
        return None
    con = duckdb.connect(str(db), read_only=True)
    try:
        have, age = con.execute(
            "SELECT count(*), epoch(now() - max(event_time)) / 60 FROM exceptions"
        ).fetchall()[0]
    finally:
        con.close()
    return float(age) if have == rows and age is not None else None
