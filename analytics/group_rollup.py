"""The group page's rollup: failures per group, minute, sender and code, with integer ids.

The group page reads one group's rows, a few thousand spread over the whole table; over
the raw rows that costs a scan of ``group_id`` and, for the senders, a decode of
``from_account`` (a dictionary of every sender) in each row group the group has rows in:
1.1 s for the top senders at 7 d over 10 M rows under load. Here the group and the sender
are integers (``group_ids``, ``sender_ids``: one number per (app, group) and per sender
string, given once, never changed), so reading a group's rows is a scan of two integer
columns:

* ``group_senders_minutely(gid, minute, sid, error_code, failures)`` — the exceptions of
  each refresh counted per group, minute, sender (NULL: no sender) and code. It has no
  key: a refresh appends its own counts (no index probe per key, which is what made the
  other rollups too dear inside a batch), and a reader sums them per key. Rows are
  appended in minute order, so the minute's zone map prunes the short ranges.

Each exception is counted once because the refresh is the one of ``analytics/rollups.py``:
these statements run in the same transaction over the same rowid range, recorded in
``rollup_state``. Migration 4 fills the tables from the rows ``rollup_state`` already
covers (``migration_sql``), so the next refresh goes on from there for every rollup.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Final

from analytics.tablespec import AddedUp, Column, FirstWins, Table, create_sql

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

TABLES: Final[tuple[Table, ...]] = (GROUP_IDS, SENDER_IDS, GROUP_SENDERS_MINUTELY)


def _in(into: str, table: Table) -> str:
    return f"{into}.{table.name}" if into else table.name


def refresh_sql(source: str, into: str = "") -> list[str]:
    """The statements adding raw exception rows ``source`` (each row once) to the group
    rollup of database ``into`` (default: the current one): ids for the groups and senders
    not seen before, then the rows' counts."""
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
    ]


# --- in each snapshot: the rows of a group together -----------------------------------
def cluster_sql(into: str = "") -> str:
    """The script rewriting database ``into``'s ``group_senders_minutely`` in (gid, minute)
    order: a group's rows are then in one or two row groups, which the ``gid`` zone map
    finds (at 10 M rows: a group's senders over 7 d in ~5 ms instead of ~25 ms for a scan
    of every row group, for ~3 s of CPU per snapshot). The snapshot's copy is written
    anew each time, so its order costs nothing to keep; the live table stays in refresh
    (minute) order."""
    table = _in(into, GROUP_SENDERS_MINUTELY)
    staged = f"{table}_by_group"
    cols = ", ".join(c.name for c in GROUP_SENDERS_MINUTELY.columns)
    return ";\n".join(
        [
            create_sql(replace(GROUP_SENDERS_MINUTELY, name=staged)).rstrip().rstrip(";"),
            f"INSERT INTO {staged} ({cols}) SELECT {cols} FROM {table} ORDER BY gid, minute",
            f"DROP TABLE {table}",
            f"ALTER TABLE {staged} RENAME TO {GROUP_SENDERS_MINUTELY.name}",
        ]
    )


# --- migration 4: the tables, filled from the rows the other rollups hold -------------
COVERED: Final = "(SELECT * FROM exceptions WHERE rowid < (SELECT next_rowid FROM rollup_state))"


def migration_sql() -> str:
    """The group rollup's tables, filled from every exception ``rollup_state`` covers."""
    return "\n".join(
        [*(create_sql(t) for t in TABLES), *(f"{sql};" for sql in refresh_sql(COVERED))]
    )
