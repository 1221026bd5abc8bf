"""Versioned schema migrations of the DuckDB file (table ``schema_version``).

Each migration runs once, in its own transaction, in version order. A database written
by a newer groupwatch (a version this code does not know) is refused rather than touched.
The tables' columns, types and keys are declared in ``analytics/tables.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from analytics.group_rollup import migration_sql as group_rollup_sql
from analytics.rollups import migration_sql as rollups_sql
from analytics.tables import schema_sql


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


class SchemaTooNewError(RuntimeError):
    """The database carries a schema version newer than this code knows."""


# Version 1 creates the tables as analytics/tables.py declares them: the statements
# generated are those version 1 has run since its release (tests/analytics/
# schema_released.sql holds that text; a test compares). Changing a table is a new
# migration (ALTER TABLE …) plus the change in tables.py; version 1 then keeps its
# released text as a literal, as every released migration does.
V1_TABLES = schema_sql()

V1_VIEWS = """
CREATE VIEW failure_trend_minute AS
SELECT date_trunc('minute', event_time) AS minute,
       sdkappid,
       error_code,
       any_value(error_category) AS error_category,
       count(*) AS failures,
       count(DISTINCT group_id) AS groups
FROM exceptions
GROUP BY ALL;

CREATE VIEW top_groups_24h AS
WITH f AS (
    SELECT sdkappid, group_id, count(*) AS failures,
           count(DISTINCT from_account) AS senders,
           mode(error_code) AS top_error_code,
           max(event_time) AS last_failure
    FROM exceptions
    WHERE event_time >= now() - INTERVAL 24 HOUR
    GROUP BY ALL
), s AS (
    SELECT sdkappid, group_id, sum(sends)::BIGINT AS sends
    FROM sends_minutely
    WHERE minute >= date_trunc('minute', now() - INTERVAL 24 HOUR)
    GROUP BY ALL
), apps_with_sends AS (SELECT DISTINCT sdkappid FROM sends_minutely)
SELECT f.sdkappid, f.group_id, f.failures, f.senders, f.top_error_code, f.last_failure,
       CASE WHEN a.sdkappid IS NOT NULL THEN coalesce(s.sends, 0) END AS sends,
       CASE WHEN a.sdkappid IS NOT NULL
            THEN f.failures / (f.failures + coalesce(s.sends, 0)) END AS failure_ratio
FROM f
LEFT JOIN s USING (sdkappid, group_id)
LEFT JOIN apps_with_sends a ON a.sdkappid = f.sdkappid
ORDER BY f.failures DESC, f.sdkappid, f.group_id;

CREATE VIEW error_breakdown AS
SELECT sdkappid, error_category,
       count(*) AS failures,
       count(DISTINCT error_code) AS error_codes,
       count(DISTINCT group_id) AS groups,
       count(*) / sum(count(*)) OVER (PARTITION BY sdkappid) AS share
FROM exceptions
GROUP BY sdkappid, error_category;

CREATE VIEW failure_ratio_by_group AS
WITH f AS (
    SELECT sdkappid, group_id, count(*) AS failures FROM exceptions GROUP BY ALL
), s AS (
    SELECT sdkappid, group_id, sum(sends)::BIGINT AS sends FROM sends_minutely GROUP BY ALL
), apps_with_sends AS (SELECT DISTINCT sdkappid FROM sends_minutely)
SELECT sdkappid, group_id,
       coalesce(f.failures, 0) AS failures,
       CASE WHEN a.sdkappid IS NOT NULL THEN coalesce(s.sends, 0) END AS sends,
       CASE WHEN a.sdkappid IS NOT NULL
            THEN coalesce(f.failures, 0) / (coalesce(f.failures, 0) + coalesce(s.sends, 0))
       END AS failure_ratio
FROM f
FULL OUTER JOIN s USING (sdkappid, group_id)
LEFT JOIN apps_with_sends a USING (sdkappid);
"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "tables: exceptions, sends, failure windows, alerts, offsets", V1_TABLES),
    Migration(2, "views: trend, top groups, error breakdown, ratios", V1_VIEWS),
    # the dashboard's rollups (analytics/rollups.py), filled from the rows stored so far
    Migration(3, "rollups: failures and sends per minute / hour, last seen", rollups_sql()),
    # the group page's rollup (analytics/group_rollup.py), filled from the rows migration
    # 3's rollups hold (rollup_state): the next refresh goes on from there for all of them
    Migration(
        4,
        "group rollups: per group, minute, sender id and code; per day and group",
        group_rollup_sql(),
    ),
)

LATEST = MIGRATIONS[-1].version


def current_version(con: duckdb.DuckDBPyConnection) -> int:
    """The highest applied migration, 0 for a fresh database."""
    exists = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'schema_version' "
        "AND schema_name = 'main'"
    ).fetchall()
    if not exists[0][0]:
        return 0
    rows = con.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchall()
    return int(rows[0][0])


def migrate(con: duckdb.DuckDBPyConnection) -> list[int]:
    """Apply every pending migration; returns the versions applied now."""
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_version ("
        "version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, applied_at TIMESTAMPTZ NOT NULL)"
    )
    have = current_version(con)
    if have > LATEST:
        raise SchemaTooNewError(
            f"database schema version {have} is newer than this groupwatch knows ({LATEST})"
        )
    applied: list[int] = []
    for migration in MIGRATIONS:
        if migration.version <= have:
            continue
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(migration.sql)
            con.execute(
                "INSERT INTO schema_version VALUES ($v, $n, now())",
                {"v": migration.version, "n": migration.name},
            )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        applied.append(migration.version)
    return applied
