"""A small migrated DuckDB file for the dashboard's tests, rows inserted as the sink stores
them (real DuckDB, the sink's own migrations)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from analytics.db import open_writer
from analytics.migrations import migrate

APP = "1400000001"
OTHER_APP = "1400000002"

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
    con.execute("CREATE TABLE snapshot_info AS SELECT now() AS taken_at, 2 AS schema_version")
    con.execute("CHECKPOINT")
    con.close()
    os.replace(tmp, path)
