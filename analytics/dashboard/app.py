"""The dashboard's Flask app: ``create_app(settings)`` with its error pages."""

from __future__ import annotations

import logging

import orjson
from flask import Flask, Response, render_template, request
from werkzeug.exceptions import HTTPException

from analytics.dashboard.filters import RANGES, BadFilter, NotFound
from analytics.dashboard.source import NoData, Source
from analytics.dashboard.views import bp
from analytics.server import host_name
from groupwatch.contracts import Settings

log = logging.getLogger(__name__)


def _error(status: int, title: str, message: str) -> Response:
    """JSON for /api/..., an HTML page otherwise; never a traceback."""
    if request.path.startswith("/api/"):
        body = orjson.dumps({"error": message, "status": status})
        return Response(body, status=status, mimetype="application/json")
    html = render_template("error.html", status=status, title=title, message=message, ranges=RANGES)
    return Response(html, status=status, mimetype="text/html")


def create_app(settings: Settings, source: Source | None = None) -> Flask:
    app = Flask("groupwatch-dashboard", root_path=__file__.rpartition("/")[0])
    app.config["GROUPWATCH_APPS"] = list(settings.sdkappids)
    app.extensions["groupwatch_source"] = source or Source(
        settings.snapshot_path, settings.duckdb_path
    )
    app.register_blueprint(bp)
    # the SQL endpoint's Host allow-list, against DNS rebinding (a page of another site
    # reaching this loopback port carries its own host name)
    hosts = {h.strip().lower().strip("[]") for h in settings.query_allowed_hosts}
    hosts |= {settings.dashboard_host.lower(), "127.0.0.1", "localhost", "::1"}

    @app.before_request
    def check_host() -> Response | None:
        name = host_name(request.headers.get("Host", ""))
        if name not in hosts:
            return _error(
                403,
                "Forbidden",
                f"Host {name[:100]!r} is not allowed (GROUPWATCH_QUERY_ALLOWED_HOSTS): the "
                "dashboard answers only requests addressed to this machine",
            )
        return None

    @app.errorhandler(BadFilter)
    def bad_filter(exc: BadFilter) -> Response:
        return _error(400, "Bad request", str(exc))

    @app.errorhandler(NotFound)
    def not_found(exc: NotFound) -> Response:
        return _error(404, "Not found", str(exc))

    @app.errorhandler(NoData)
    def no_data(exc: NoData) -> Response:
        return _error(503, "No data yet", str(exc))

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        return _error(exc.code or 500, exc.name, exc.description or exc.name)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        log.exception("dashboard request %s failed", request.full_path)
        return _error(500, "Internal error", f"the request failed ({type(exc).__name__})")

    return app
