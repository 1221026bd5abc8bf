"""The report's chart: failures per minute stacked by error category (PNG or HTML)."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from analytics.report import Report


def render_png(report: Report) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = sorted({row["minute"] for row in report.sections["trend"]})
    categories = sorted({row["error_category"] for row in report.sections["trend"]})
    counts = {(r["minute"], r["error_category"]): r["failures"] for r in report.sections["trend"]}
    fig, ax = plt.subplots(figsize=(11, 4.5), dpi=100)
    bottom = [0] * len(minutes)
    for cat in categories:
        values = [counts.get((m, cat), 0) for m in minutes]
        ax.bar(minutes, values, bottom=bottom, width=1 / 1440 * 0.9, label=cat, align="edge")
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    scope = f"app {report.params.app}" if report.params.app else "all apps"
    ax.set_title(f"groupwatch: failures per minute by category ({scope})")
    ax.set_xlabel("minute (UTC)")
    ax.set_ylabel("failures")
    if categories:
        ax.legend(loc="upper left", fontsize="small")
    else:
        ax.text(0.5, 0.5, "no failures in this window", ha="center", transform=ax.transAxes)
    fig.autofmt_xdate()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def check_chart_path(path: Path) -> None:
    if path.suffix.lower() not in (".png", ".html", ".htm"):
        raise ValueError(f"--chart {path}: use a .png or .html file name")


def write_chart(report: Report, path: Path) -> None:
    """``.png`` writes the image; ``.html`` a page embedding it (base64) with the totals."""
    check_chart_path(path)
    suffix = path.suffix.lower()
    png = render_png(report)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".png":
        path.write_bytes(png)
        return
    t = report.totals
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in (
            ("failures", t["failures"]),
            ("groups", t["groups"]),
            ("senders", t["senders"]),
            (
                "failure ratio",
                "unknown" if report.failure_ratio is None else f"{report.failure_ratio:.2%}",
            ),
        )
    )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>groupwatch report</title>"
        "</head><body><h1>groupwatch report</h1>"
        f"<p>generated {report.generated_at:%Y-%m-%d %H:%M:%S} UTC</p><table>{rows}</table>"
        f"<img alt='failures per minute' src='data:image/png;base64,"
        f"{base64.b64encode(png).decode()}'></body></html>"
    )
    path.write_text(page, encoding="utf-8")
