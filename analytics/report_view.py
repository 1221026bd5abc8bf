"""The terminal rendering of a report (rich)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from analytics.report import Report

TREND_ROWS = 30


def _num(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, datetime):
        return value.strftime("%m-%d %H:%M:%S")
    return str(value)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _since(ms: int) -> str:
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms / 1000:g}s"


def print_report(report: Report, console: Console) -> None:
    p, t = report.params, report.totals
    scope = f"app {p.app}" if p.app else "all apps"
    console.print(
        Panel(
            f"failures in the last [bold]{_since(p.since_ms)}[/bold], {scope} — generated "
            f"{report.generated_at:%Y-%m-%d %H:%M:%S} UTC",
            title="groupwatch report",
        )
    )

    totals = Table(title="Totals", show_header=False)
    totals.add_column("what")
    totals.add_column("value", justify="right")
    totals.add_row("failures", _num(t["failures"]))
    totals.add_row("groups affected", _num(t["groups"]))
    totals.add_row("senders affected", _num(t["senders"]))
    totals.add_row("apps", _num(t["apps"]))
    totals.add_row("first failure", _num(t["first_failure"]))
    totals.add_row("last failure", _num(t["last_failure"]))
    totals.add_row("successful sends", _num(t["sends"]) if t["sends_known"] else "unknown")
    totals.add_row("failure ratio", _pct(report.failure_ratio))
    console.print(totals)

    minutes = report.per_minute()
    trend = Table(title=f"Failures per minute (last {min(len(minutes), TREND_ROWS)} minutes)")
    trend.add_column("minute (UTC)")
    trend.add_column("failures", justify="right")
    trend.add_column("")
    peak = max((n for _, n in minutes), default=0)
    for minute, n in minutes[-TREND_ROWS:]:
        trend.add_row(f"{minute:%m-%d %H:%M}", str(n), "█" * max(1, round(30 * n / peak)))
    console.print(trend)

    groups = Table(title=f"Top {p.top} groups")
    for col in ("app", "group", "failures", "senders", "top code", "sends", "ratio", "last"):
        groups.add_column(col, justify="right" if col in ("failures", "senders") else "left")
    for g in report.sections["top_groups"]:
        groups.add_row(
            g["sdkappid"],
            g["group_id"],
            _num(g["failures"]),
            _num(g["senders"]),
            _num(g["top_error_code"]),
            _num(g["sends"]),
            _pct(g["failure_ratio"]),
            _num(g["last_failure"]),
        )
    console.print(groups)

    codes = Table(title="Top error codes")
    for col in ("code", "category", "failures", "share"):
        codes.add_column(col)
    for c in report.sections["top_codes"]:
        codes.add_row(
            str(c["error_code"]), c["error_category"], _num(c["failures"]), _pct(c["share"])
        )
    console.print(codes)

    cats = Table(title="Categories")
    for col in ("category", "failures", "groups", "share"):
        cats.add_column(col)
    for c in report.sections["categories"]:
        cats.add_row(c["error_category"], _num(c["failures"]), _num(c["groups"]), _pct(c["share"]))
    console.print(cats)

    alerts = Table(title="Recent alerts")
    for col in ("raised", "app", "group", "reason", "window", "failures", "threshold"):
        alerts.add_column(col)
    for a in report.sections["alerts"]:
        alerts.add_row(
            _num(a["raised_at"]),
            a["sdkappid"],
            a["group_id"],
            a["reason"],
            _num(a["window_start"]),
            _num(a["failures"]),
            _num(a["threshold"]),
        )
    if not report.sections["alerts"]:
        alerts.add_row("none", "", "", "", "", "", "")
    console.print(alerts)
