"""The rollups read per group: failures per group, minute, sender and code with integer
ids (the group page), and per app, day and group (the overview's top groups at 7 d).

The group page reads one group's rows, a few thousand spread over the whole table; over
the raw rows that costs a scan of ``group_id`` and, for the senders, a decode of
``from_account`` (a dictionary of every sender) in each row group the group has rows in:
1.1 s for the top senders at 7 d over 10 M rows under load. Here the group and the sender
are integers (``group_ids``, ``sender_ids``: one number per (app, group) and per sender
string, given once, never changed):

* ``group_senders_minutely(gid, minute, sid, error_code, failures)`` — the exceptions of
  each refresh counted per group, minute, sender (NULL: no sender) and code. It has no
  key: a refresh appends its own counts (no index probe per key, which is what made the
  other rollups too dear inside a batch), and a reader sums them per key. The live table
  is in refresh (minute) order; each snapshot's copy is rewritten in (gid, minute) order
  (``analytics/rollups.py`` ``cluster_sql``), so a group's rows are in one or two row
  groups that the ``gid`` zone map finds;
* ``group_daily(sdkappid, day, group_id, failures)`` — like ``group_hourly``, per day.

Each exception is counted once because the refresh is the one of ``analytics/rollups.py``:
these statements run in the same transaction over the same rowid range, recorded in
``rollup_state``. Migration 4 fills the tables from the rows ``rollup_state`` already
covers (``migration_sql``), so the next refresh goes on from there for every rollup.
"""

from __future__ import annotations

from typing import Final

from analytics.tables import EXCEPTIONS
from analytics.tablespec import AddedUp, Column, CountOnce, FirstWins, Table, add_sql, create_sql

GROUP_IDS = Table(
    "group_ids",
    columns=(
        Column("sdkappid", "VARCHAR", not_null=True),
        Column("group_id", "VARCHAR", not_null=True),
        Column("gid", "INTEGER", not_null=True),
    ),
    key=("sdkappid", "group_id"),
    rule=FirstWins(),
)
SENDER_IDS = Table(
    "sender_ids",
    columns=(
        Column("from_account", "VARCHAR", not_null=True),
        Column("sid", "INTEGER", not_null=True),
    ),
    key=("from_account",),
    rule=FirstWins(),
)
GROUP_SENDERS_MINUTELY = Table(
    "group_senders_minutely",
    columns=(
        Column("gid", "INTEGER", not_null=True),
        Column("minute", "TIMESTAMPTZ", not_null=True),
        Column("sid", "INTEGER"),
        Column("error_code", "INTEGER", not_null=True),
        Column("failures", "BIGINT", not_null=True),
    ),
    key=(),
    rule=AddedUp("failures"),
)

# failures per app, day and group: the overview's top groups at 7 d read whole days here
# (~120 k rows for 10 M raw ones) instead of whole hours of group_hourly (~670 k per app)
GROUP_DAILY = Table(
    "group_daily",
    columns=(
        Column("sdkappid", "VARCHAR", not_null=True),
        Column("day", "TIMESTAMPTZ", not_null=True),
        Column("group_id", "VARCHAR", not_null=True),
        Column("failures", "BIGINT", not_null=True),
    ),
    key=("sdkappid", "day", "group_id"),
    rule=CountOnce("failures", once_by=EXCEPTIONS),
)

TABLES: Final[tuple[Table, ...]] = (GROUP_IDS, SENDER_IDS, GROUP_SENDERS_MINUTELY, GROUP_DAILY)


def _in(into: str, table: Table) -> str:
    return f"{into}.{table.name}" if into else table.name


def refresh_sql(source: str, into: str = "") -> list[str]:
    """The statements adding raw exception rows ``source`` (each row once) to these
    rollups in database ``into`` (default: the current one): ids for the groups and
    senders not seen before, then the rows' counts per group, minute, sender and code
    (appended) and per app, day and group (added)."""
    groups, senders = _in(into, GROUP_IDS), _in(into, SENDER_IDS)
    return [
        f"INSERT INTO {groups} (sdkappid, group_id, gid)\n"
        f"SELECT sdkappid, group_id, (SELECT coalesce(max(gid), 0) FROM {groups})\n"
        "    + row_number() OVER (ORDER BY sdkappid, group_id)\n"
        f"FROM (SELECT DISTINCT sdkappid, group_id FROM {source}) ANTI JOIN {groups}\n"
        "USING (sdkappid, group_id)",
        f"INSERT INTO {senders} (from_account, sid)\n"
        f"SELECT from_account, (SELECT coalesce(max(sid), 0) FROM {senders})\n"
        "    + row_number() OVER (ORDER BY from_account)\n"
        f"FROM (SELECT DISTINCT from_account FROM {source} WHERE from_account IS NOT NULL)\n"
        f"ANTI JOIN {senders} USING (from_account)",
        f"INSERT INTO {_in(into, GROUP_SENDERS_MINUTELY)} "
        "(gid, minute, sid, error_code, failures)\n"
        "SELECT g.gid, date_trunc('minute', r.event_time) AS minute, s.sid, r.error_code, "
        "count(*)\n"
        f"FROM {source} r JOIN {groups} g USING (sdkappid, group_id)\n"
        f"LEFT JOIN {senders} s USING (from_account)\n"
        "GROUP BY ALL ORDER BY minute, g.gid",
        add_sql(
            GROUP_DAILY,
            "SELECT sdkappid, date_trunc('day', event_time), group_id, count(*)\n"
            f"FROM {source} GROUP BY ALL",
            into,
        ),
    ]


# --- migration 4: the tables, filled from the rows the other rollups hold -------------
COVERED: Final = "(SELECT * FROM exceptions WHERE rowid < (SELECT next_rowid FROM rollup_state))"


def migration_sql() -> str:
    """The tables, filled from every exception ``rollup_state`` covers."""
    return "\n".join(
        [*(create_sql(t) for t in TABLES), *(f"{sql};" for sql in refresh_sql(COVERED))]
    )
