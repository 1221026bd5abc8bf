"""The Flask app: thin views over ``CallbackHandler`` and the publisher's health."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from groupwatch.contracts import Settings
from ingest import metrics
from ingest.callback import CallbackHandler
from ingest.errors import Rejected, SpoolFull
from ingest.logs import RateLimitedLog
from ingest.publisher import Publisher
from ingest.query import simple_query

log = logging.getLogger("ingest.app")
REJECT_LOG_PER_SECOND = 20
# Rejections are caller-driven: their log lines are truncated and rate-limited.
reject_log = RateLimitedLog(log, "callback rejected", per_second=REJECT_LOG_PER_SECOND)

OK_BODY = b'{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":0}'
JSON = "application/json"


def fail(status: int, info: str) -> Response:
    """The Tencent-style failure reply; ``ErrorCode`` is the HTTP status (never 0)."""
    body = orjson.dumps({"ActionStatus": "FAIL", "ErrorCode": status, "ErrorInfo": info})
    return Response(body, status=status, mimetype=JSON)


def create_app(settings: Settings, publisher: Publisher | None = None) -> Flask:
    """The ingress WSGI app. The publisher starts lazily in each worker process."""
    app = Flask("ingest")
    pub = publisher or Publisher(settings)
    handler = CallbackHandler(settings, pub)
    app.extensions["groupwatch.publisher"] = pub

    def callback() -> Response:
        req = request._get_current_object()  # type: ignore[attr-defined]
        args = simple_query(req.environ.get("QUERY_STRING", "")) or req.args.to_dict()
        try:
            handler.handle(args, req.stream.read)
        except Rejected:
            metrics.count_request(args.get("CallbackCommand"), "4xx")
            raise
        except SpoolFull:
            metrics.count_request(args.get("CallbackCommand"), "503")
            raise
        metrics.count_request(args.get("CallbackCommand"), "200")
        return Response(OK_BODY, status=200, mimetype=JSON)

    for rule in sorted({settings.callback_path, "/"}):
        app.add_url_rule(
            rule,
            endpoint=f"callback:{rule}",
            view_func=callback,
            methods=["POST"],
            provide_automatic_options=False,
        )

    @app.get("/healthz")
    def healthz() -> Response:
        return Response(b'{"status":"ok"}', mimetype=JSON)

    @app.get("/readyz")
    def readyz() -> Response:
        broker = pub.broker_reachable()
        spool = pub.spool_writable()
        status: dict[str, Any] = {"broker": broker, "spool_writable": spool, **pub.stats()}
        code = 200 if broker or spool else 503
        return Response(orjson.dumps(status), status=code, mimetype=JSON)

    @app.get("/metrics")
    def prometheus() -> Response:
        pub.stats()
        data, content_type = metrics.render()
        return Response(data, content_type=content_type)

    @app.errorhandler(Rejected)
    def rejected(exc: Rejected) -> Response:
        reject_log.log(
            logging.INFO,
            "callback rejected",
            status=exc.status,
            reason=exc.reason,
            field=exc.field,
            sdkappid=request.args.get("SdkAppid"),
            callback_command=request.args.get("CallbackCommand"),
        )
        response = fail(exc.status, exc.reason)
        if exc.status == 413:
            response.headers["Connection"] = "close"
        return response

    @app.errorhandler(SpoolFull)
    def spool_full(exc: SpoolFull) -> Response:
        return fail(503, "event not stored: broker unavailable and spool full")

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        response = fail(exc.code or 500, exc.description or exc.name)
        if exc.code == 405:
            response.headers["Allow"] = "POST"
        return response

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        log.exception("unexpected error handling a request")
        return fail(500, "internal error")

    return app
