"""``groupwatch report`` on a known input, through the running sink and from the file."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from groupwatch.contracts import Settings, Topics
from tests.analytics.test_sink import sink_settings
from tests.analytics.workload import Workload
from tests.support import events as f
from tests.support.ports import free_port
from tests.support.processes import settings_env
from tests.support.sink import GROUPWATCH, SinkProcess

pytestmark = pytest.mark.kafka

A, B = "1400000001", "1400000002"


def known_input(now_ms: int) -> Workload:
    minute = now_ms - now_ms % 60_000
    w = Workload()
    t = minute - 10 * 60_000
    for i in range(7):
        w.exceptions.append(f.exception(A, "gA", f"u{i % 3}", i, t + i * 1000, 10004))
    for i in range(4):
        w.exceptions.append(f.exception(A, "gB", "u9", 100 + i, t + 300_000 + i, 80001))
    for i in range(2):
        w.exceptions.append(f.exception(A, "gC", "u8", 200 + i, t + 60_000 + i, 10017))
    for i in range(3):
        w.exceptions.append(f.exception(B, "gX", "u7", 300 + i, t + 120_000 + i, 10006))
    w.exceptions += w.exceptions[:5]  # redelivered: must not count
    for i in range(5):  # three hours ago: outside --since 1h
        w.exceptions.append(f.exception(A, "gA", "old", 400 + i, t - 3 * 3_600_000, 10004))
    w.sends = [f.send(A, "gA", "u1", 1000 + i, t + i * 2000) for i in range(13)]
    w.alerts = [f.alert(A, "gA", t, 25, t + 70_000)]
    return w


def report(settings: Settings, *args: str) -> dict[str, Any]:
    proc = subprocess.run(
        [GROUPWATCH, "report", "--json", *args],
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout))


def check_known(r: dict[str, Any]) -> None:
    t = r["totals"][0]
    assert (t["failures"], t["groups"], t["apps"], t["sends"]) == (16, 4, 2, 13)
    assert r["failure_ratio"] == pytest.approx(16 / 29)
    assert sum(m["failures"] for m in r["failures_per_minute"]) == 16
    assert [(c["error_code"], c["failures"]) for c in r["top_codes"]] == [
        (10004, 7),
        (80001, 4),
        (10006, 3),
    ]
    assert [(c["error_category"], c["failures"]) for c in r["categories"]] == [
        ("invalid_param", 7),
        ("content_filtered", 4),
        ("rate_limited", 3),
        ("muted", 2),
    ]
    groups = [
        (g["group_id"], g["failures"], g["sends"], g["failure_ratio"]) for g in r["top_groups"]
    ]
    assert groups == [("gA", 7, 13, pytest.approx(0.35)), ("gB", 4, 0, 1.0), ("gX", 3, None, None)]
    assert [(a["group_id"], a["failures"]) for a in r["alerts"]] == [("gA", 25)]


def test_report_prints_a_correct_summary_and_writes_a_chart(
    make_settings: Callable[..., Settings], topics: Topics, tmp_path: Path
) -> None:
    settings = sink_settings(make_settings)
    known_input(int(time.time() * 1000)).produce(settings.bootstrap_servers, topics)
    sink = SinkProcess(settings, tmp_path / "sink.log").start()
    try:
        sink.wait_caught_up()
        check_known(report(settings, "--since", "1h", "--top", "3"))
        only_b = report(settings, "--since", "1h", "--app", B)
        assert only_b["totals"][0]["failures"] == 3 and only_b["failure_ratio"] is None
        proc = subprocess.run(
            [
                GROUPWATCH,
                "report",
                "--since",
                "1h",
                "--top",
                "3",
                "--chart",
                str(tmp_path / "out.png"),
            ],
            env=settings_env(settings),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        for text in (
            "Totals",
            "16",
            "55.2%",
            "gA",
            "35.0%",
            "invalid_param",
            "10004",
            "Recent alerts",
            "threshold",
        ):
            assert text in proc.stdout, text
        assert (tmp_path / "out.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        sink.stop()
    # no sink running: the same report straight from the file
    check_known(
        report(settings, "--since", "1h", "--top", "3", "--chart", str(tmp_path / "out.html"))
    )
    page = (tmp_path / "out.html").read_text()
    assert "data:image/png;base64," in page and "<td>16</td>" in page


def test_report_rejects_bad_options(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    for args, message in (
        (["--since", "soon"], "duration"),
        (["--app", "x' OR 1=1"], "not a valid SdkAppid"),
        (["--chart", "out.pdf"], ".png or .html"),
    ):
        proc = subprocess.run(
            [GROUPWATCH, "report", *args],
            env=settings_env(settings),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode != 0 and message in proc.stderr, (args, proc.stderr)


def test_query_without_a_sink_or_a_file_says_so(make_settings: Callable[..., Settings]) -> None:
    # a port nothing listens on: a sink of a stack running on this machine (the default
    # port) would answer and the query would succeed
    settings = make_settings(query_port=free_port())
    proc = subprocess.run(
        [GROUPWATCH, "query", "SELECT 1"],
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "no sink answers" in proc.stderr and "no DuckDB file" in proc.stderr
