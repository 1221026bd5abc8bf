"""Rollups of the raw rows, kept by the sink in the transaction that stores the rows.

The dashboard's long ranges (24 h, 7 d) cannot scan millions of raw exceptions within its
100 ms budget; these tables hold what its statements need, exactly:

* ``failures_minutely`` — failures per app, minute, error code and category;
* ``group_hourly`` — failures and sends per app, hour and group (one scan gives the top
  groups and their sends);
* ``code_groups_seen`` / ``senders_seen`` / ``code_senders_seen`` — the last event time
  of each (app, code, group), (app, sender) and (app, code, sender): distinct counts do not
  add up across buckets, but "seen at or after ``since``" does not need to (``seen_valid``
  in ``analytics/dashboard/queries.py`` says when it equals the raw count);
* ``sends_app_minutely`` — sends per app and minute (``sends_minutely`` holds a row per
  app, group and minute).

Counts are added only for rows stored anew, so a redelivered batch adds nothing: on the
sink's fast path (a plain ``INSERT`` of the exceptions, which fails on any stored id) every
row of the batch table is new; otherwise the de-duplicating insert returns the ids it
stored and only those rows are rolled up (``new_exceptions``). Sends are rolled up from
the per-minute counts the batch added to ``sends_minutely`` (the ids stored anew). The
"seen" tables keep a maximum, which a repeat cannot move.

The same statements fill the rollups from the stored rows (``backfill``: migration 3, and
the dashboard benchmark's generated database): ``exceptions_sql(source)`` over any
relation with the raw columns, ``sends_sql(source)`` over (sdkappid, group_id, minute,
sends) rows.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Final

import duckdb

from analytics import group_rollup
from analytics.tables import EXCEPTIONS, SEND_IDS, SENDS_MINUTELY
from analytics.tablespec import (
    Column,
    CountOnce,
    KeepGreatest,
    Table,
    add_sql,
    create_sql,
    new_keys_name,
)


def _c(name: str, sql: str) -> Column:
    return Column(name, sql, not_null=True)


APP = _c("sdkappid", "VARCHAR")
LAST = _c("last_event_time", "TIMESTAMPTZ")

FAILURES_MINUTELY = Table(
    "failures_minutely",
    columns=(
        APP,
        _c("minute", "TIMESTAMPTZ"),
        _c("error_code", "INTEGER"),
        _c("error_category", "VARCHAR"),
        _c("failures", "BIGINT"),
    ),
    key=("sdkappid", "minute", "error_code", "error_category"),
    rule=CountOnce("failures", once_by=EXCEPTIONS),
)
GROUP_HOURLY = Table(
    "group_hourly",
    columns=(APP, _c("hour", "TIMESTAMPTZ"), _c("group_id", "VARCHAR"), _c("failures", "BIGINT")),
    key=("sdkappid", "hour", "group_id"),
    rule=CountOnce("failures", once_by=EXCEPTIONS),
)
CODE_GROUPS_SEEN = Table(
    "code_groups_seen",
    columns=(APP, _c("error_code", "INTEGER"), _c("group_id", "VARCHAR"), LAST),
    key=("sdkappid", "error_code", "group_id"),
    rule=KeepGreatest("last_event_time"),
)
SENDERS_SEEN = Table(
    "senders_seen",
    columns=(APP, _c("from_account", "VARCHAR"), LAST),
    key=("sdkappid", "from_account"),
    rule=KeepGreatest("last_event_time"),
)
CODE_SENDERS_SEEN = Table(
    "code_senders_seen",
    columns=(APP, _c("error_code", "INTEGER"), _c("from_account", "VARCHAR"), LAST),
    key=("sdkappid", "error_code", "from_account"),
    rule=KeepGreatest("last_event_time"),
)
SENDS_APP_MINUTELY = Table(
    "sends_app_minutely",
    columns=(APP, _c("minute", "TIMESTAMPTZ"), _c("sends", "BIGINT")),
    key=("sdkappid", "minute"),
    rule=CountOnce("sends", once_by=SEND_IDS),
)
GROUP_SENDS_HOURLY = Table(
    "group_sends_hourly",
    columns=(APP, _c("hour", "TIMESTAMPTZ"), _c("group_id", "VARCHAR"), _c("sends", "BIGINT")),
    key=("sdkappid", "hour", "group_id"),
    rule=CountOnce("sends", once_by=SEND_IDS),
)
# which exceptions the exception rollups hold (one row): every row below rowid
# ``next_rowid`` (the table is append-only, so a new row has a greater rowid than every
# row committed before it), ``rows`` of them (what a reader compares with count(*))
ROLLUP_STATE = Table(
    "rollup_state",
    columns=(_c("id", "INTEGER"), _c("next_rowid", "BIGINT"), _c("rows", "BIGINT")),
    key=("id",),
    rule=KeepGreatest("next_rowid"),
)

TABLES: Final[tuple[Table, ...]] = (
    FAILURES_MINUTELY,
    GROUP_HOURLY,
    CODE_GROUPS_SEEN,
    SENDERS_SEEN,
    CODE_SENDERS_SEEN,
    SENDS_APP_MINUTELY,
    GROUP_SENDS_HOURLY,
    ROLLUP_STATE,
)


def exceptions_sql(source: str, into: str = "") -> list[str]:
    """The statements adding raw exception rows ``source`` (each row once) to the rollups
    (of database ``into``; default: the current one)."""
    return [
        add_sql(
            FAILURES_MINUTELY,
            "SELECT sdkappid, date_trunc('minute', event_time), error_code, error_category, "
            f"count(*)\nFROM {source} GROUP BY ALL",
            into,
        ),
        add_sql(
            GROUP_HOURLY,
            "SELECT sdkappid, date_trunc('hour', event_time), group_id, count(*)\n"
            f"FROM {source} GROUP BY ALL",
            into,
        ),
        add_sql(
            CODE_GROUPS_SEEN,
            f"SELECT sdkappid, error_code, group_id, max(event_time)\nFROM {source} GROUP BY ALL",
            into,
        ),
        add_sql(
            SENDERS_SEEN,
            f"SELECT sdkappid, from_account, max(event_time)\nFROM {source} "
            "WHERE from_account IS NOT NULL GROUP BY ALL",
            into,
        ),
        add_sql(
            CODE_SENDERS_SEEN,
            f"SELECT sdkappid, error_code, from_account, max(event_time)\nFROM {source} "
            "WHERE from_account IS NOT NULL GROUP BY ALL",
            into,
        ),
    ]


def sends_sql(source: str) -> list[str]:
    """The statements adding per-minute send counts ``source`` (sdkappid, group_id, minute,
    sends: each send once) to the rollups."""
    return [
        add_sql(
            SENDS_APP_MINUTELY,
            f"SELECT sdkappid, minute, sum(sends)::BIGINT\nFROM {source} GROUP BY ALL",
        ),
        add_sql(
            GROUP_SENDS_HOURLY,
            "SELECT sdkappid, date_trunc('hour', minute), group_id, sum(sends)::BIGINT\n"
            f"FROM {source} GROUP BY ALL",
        ),
    ]


# --- sends: in the sink's batch transaction ---------------------------------------------
# what the batch added to sends_minutely: the per-minute counts of the ids stored anew
# (the SELECT of ``upsert_sql(SENDS_MINUTELY)``, over the same registered tables)
NEW_SENDS_MINUTES: Final = (
    "(SELECT sdkappid, group_id, date_trunc('minute', event_time) AS minute, "
    "count(*) AS sends\n"
    f" FROM (SELECT DISTINCT ON (event_id) * FROM {SEND_IDS.registered} ORDER BY event_id, seq)"
    f"\n SEMI JOIN {new_keys_name(SENDS_MINUTELY)} USING (event_id)"
    " GROUP BY ALL)"
)
ADD_NEW_SENDS: Final = "; ".join(sends_sql(NEW_SENDS_MINUTES))


def add_sends(con: duckdb.DuckDBPyConnection, source: str) -> None:
    """Add the per-minute send counts ``source`` (added to ``sends_minutely`` by other
    means than the sink's batches: migration 3's backfill, generated test and benchmark
    data) to the sends rollups."""
    con.execute(";\n".join(sends_sql(source))).fetchall()


# --- exceptions: by rowid, up to the newest row ---------------------------------------------
def _rows(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    return int(con.execute(sql).fetchall()[0][0])


def _state(into: str) -> str:
    return f"{into}.{ROLLUP_STATE.name}" if into else ROLLUP_STATE.name


def refresh_sql(start: int, end: int, into: str = "") -> str:
    """The script rolling up the exceptions of rowid ``start`` .. ``end - 1`` into the
    rollups of database ``into`` (default: the current one) and recording them."""
    rows = f"(SELECT * FROM exceptions WHERE rowid >= {int(start)} AND rowid < {int(end)})"
    return ";\n".join(
        [
            *exceptions_sql(rows, into),
            *group_rollup.refresh_sql(rows, into),
            f"UPDATE {_state(into)} SET next_rowid = {int(end)}, "
            f"rows = rows + (SELECT count(*) FROM {rows})",
        ]
    )


def refresh(con: duckdb.DuckDBPyConnection, into: str = "", own: bool = True) -> int:
    """Roll up the exceptions stored since the last refresh into database ``into``'s
    rollups (the rows are read from the current database's ``exceptions``). ``own``: in a
    transaction of its own, else in the caller's. Returns the rowids covered."""
    if own:
        con.execute("BEGIN TRANSACTION")
    try:
        start = _rows(con, f"SELECT next_rowid FROM {_state(into)}")
        end = _rows(con, "SELECT coalesce(max(rowid) + 1, 0) FROM exceptions")
        if end > start:
            con.execute(refresh_sql(start, end, into)).fetchall()
        if own:
            con.execute("COMMIT")
    except BaseException:
        if own:
            con.execute("ROLLBACK")
        raise
    return end - start


# --- in each snapshot: the rows of a group together -----------------------------------
# table -> the order its snapshot copy is written in
CLUSTERED: Final[dict[str, tuple[Table, str]]] = {
    # the group page's trend and senders: a group's rows in one or two row groups
    "group_senders_minutely": (group_rollup.GROUP_SENDERS_MINUTELY, "gid, minute"),
    # the sends of the overview's top groups and of the group page, read per group
    "group_sends_hourly": (GROUP_SENDS_HOURLY, "sdkappid, group_id, hour"),
}


def _rewrite(table: Table, order: str, into: str) -> list[str]:
    name = f"{into}.{table.name}" if into else table.name
    staged = f"{name}_ordered"
    cols = ", ".join(c.name for c in table.columns)
    return [
        create_sql(replace(table, name=staged)).rstrip().rstrip(";"),
        f"INSERT INTO {staged} ({cols}) SELECT {cols} FROM {name} ORDER BY {order}",
        f"DROP TABLE {name}",
        f"ALTER TABLE {staged} RENAME TO {table.name}",
    ]


def cluster_sql(into: str = "") -> str:
    """The script rewriting database ``into``'s tables of ``CLUSTERED`` in group order: the
    rows a group's statements read are then in a few row groups, which the zone maps find
    (10 M raw rows: the group page's senders at 7 d ~5 ms instead of ~25 ms for a scan of
    every row group; the top groups' sends ~10 ms instead of ~34 ms; ~5 s wall, ~4 s of
    CPU per snapshot at load ~5). The snapshot's copy is written anew each time, so its
    order costs nothing to keep; the live tables stay in the order their writes left."""
    return ";\n".join(sql for t, order in CLUSTERED.values() for sql in _rewrite(t, order, into))


# --- migration 3: the tables, filled from what is stored --------------------------------
def migration_sql() -> str:
    """The rollup tables, filled from every stored exception (rowid order) and send count."""
    return "\n".join(
        [
            *(create_sql(t) for t in TABLES),
            f"INSERT INTO {ROLLUP_STATE.name} VALUES (1, 0, 0);",
            *(f"{sql};" for sql in exceptions_sql("exceptions")),
            f"UPDATE {ROLLUP_STATE.name} SET next_rowid = "
            "(SELECT coalesce(max(rowid) + 1, 0) FROM exceptions), "
            "rows = (SELECT count(*) FROM exceptions);",
            *(f"{sql};" for sql in sends_sql("sends_minutely")),
        ]
    )
