"""A small migrated DuckDB file for the dashboard's tests, rows inserted as the sink stores
them (real DuckDB, the sink's own migrations)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from analytics import rollups
from analytics.db import open_writer
from analytics.migrations import LATEST, migrate

APP = "1400000001"
OTHER_APP = "1400000002"

SNAPSHOT_INFO = (
    f"CREATE TABLE snapshot_info AS SELECT now() AS taken_at, {LATEST} AS schema_version"
)

INSERT_EXCEPTION = """
INSERT INTO exceptions (event_id, sdkappid, callback_command, group_id, group_type,
    from_account, random, error_code, error_info, error_category, event_time, received_at,
    platform)
VALUES ($id, $app, 'Group.CallbackSendMsgException', $group, 'Public', $sender, $n, $code,
        'ErrorInfo ' || $code, $category, $t, $t, 'iOS')
"""


def build(path: Path, groups: dict[str, int], now: datetime | None = None) -> None:
    """``groups``: failures per group of APP (codes 10004 / 10017 alternating, 3 senders),
    within the last 10 minutes; sends and one alert for the busiest group; OTHER_APP gets
    one failure. Written to a temp file and swapped into ``path`` as the sink does."""
    now = now or datetime.now(UTC)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    con = open_writer(tmp, tmp.with_suffix(".snap"), lock=False)
    migrate(con)
    n = 0
    for group, count in groups.items():
        for i in range(count):
            code = 10004 if i % 2 == 0 else 10017
            category = "invalid_param" if code == 10004 else "muted"
            t = now - timedelta(seconds=5 + (i * 7) % 590)
            params = {
                "id": f"e{n}",
                "app": APP,
                "group": group,
                "sender": f"user{i % 3}",
                "n": n,
                "code": code,
                "category": category,
                "t": t,
            }
            con.execute(INSERT_EXCEPTION, params)
            n += 1
    con.execute(
        INSERT_EXCEPTION,
        {
            "id": "other",
            "app": OTHER_APP,
            "group": "g-other",
            "sender": "u",
            "n": n,
            "code": 10006,
            "category": "rate_limited",
            "t": now,
        },
    )
    minute = now.replace(second=0, microsecond=0)
    for group in groups:
        con.execute(
            "INSERT INTO sends_minutely VALUES ($app, $group, $m, 90)",
            {"app": APP, "group": group, "m": minute},
        )
    busiest = max(groups, key=lambda g: groups[g])
    con.execute(
        "INSERT INTO alerts VALUES ($app, $group, 'Public', $start, $start + INTERVAL 1 MINUTE,"
        " 'threshold', $failures, 20, NULL, 3.0, [], 90, 0.1, $raised, 0)",
        {
            "app": APP,
            "group": busiest,
            "start": minute - timedelta(minutes=2),
            "failures": groups[busiest],
            "raised": now,
        },
    )
    rollups.add_sends(con, "sends_minutely")  # the sink adds each batch's to the rollups
    rollups.refresh(con)  # what the sink does before each snapshot
    con.execute(SNAPSHOT_INFO)
    con.execute("CHECKPOINT")
    con.close()
    os.replace(tmp, path)


DEMO_EXCEPTIONS = """
INSERT INTO exceptions (event_id, sdkappid, callback_command, group_id, group_type,
    from_account, random, error_code, error_info, error_category, event_time, received_at,
    platform)
SELECT 'd' || i, $app, 'Group.CallbackSendMsgException', '@TGS#demo' || g, 'Public',
       'user' || (hash(i) % 40), i, code, 'ErrorInfo of ' || code,
       CASE code WHEN 10004 THEN 'invalid_param' WHEN 10006 THEN 'rate_limited'
                 WHEN 10017 THEN 'muted' WHEN 80001 THEN 'content_filtered'
                 WHEN 10002 THEN 'internal' WHEN 10007 THEN 'permission'
                 ELSE 'rejected_by_app' END,
       t, t, ['iOS', 'Android', 'Web'][1 + i % 3]
FROM (
    SELECT i,
           -- skewed popularity over 30 groups; a storm in group 3 lately
           CASE WHEN i % 5 = 0 AND minute < 12 THEN 3
                ELSE 1 + (hash(i) % 30) * (hash(i + 1) % 30) // 30 END AS g,
           [10004, 10006, 10017, 80001, 10002, 10016, 10007][1 + (hash(i + 2) % 7)::BIGINT] AS code,
           minute,
           $now::TIMESTAMPTZ - to_minutes(minute) - to_milliseconds(hash(i + 3) % 60000) AS t
    FROM (SELECT i, (hash(i + 9) % 60)::INTEGER AS minute FROM range(6000) r(i))
)
"""


def demo(path: Path) -> None:
    """A busier hour for the screenshots: 6,000 failures over 30 groups with a storm in
    one of them in the last 12 minutes, sends per group and minute, and alerts."""
    now = datetime.now(UTC)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    con = open_writer(tmp, tmp.with_suffix(".snap"), lock=False)
    migrate(con)
    con.execute(DEMO_EXCEPTIONS, {"app": APP, "now": now})
    con.execute(
        "INSERT INTO sends_minutely SELECT $app, '@TGS#demo' || g, "
        "date_trunc('minute', $now::TIMESTAMPTZ) - to_minutes(m), 40 + (g * 7 + m) % 30 "
        "FROM range(1, 31) a(g), range(61) b(m)",
        {"app": APP, "now": now},
    )
    con.execute(
        "INSERT INTO alerts SELECT $app, '@TGS#demo3', 'Public', w, w + INTERVAL 1 MINUTE, "
        "CASE WHEN m % 2 = 0 THEN 'threshold' ELSE 'baseline' END, 60 + m * 3, 20, "
        "CASE WHEN m % 2 = 0 THEN NULL ELSE 12.5 END, 3.0, [], 50, (60 + m * 3) / (110 + m * 3), "
        "w + INTERVAL 95 SECOND, 0 "
        "FROM (SELECT m, date_trunc('minute', $now::TIMESTAMPTZ) - to_minutes(m + 2) AS w "
        "FROM range(6) r(m))",
        {"app": APP, "now": now},
    )
    rollups.add_sends(con, "sends_minutely")  # the sink adds each batch's to the rollups
    rollups.refresh(con)  # what the sink does before each snapshot
    con.execute(SNAPSHOT_INFO)
    con.execute("CHECKPOINT")
    con.close()
    os.replace(tmp, path)
