"""The dashboard's routes: four pages (HTML shells the script fills) and their JSON data.

Views are thin: parse the URL (``filters``), check that the app / group / code exists,
run the page's queries (``queries``) on the current snapshot (``source``), return JSON.
"""

from __future__ import annotations

from typing import Any

import orjson
from flask import Blueprint, Response, current_app, g, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from analytics.dashboard import queries
from analytics.dashboard.filters import (
    RANGES,
    BadFilter,
    NotFound,
    Window,
    parse_app,
    parse_code,
    parse_group,
    parse_range,
)
from analytics.dashboard.source import Generation, Source, age_seconds

bp = Blueprint("dashboard", __name__)


def _source() -> Source:
    src: Source = current_app.extensions["groupwatch_source"]
    return src


def _generation() -> Generation:
    """The snapshot generation this request reads (released when the request ends)."""
    if "gen" not in g:
        g.gen = _source().acquire()
    gen: Generation = g.gen
    return gen


@bp.teardown_app_request
def _release(_: BaseException | None) -> None:
    gen = g.pop("gen", None)
    if gen is not None:
        _source().release(gen)


def _runner(gen: Generation) -> queries.Run:
    src = _source()
    return lambda sql, params: src.rows(gen, sql, params)


def known_apps(gen: Generation) -> list[str]:
    """Apps with data in this generation (cached with it) and the configured ones."""
    if "apps" not in gen.cache:
        gen.cache["apps"] = queries.apps(_runner(gen))
    configured = current_app.config["GROUPWATCH_APPS"]
    return sorted(set(gen.cache["apps"]) | set(configured))


def rollups_whole(gen: Generation) -> bool:
    """Whether this generation's rollups hold all its rows (cached with it: a snapshot
    never changes)."""
    if "rollups" not in gen.cache:
        gen.cache["rollups"] = queries.rollups_whole(_runner(gen))
    return bool(gen.cache["rollups"])


def _context(gen: Generation) -> tuple[str | None, Window]:
    """The request's app (checked against the known ones; None if absent) and window."""
    rng = parse_range(request.args.get("range"))
    app = parse_app(request.args.get("app"))
    if app is not None and app not in known_apps(gen):
        raise NotFound(f"unknown app {app!r}: no data for it and it is not configured")
    return app, rng.window()


def _require_app(app: str | None) -> str:
    if app is None:
        raise BadFilter("app is missing: add ?app=<SdkAppid>")
    return app


def _json(gen: Generation, payload: dict[str, Any]) -> Response:
    payload["freshness"] = {
        "as_of": gen.as_of,
        "age_seconds": round(age_seconds(gen.as_of), 1),
        "source": "snapshot" if gen.path == _source().snapshot_path else "database",
    }
    body = orjson.dumps(payload, default=str, option=orjson.OPT_NON_STR_KEYS)
    return Response(body, mimetype="application/json", headers={"Cache-Control": "no-store"})


def _page(template: str, gen: Generation, app: str | None, **extra: Any) -> str | BaseResponse:
    apps = known_apps(gen)
    rng = parse_range(request.args.get("range"))
    if app is None:
        if not apps:
            return render_template("empty.html", ranges=RANGES, range=rng.name)
        args = {**request.view_args, "app": apps[0], "range": rng.name}  # type: ignore[dict-item]
        return redirect(url_for(request.endpoint or "dashboard.overview", **args))
    return render_template(template, apps=apps, app=app, ranges=RANGES, range=rng.name, **extra)


@bp.get("/")
def overview() -> Any:
    gen = _generation()
    app, _ = _context(gen)
    return _page("overview.html", gen, app, page="overview")


@bp.get("/group/<path:group_id>")
def group(group_id: str) -> Any:
    gen = _generation()
    group_id = parse_group(group_id)
    app, _ = _context(gen)
    if app is not None and not queries.group_known(_runner(gen), app, group_id, rollups_whole(gen)):
        raise NotFound(f"unknown group {group_id!r} in app {app}")
    return _page("group.html", gen, app, page="group", group_id=group_id)


@bp.get("/code/<code>")
def code(code: str) -> Any:
    gen = _generation()
    error_code = parse_code(code)
    app, _ = _context(gen)
    if not queries.code_known(_runner(gen), error_code):
        raise NotFound(f"unknown error code {error_code}: not in the catalog and never seen")
    return _page("code.html", gen, app, page="code", code=error_code)


@bp.get("/alerts")
def alerts() -> Any:
    gen = _generation()
    app, _ = _context(gen)
    return _page("alerts.html", gen, app, page="alerts")


@bp.get("/api/apps")
def api_apps() -> Response:
    gen = _generation()
    return _json(gen, {"apps": known_apps(gen)})


@bp.get("/api/overview")
def api_overview() -> Response:
    gen = _generation()
    app, window = _context(gen)
    return _json(gen, queries.overview(_runner(gen), _require_app(app), window, rollups_whole(gen)))


@bp.get("/api/group/<path:group_id>")
def api_group(group_id: str) -> Response:
    gen = _generation()
    group_id = parse_group(group_id)
    app, window = _context(gen)
    run = _runner(gen)
    if not queries.group_known(run, _require_app(app), group_id, rollups_whole(gen)):
        raise NotFound(f"unknown group {group_id!r} in app {app}")
    return _json(gen, queries.group(run, _require_app(app), window, group_id, rollups_whole(gen)))


@bp.get("/api/code/<code>")
def api_code(code: str) -> Response:
    gen = _generation()
    error_code = parse_code(code)
    app, window = _context(gen)
    run = _runner(gen)
    if not queries.code_known(run, error_code):
        raise NotFound(f"unknown error code {error_code}: not in the catalog and never seen")
    return _json(gen, queries.code(run, _require_app(app), window, error_code, rollups_whole(gen)))


@bp.get("/api/alerts")
def api_alerts() -> Response:
    gen = _generation()
    app, window = _context(gen)
    return _json(gen, {"alerts": queries.alerts(_runner(gen), _require_app(app), window)})


@bp.get("/healthz")
def healthz() -> Response:
    return Response(orjson.dumps({"status": "ok"}), mimetype="application/json")
