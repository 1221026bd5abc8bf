"""Which SQL the served endpoint accepts: exactly one SELECT, nothing that writes.

The real fences are in the database (external access off and locked configuration, a
read-only transaction per request); this check gives users a clear error first.
"""

from __future__ import annotations

import re

import duckdb

# SELECT-typed table functions that still change state.
_FORBIDDEN_FUNCTIONS = re.compile(r"\b(force_checkpoint|checkpoint)\s*\(", re.IGNORECASE)
MAX_SQL_CHARS = 100_000


class QueryRefused(ValueError):
    """The statement is not a single read-only SELECT; the message says why."""


def check_select(sql: str) -> str:
    """Return the single SELECT statement's text, or raise ``QueryRefused``."""
    if not sql or not sql.strip():
        raise QueryRefused("empty query: send one SELECT statement")
    if len(sql) > MAX_SQL_CHARS:
        raise QueryRefused(f"query longer than {MAX_SQL_CHARS} characters")
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryRefused(f"SQL does not parse: {exc}") from exc
    if len(statements) != 1:
        raise QueryRefused(
            f"exactly one statement is allowed, got {len(statements)} "
            "(multi-statement queries are refused)"
        )
    statement = statements[0]
    kind = statement.type.name
    if kind != "SELECT":
        raise QueryRefused(f"only SELECT is allowed, not {kind}")
    if _FORBIDDEN_FUNCTIONS.search(sql):
        raise QueryRefused("checkpoint functions are not allowed in served queries")
    return sql.strip().rstrip(";")
