"""``dashboard``: every dashboard data request over 10 M raw rows, p95 per request and
range, vs the same statements run directly in DuckDB; the overview's first paint."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import click
import duckdb
import requests

from analytics.dashboard import queries
from analytics.dashboard.filters import RANGES, Window
from bench.dashboard.data import build, built_at
from bench.harness import Run, Subject, common_options, subjects, wait_until
from bench.processes import clean_env
from bench.stats import percentile, ratio
from tests.support.ports import free_port

TARGET = "every data request p95 <= 100 ms over 10 M raw rows; overview first paint <= 1 s"
APP: Final = "140000001"
GROUP: Final = "@TGS#12"
CODE: Final = 10004
MAX_AGE_MINUTES = 20  # event times are relative to the build: an older copy empties 15m
CHROMIUM = Path("/usr/bin/chromium")

Direct = Callable[[queries.Run, Window], Any]
# request name -> (URL path, the same statements run directly)
REQUESTS: Final[dict[str, tuple[str, Direct]]] = {
    "overview": ("/api/overview", lambda run, w: queries.overview(run, APP, w)),
    "group": (
        "/api/group/%40TGS%2312",
        lambda run, w: (queries.group_known(run, APP, GROUP), queries.group(run, APP, w, GROUP)),
    ),
    "code": (
        f"/api/code/{CODE}",
        lambda run, w: (queries.code_known(run, CODE), queries.code(run, APP, w, CODE)),
    ),
    "alerts": ("/api/alerts", lambda run, w: queries.alerts(run, APP, w)),
}


@contextmanager
def dashboard(subject: Subject, db: Path, log: Path) -> Iterator[str]:
    port = free_port()
    env = clean_env()
    env.update(
        GROUPWATCH_SNAPSHOT_PATH=str(db),
        GROUPWATCH_DUCKDB_PATH=str(db.with_name("absent.duckdb")),
        GROUPWATCH_DASHBOARD_PORT=str(port),
    )
    url = f"http://127.0.0.1:{port}"
    with log.open("ab") as out:
        proc = subject.popen(subject.groupwatch("dashboard"), env, out)
    try:
        wait_until(lambda: _ok(f"{url}/healthz"), 60, "the dashboard to answer")
        yield url
    finally:
        proc.terminate()
        proc.wait(30)


def _ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def direct_runner(con: duckdb.DuckDBPyConnection) -> queries.Run:
    def run(sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        cur = con.execute(sql, params)
        names = [d[0] for d in cur.description or ()]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    return run


def first_paint(url: str) -> dict[str, float | None]:
    """The overview (1 h) in headless Chromium: first contentful paint, data shown (ms)."""
    if not CHROMIUM.exists():
        return {"first_paint_ms": None, "data_shown_ms": None}
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = browser.new_page()
            started = time.perf_counter()
            page.goto(f"{url}/?app={APP}&range=1h")
            page.wait_for_selector("body[data-loaded]", timeout=30_000)
            shown = (time.perf_counter() - started) * 1000
            paint = page.evaluate(
                "performance.getEntriesByName('first-contentful-paint')[0]?.startTime"
            )
        finally:
            browser.close()
    return {"first_paint_ms": paint, "data_shown_ms": shown}


def measure(subject: Subject, db: Path, repeat: int, log: Path) -> dict[str, float | None]:
    values: dict[str, float | None] = {}
    con = duckdb.connect(str(db), read_only=True)
    con.execute("SET enable_progress_bar = false")
    run = direct_runner(con)
    session = requests.Session()
    try:
        with dashboard(subject, db, log) as url:
            for rng in RANGES.values():
                for name, (path, direct) in REQUESTS.items():
                    served: list[float] = []
                    plain: list[float] = []
                    target = f"{url}{path}?app={APP}&range={rng.name}"
                    session.get(target, timeout=60).raise_for_status()  # the file's first read
                    for _ in range(repeat):
                        t = time.perf_counter()
                        session.get(target, timeout=60).raise_for_status()
                        served.append((time.perf_counter() - t) * 1000)
                        t = time.perf_counter()
                        direct(run, rng.window())
                        plain.append((time.perf_counter() - t) * 1000)
                    values[f"{name}_{rng.name}_p95_ms"] = percentile(served, 95)
                    values[f"{name}_{rng.name}_direct_p95_ms"] = percentile(plain, 95)
            values.update(first_paint(url))
    finally:
        con.close()
    return values


@click.command("dashboard", short_help="Dashboard data requests over 10 M rows vs direct SQL.")
@common_options
@click.option(
    "--events",
    "rows",
    type=click.IntRange(1000),
    default=10_000_000,
    show_default=True,
    help="Raw exception rows in the database (over the last 7 days).",
)
@click.option(
    "--repeat",
    type=click.IntRange(2),
    default=20,
    show_default=True,
    help="Requests per data request and range in each round (their p95 is the round's).",
)
@click.option(
    "--db",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("/tmp/groupwatch-bench-dashboard.duckdb"),
    show_default=True,
    help="Cache of the generated database (rebuilt when older than 20 minutes).",
)
def command(
    rounds: int, baseline_ref: str | None, output: Path | None, rows: int, repeat: int, db: Path
) -> None:
    """Builds (or reuses) a migrated database with N exceptions over the last 7 days and
    the windows, sends and alerts derived from them, in time order as the sink appends
    them; serves it to `groupwatch dashboard` as its snapshot. Per round and subject:
    each /api request (overview, group, code, alerts) at each range, REPEAT times, timed
    at the client, against the same statements (analytics/dashboard/queries.py) run
    directly on a read-only DuckDB connection in this process; then the overview's first
    contentful paint in headless Debian Chromium."""
    age = built_at(db, rows)
    if age is None or age > MAX_AGE_MINUTES:
        for stale in (db, Path(f"{db}.wal")):
            stale.unlink(missing_ok=True)
        click.echo(f"building {db} with {rows:,} rows")
        build(db, rows)
    log = Path(os.environ.get("TMPDIR", "/tmp")) / "groupwatch-bench-dashboard.log"
    with subjects(baseline_ref) as checkouts:
        run = Run(
            "dashboard",
            "Dashboard: p95 of each /api data request per range over N raw rows (7 days), "
            "vs the same statements run directly in DuckDB; overview first paint",
            TARGET,
            {"events": rows, "repeat": repeat, "rounds": rounds, "app_rows": "a third"},
            checkouts,
        )
        for r in range(rounds):
            for s in run.order(r):
                run.record(r, s.name, measure(s, db, repeat, log))
        run.finish(output, summarize, "overview_1h_p95_ms")


def summarize(medians: dict[str, dict[str, float | None]]) -> tuple[dict[str, Any], str]:
    cur = medians["current"]
    worst: dict[str, float] = {}
    ratios: dict[str, float | None] = {}
    met: dict[str, bool] = {}
    for rng in RANGES:
        keys = [f"{n}_{rng}_p95_ms" for n in REQUESTS]
        worst[rng] = max(float(cur[k] or 0) for k in keys)
        met[rng] = worst[rng] <= 100
        for n in REQUESTS:
            ratios[f"{n}_{rng}"] = ratio(
                cur[f"{n}_{rng}_p95_ms"], cur[f"{n}_{rng}_direct_p95_ms"], 2
            )
    paint = cur.get("first_paint_ms")
    text = "worst p95 " + ", ".join(f"{r} {v:.0f} ms" for r, v in worst.items())
    over = ratio(cur["overview_1h_p95_ms"], cur["overview_1h_direct_p95_ms"], 2)
    text += f"; overview 1h {over} x direct"
    if paint is not None:
        text += f"; first paint {paint:.0f} ms"
    return {
        "worst_p95_ms_by_range": worst,
        "ratio_over_direct": ratios,
        "met_by_range": met,
        "met": all(met.values()) and paint is not None and paint <= 1000,
    }, text
