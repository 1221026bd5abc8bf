"""The dashboard in headless Chromium over a real sink and broker: the overview renders
without console errors, its numbers equal the SQL run directly on the snapshot, new
callbacks appear without a reload, and a top group's link opens the group page."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path

import duckdb
import pytest
from playwright.sync_api import ConsoleMessage, Page

from groupwatch.contracts import Settings, Topics
from groupwatch.contracts.keys import alert_key, group_key
from groupwatch.contracts.records import encode
from tests.analytics.dashboard.browser import DashboardProcess, chromium
from tests.analytics.test_sink import sink_settings
from tests.support.events import alert, exception, send
from tests.support.kafka import produce
from tests.support.ports import free_port
from tests.support.sink import SinkProcess

pytestmark = pytest.mark.kafka

APP = "1400000031"


def failures(now_ms: int, counts: dict[str, int], first: int) -> list[tuple[str, bytes]]:
    """``counts`` exceptions per group within the last minutes (two codes, three senders)."""
    records = []
    n = first
    for group, count in counts.items():
        for i in range(count):
            code = (10004, 10017, 80001)[i % 3]
            e = exception(APP, group, f"user{i % 3}", n, now_ms - 1000 - (n * 997) % 240_000, code)
            records.append((group_key(APP, group), encode(e)))
            n += 1
    return records


def snapshot_rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql, [APP]).fetchall()
    finally:
        con.close()


def wait_snapshot_has(path: Path, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            sql = "SELECT count(*) FROM exceptions WHERE sdkappid = ?"
            if snapshot_rows(path, sql)[0][0] >= count:
                return
        time.sleep(0.3)
    raise AssertionError(f"the snapshot never held {count} exceptions")


TOTALS = (
    "SELECT count(*), count(DISTINCT group_id), count(DISTINCT from_account) "
    "FROM exceptions WHERE sdkappid = ?"
)
TOP_GROUPS = (
    "SELECT group_id, count(*) AS n FROM exceptions WHERE sdkappid = ? "
    "GROUP BY group_id ORDER BY n DESC, group_id LIMIT 10"
)


def shown_top_groups(page: Page) -> list[tuple[str, int]]:
    rows = page.locator("#top-groups tbody tr").all()
    return [
        (
            r.locator("td").nth(0).inner_text(),
            int(r.locator("td").nth(1).inner_text().replace(",", "")),
        )
        for r in rows
    ]


def shown_int(page: Page, selector: str) -> int:
    return int(page.inner_text(selector).replace(",", ""))


def test_overview_live_in_chromium(
    make_settings: Callable[..., Settings], topics: Topics, tmp_path: Path
) -> None:
    settings = sink_settings(
        make_settings, snapshot_interval_seconds=1.0, dashboard_port=free_port()
    )
    now_ms = int(time.time() * 1000)
    first = {"@TGS#alpha": 14, "@TGS#beta": 9, "@TGS#gamma": 4}
    batch = failures(now_ms, first, 0)
    sends: Iterable[tuple[str, bytes]] = [
        (group_key(APP, g), encode(send(APP, g, "s", 10_000 + i, now_ms - 30_000)))
        for i, g in enumerate(first)
    ]
    raised = alert(APP, "@TGS#alpha", now_ms - now_ms % 60_000 - 60_000, 14, now_ms)
    produce(settings.bootstrap_servers, topics.exceptions, batch)
    produce(settings.bootstrap_servers, topics.sends, sends)
    produce(
        settings.bootstrap_servers,
        topics.alerts,
        [(alert_key(APP, "@TGS#alpha", raised.window_start_ms, "threshold"), encode(raised))],
    )
    sink = SinkProcess(settings, tmp_path / "sink.log").start()
    dash = DashboardProcess(settings, tmp_path / "dashboard.log")
    try:
        sink.wait_caught_up()
        wait_snapshot_has(settings.snapshot_path, len(batch))
        dash.start()
        with chromium() as browser:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            problems: list[str] = []
            page.on("console", lambda m: _console(m, problems))
            page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
            page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
            page.on(
                "response", lambda r: r.status >= 400 and problems.append(f"{r.status} {r.url}")
            )
            started = time.perf_counter()
            page.goto(f"{dash.url}/?app={APP}&range=1h")
            page.wait_for_selector("body[data-loaded]")
            loaded_ms = (time.perf_counter() - started) * 1000
            paint = page.evaluate(
                "performance.getEntriesByName('first-contentful-paint')[0]?.startTime"
            )
            print(
                f"\noverview: first contentful paint {paint:.0f} ms, data shown {loaded_ms:.0f} ms"
            )

            # the numbers on the page are the SQL's, run directly on the snapshot
            total, groups, senders = snapshot_rows(settings.snapshot_path, TOTALS)[0]
            assert shown_int(page, "#total-failures") == total == len(batch)
            assert shown_int(page, "#total-groups") == groups
            assert shown_int(page, "#total-senders") == senders
            assert shown_top_groups(page) == snapshot_rows(settings.snapshot_path, TOP_GROUPS)
            assert page.locator("#alerts tbody tr td a").first.inner_text() == "@TGS#alpha"
            assert page.locator("#chart-categories canvas").count() == 1
            assert "data as of" in page.inner_text("#freshness")

            # new callbacks show up without a reload
            more = failures(int(time.time() * 1000), {"@TGS#delta": 20}, len(batch))
            produce(settings.bootstrap_servers, topics.exceptions, more)
            expected = len(batch) + len(more)
            shown = "document.querySelector('#total-failures').textContent.replace(/,/g, '')"
            page.wait_for_function(f"{shown} == '{expected}'", timeout=30_000)
            assert page.evaluate("performance.getEntriesByType('navigation').length") == 1
            assert shown_top_groups(page)[0] == ("@TGS#delta", 20)
            assert shown_top_groups(page) == snapshot_rows(settings.snapshot_path, TOP_GROUPS)

            # a click on a top group opens its page
            page.click("#top-groups tbody tr:first-child td a")
            page.wait_for_selector("body[data-page=group][data-loaded]")
            assert "/group/%40TGS%23delta" in page.url
            assert page.inner_text("#group-id") == "@TGS#delta"
            assert shown_int(page, "#total-failures") == 20
            latest = page.locator("#latest tbody tr").all()
            assert len(latest) == 20 and "error 10004" in page.inner_text("#latest")
            assert problems == []
    finally:
        dash.stop()
        sink.stop()


def _console(message: ConsoleMessage, problems: list[str]) -> None:
    if message.type in ("error", "warning"):
        problems.append(f"console {message.type}: {message.text}")
