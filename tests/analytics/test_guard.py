"""The served-SQL check (pure: parsing only)."""

from __future__ import annotations

import pytest

from analytics.guard import QueryRefused, check_select
from analytics.sink import check_loopback


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1",
        "FROM exceptions LIMIT 5",
        "WITH x AS (SELECT 1 AS a) SELECT * FROM x",
        "SELECT * FROM exceptions -- DELETE FROM exceptions",
        "SELECT ';' AS semicolon_in_a_string",
        "SELECT 1;",
        "SUMMARIZE exceptions",
    ],
)
def test_accepts_single_selects(sql: str) -> None:
    assert check_select(sql).strip()


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("INSERT INTO t VALUES (1)", "not INSERT"),
        ("UPDATE t SET a = 1", "not UPDATE"),
        ("DELETE FROM t", "not DELETE"),
        ("CREATE TABLE t (a INT)", "not CREATE"),
        ("ATTACH 'x.duckdb'", "not ATTACH"),
        ("COPY t TO 'x.csv'", "not COPY"),
        ("PRAGMA version", "not PRAGMA"),
        ("SET threads = 1", "not SET"),
        ("CALL pragma_version()", "not CALL"),
        ("EXPLAIN SELECT 1", "not EXPLAIN"),
        ("SELECT 1; SELECT 2", "exactly one statement is allowed, got 2"),
        ("SELECT 1; DROP TABLE t", "exactly one statement"),
        ("SELECT * FROM checkpoint()", "checkpoint"),
        ("select * from FORCE_CHECKPOINT ()", "checkpoint"),
        ("   ", "empty query"),
        ("SELEC 1", "does not parse"),
    ],
)
def test_refuses_everything_else_with_a_clear_reason(sql: str, message: str) -> None:
    with pytest.raises(QueryRefused, match=message):
        check_select(sql)


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.0.0.2"])
def test_sql_endpoint_binds_loopback(host: str) -> None:
    check_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "example.com"])
def test_sql_endpoint_refuses_other_addresses_unless_allowed(host: str) -> None:
    with pytest.raises(ValueError, match="GROUPWATCH_QUERY_ALLOW_NON_LOOPBACK"):
        check_loopback(host)
    check_loopback(host, allow_non_loopback=True)
