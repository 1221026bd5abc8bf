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

from typing import Final

from analytics.tables import EXCEPTIONS, SEND_IDS, SENDS_MINUTELY
from analytics.tablespec import (
    Column,
    CountOnce,
    KeepGreatest,
    Table,
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
    columns=(
        APP,
        _c("hour", "TIMESTAMPTZ"),
        _c("group_id", "VARCHAR"),
        _c("failures", "BIGINT"),
        Column("sends", "BIGINT"),  # NULL: no send counted in that hour
    ),
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
TABLES: Final[tuple[Table, ...]] = (
    FAILURES_MINUTELY,
    GROUP_HOURLY,
    CODE_GROUPS_SEEN,
    SENDERS_SEEN,
    CODE_SENDERS_SEEN,
    SENDS_APP_MINUTELY,
)


def _add(table: Table, select: str, column: str | None = None) -> str:
    """``select`` (one row per key) added to ``table``: counts summed (``column``, default
    the rule's; NULL counts as 0), times kept greatest."""
    rule = table.rule
    names = [c.name for c in table.columns]
    if isinstance(rule, CountOnce):
        c = column or rule.column
        names = [n for n in names if n in table.key or n == c]
        update = f"{c} = {table.name}.{c} + excluded.{c}"
        if c != rule.column:  # a nullable count; the rule's (NOT NULL) is 0 in a new row
            update = f"{c} = coalesce({table.name}.{c}, 0) + excluded.{c}"
            names.append(rule.column)
    else:
        assert isinstance(rule, KeepGreatest)
        c = rule.column
        update = f"{c} = excluded.{c} WHERE excluded.{c} > {table.name}.{c}"
    cols = ", ".join(names)
    return f"INSERT INTO {table.name} ({cols})\n{select}\nON CONFLICT DO UPDATE SET {update}"


def exceptions_sql(source: str) -> list[str]:
    """The statements adding raw exception rows ``source`` (each row once) to the rollups."""
    return [
        _add(
            FAILURES_MINUTELY,
            "SELECT sdkappid, date_trunc('minute', event_time), error_code, error_category, "
            f"count(*)\nFROM {source} GROUP BY ALL",
        ),
        _add(
            GROUP_HOURLY,
            "SELECT sdkappid, date_trunc('hour', event_time), group_id, count(*)\n"
            f"FROM {source} GROUP BY ALL",
        ),
        _add(
            CODE_GROUPS_SEEN,
            f"SELECT sdkappid, error_code, group_id, max(event_time)\nFROM {source} GROUP BY ALL",
        ),
        _add(
            SENDERS_SEEN,
            f"SELECT sdkappid, from_account, max(event_time)\nFROM {source} "
            "WHERE from_account IS NOT NULL GROUP BY ALL",
        ),
        _add(
            CODE_SENDERS_SEEN,
            f"SELECT sdkappid, error_code, from_account, max(event_time)\nFROM {source} "
            "WHERE from_account IS NOT NULL GROUP BY ALL",
        ),
    ]


def sends_sql(source: str) -> list[str]:
    """The statements adding per-minute send counts ``source`` (sdkappid, group_id, minute,
    sends: each send once) to the rollups."""
    return [
        _add(
            SENDS_APP_MINUTELY,
            f"SELECT sdkappid, minute, sum(sends)::BIGINT\nFROM {source} GROUP BY ALL",
        ),
        _add(
            GROUP_HOURLY,
            "SELECT sdkappid, date_trunc('hour', minute), group_id, sum(sends)::BIGINT, 0\n"
            f"FROM {source} GROUP BY ALL",
            column="sends",
        ),
    ]


# --- the sink's per-batch statements ------------------------------------------------------
# the rows of the batch table (registered as ``_b_exceptions``) stored anew: all of them on
# the plain-insert path; on the de-duplicating path the first row of each id the insert
# returned (registered as NEW_EXCEPTIONS)
NEW_EXCEPTIONS: Final = "_b_new_exceptions"
ADD_ALL_NEW: Final = "; ".join(exceptions_sql(EXCEPTIONS.registered))
ADD_SOME_NEW: Final = "; ".join(
    exceptions_sql(
        f"(SELECT DISTINCT ON (event_id) * FROM {EXCEPTIONS.registered} "
        f"SEMI JOIN {NEW_EXCEPTIONS} USING (event_id) ORDER BY event_id, seq)"
    )
)
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


# --- migration 3: the tables, filled from what is stored --------------------------------
def backfill_sql() -> str:
    """The rollups of every stored exception and send count (on empty rollup tables)."""
    return ";\n".join([*exceptions_sql("exceptions"), *sends_sql("sends_minutely")]) + ";\n"


def migration_sql() -> str:
    return "\n".join(create_sql(t) for t in TABLES) + "\n" + backfill_sql()
