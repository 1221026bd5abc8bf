"""The sink's loopback HTTP endpoint: served read-only SQL, /stats, /metrics, /healthz.

POST /query with JSON ``{"sql": "...", "format": "json" | "arrow"}``. JSON answers carry
columns, types, rows and ``truncated``; ``arrow`` answers are an Arrow IPC stream (the
``groupwatch query`` client uses it) with ``X-Groupwatch-Truncated``. Refused SQL is a
400 with ``{"error": ..., "kind": "refused"}``; a timeout is 408.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import duckdb
import orjson
import pyarrow as pa
from flask import Flask, Response, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from werkzeug.serving import BaseWSGIServer, make_server

from analytics.guard import QueryRefused
from analytics.metrics import SinkStats
from analytics.served import QueryFailed, QueryTimeout, run_select

ARROW_STREAM = "application/vnd.apache.arrow.stream"
QUERY_SLOTS = 2


def _json(payload: Any, status: int = 200) -> Response:
    body = orjson.dumps(payload, default=str, option=orjson.OPT_NON_STR_KEYS)
    return Response(body, status=status, mimetype="application/json")


def table_payload(table: pa.Table) -> dict[str, Any]:
    return {
        "columns": table.column_names,
        "types": [str(t) for t in table.schema.types],
        "rows": [list(r.values()) for r in table.to_pylist()],
    }


def arrow_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue())


def create_app(
    parent: duckdb.DuckDBPyConnection, stats: SinkStats, timeout_s: float, max_rows: int
) -> Flask:
    app = Flask("groupwatch-sink")
    # At most this many served statements run at once: readers never take every core
    # from the writer (a waiting request still counts against its timeout).
    slots = threading.BoundedSemaphore(QUERY_SLOTS)

    @app.post("/query")
    def query() -> Response:
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or not isinstance(body.get("sql"), str):
            return _json({"error": 'send JSON {"sql": "SELECT ..."}', "kind": "bad_request"}, 400)
        fmt = body.get("format", "json")
        if fmt not in ("json", "arrow"):
            return _json({"error": "format must be json or arrow", "kind": "bad_request"}, 400)
        started = time.monotonic()
        if not slots.acquire(timeout=timeout_s):
            stats.queries.labels("busy").inc()
            return _json({"error": "the sink is busy with other queries", "kind": "busy"}, 503)
        try:
            remaining = max(0.1, timeout_s - (time.monotonic() - started))
            result = run_select(parent, body["sql"], remaining, max_rows)
        except QueryRefused as exc:
            stats.queries.labels("refused").inc()
            return _json({"error": str(exc), "kind": "refused"}, 400)
        except QueryTimeout:
            stats.queries.labels("timeout").inc()
            message = f"query exceeded the {timeout_s:g} s statement timeout"
            return _json({"error": message, "kind": "timeout"}, 408)
        except QueryFailed as exc:
            stats.queries.labels("failed").inc()
            return _json({"error": str(exc), "kind": "failed"}, 400)
        finally:
            slots.release()
        stats.queries.labels("ok").inc()
        headers = {
            "X-Groupwatch-Truncated": "1" if result.truncated else "0",
            "X-Groupwatch-Elapsed-Ms": f"{result.elapsed_ms:.3f}",
        }
        if fmt == "arrow":
            return Response(arrow_bytes(result.table), mimetype=ARROW_STREAM, headers=headers)
        payload = table_payload(result.table)
        payload.update(truncated=result.truncated, elapsed_ms=round(result.elapsed_ms, 3))
        return _json(payload)

    @app.get("/stats")
    def stats_view() -> Response:
        since = request.args.get("since", type=float)
        return _json(stats.summary(since))

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(stats.registry), mimetype=CONTENT_TYPE_LATEST)

    @app.get("/healthz")
    def healthz() -> Response:
        return _json({"status": "ok"})

    return app


class QueryServer:
    """The Flask app on a werkzeug threaded server in a daemon thread."""

    def __init__(self, app: Flask, host: str, port: int) -> None:
        try:
            self.server: BaseWSGIServer = make_server(host, port, app, threaded=True)
        except OSError as exc:
            raise ValueError(
                f"the SQL endpoint cannot listen on {host}:{port} ({exc.strerror}); "
                "set GROUPWATCH_QUERY_PORT"
            ) from exc
        self.thread = threading.Thread(
            target=self.server.serve_forever, name="groupwatch-query", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        if self.thread.is_alive():
            self.server.shutdown()
        self.server.server_close()
