"""The errors of a served or CLI query (the query itself runs in ``analytics/worker.py``)."""

from __future__ import annotations

from analytics.guard import QueryRefused


class QueryTimeout(RuntimeError):
    """The statement ran longer than the configured timeout and was interrupted."""


class QueryFailed(RuntimeError):
    """DuckDB rejected or failed the statement (bad column, permission, ...)."""


__all__ = ["QueryFailed", "QueryRefused", "QueryTimeout"]
