"""The sink's loopback HTTP endpoint: served read-only SQL, /stats, /metrics, /healthz.

POST /query with JSON ``{"sql": "...", "format": "json" | "arrow"}``. JSON answers carry
columns, types, rows and ``truncated``; ``arrow`` answers are an Arrow IPC stream (the
``groupwatch query`` client uses it) with ``X-Groupwatch-Truncated``. Refused SQL is a
400 with ``{"error": ..., "kind": "refused"}``; a timeout is 408; a statement over its
memory or answer-size limit 413 (``kind`` ``too_large``), and so is a request body over
``query_max_body_bytes``. A request whose Host header is not an allowed name is 403
(a web page reaching 127.0.0.1 through DNS rebinding carries its own host name).

Each statement runs, and is serialized, in a forked worker process killed at its
limits (``analytics.worker``), inside its slot.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import Any

import duckdb
import orjson
from flask import Flask, Response, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.serving import BaseWSGIServer, make_server

from analytics.guard import QueryRefused
from analytics.metrics import SinkStats
from analytics.served import QueryFailed, QueryTimeout
from analytics.worker import ARROW_STREAM, Limits, QueryTooLarge, run_forked

QUERY_SLOTS = 2


def _json(payload: Any, status: int = 200) -> Response:
    body = orjson.dumps(payload, default=str, option=orjson.OPT_NON_STR_KEYS)
    return Response(body, status=status, mimetype="application/json")


def host_name(header: str) -> str:
    """The name of a Host header value, without its port (IPv6 brackets removed)."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].partition("]")[0]
    return header.rpartition(":")[0] if header.count(":") == 1 else header


def create_app(
    parent: duckdb.DuckDBPyConnection,
    stats: SinkStats,
    limits: Limits,
    gate: Callable[[], AbstractContextManager[object]] | None = None,
    allowed_hosts: Iterable[str] = ("127.0.0.1", "localhost", "::1"),
    max_body_bytes: int = 1024 * 1024,
) -> Flask:
    app = Flask("groupwatch-sink")
    app.config["MAX_CONTENT_LENGTH"] = max_body_bytes
    hosts = {h.strip().lower().strip("[]") for h in allowed_hosts}
    timeout_s = limits.timeout_s
    # At most this many served statements run at once: readers never take every core
    # from the writer (a waiting request still counts against its timeout).
    slots = threading.BoundedSemaphore(QUERY_SLOTS)

    @app.before_request
    def check_host() -> Response | None:
        name = host_name(request.headers.get("Host", ""))
        if name not in hosts:
            stats.queries.labels("bad_host").inc()
            message = (
                f"Host {name[:100]!r} is not allowed (GROUPWATCH_QUERY_ALLOWED_HOSTS): "
                "the endpoint answers only requests addressed to this machine"
            )
            return _json({"error": message, "kind": "bad_host"}, 403)
        return None

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(_: RequestEntityTooLarge) -> Response:
        stats.queries.labels("too_large").inc()
        message = (
            f"request body larger than {max_body_bytes} bytes (GROUPWATCH_QUERY_MAX_BODY_BYTES)"
        )
        return _json({"error": message, "kind": "too_large"}, 413)

    @app.post("/query")
    def query() -> Response:
        if (request.content_length or 0) > max_body_bytes:
            raise RequestEntityTooLarge()
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
            result = run_forked(
                parent, body["sql"], fmt, replace(limits, timeout_s=remaining), gate
            )
        except QueryRefused as exc:
            stats.queries.labels("refused").inc()
            return _json({"error": str(exc), "kind": "refused"}, 400)
        except QueryTimeout:
            stats.queries.labels("timeout").inc()
            message = f"query exceeded the {timeout_s:g} s statement timeout"
            return _json({"error": message, "kind": "timeout"}, 408)
        except QueryTooLarge as exc:
            stats.queries.labels("too_large").inc()
            return _json({"error": str(exc), "kind": "too_large"}, 413)
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
        mimetype = ARROW_STREAM if fmt == "arrow" else "application/json"
        return Response(result.body, mimetype=mimetype, headers=headers)

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
