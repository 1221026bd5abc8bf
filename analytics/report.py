"""``groupwatch report``: totals, trend, top groups, codes, categories, ratios, alerts.

Every number comes from the SQL in ``report_queries`` (the benchmark runs the same
strings directly); all sections share one time filter, so their sums agree.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

APP_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True)
class ReportParams:
    since_ms: int
    app: str | None = None
    top: int = 10

    def __post_init__(self) -> None:
        if self.since_ms <= 0:
            raise ValueError("--since must be a positive duration")
        if self.app is not None and not APP_ID.match(self.app):
            raise ValueError(f"--app {self.app!r} is not a valid SdkAppid")
        if not 1 <= self.top <= 1000:
            raise ValueError("--top must be between 1 and 1000")


def report_queries(p: ReportParams) -> dict[str, str]:
    """The report's SQL, one statement per section."""
    app = f" AND sdkappid = '{p.app}'" if p.app else ""
    start = f"now() - to_milliseconds({p.since_ms})"
    where = f"WHERE event_time >= {start}{app}"
    sends_where = f"WHERE minute >= date_trunc('minute', {start}){app}"
    known = "(SELECT DISTINCT sdkappid FROM sends_minutely)"
    return {
        "totals": f"""
            SELECT count(*) AS failures,
                   count(DISTINCT (sdkappid, group_id)) AS groups,
                   count(DISTINCT from_account) AS senders,
                   count(DISTINCT sdkappid) AS apps,
                   min(event_time) AS first_failure,
                   max(event_time) AS last_failure,
                   (SELECT sum(sends)::BIGINT FROM sends_minutely {sends_where}) AS sends,
                   (SELECT count(*) FROM sends_minutely
                    WHERE sdkappid IN (SELECT sdkappid FROM {known}){app}) > 0 AS sends_known
            FROM exceptions {where}""",
        "trend": f"""
            SELECT date_trunc('minute', event_time) AS minute, error_category,
                   count(*) AS failures
            FROM exceptions {where}
            GROUP BY ALL ORDER BY minute, error_category""",
        # two phases: the top N by count first, then senders and mode for those N only
        "top_groups": f"""
            WITH top AS (
                SELECT sdkappid, group_id, count(*) AS failures,
                       max(event_time) AS last_failure
                FROM exceptions {where}
                GROUP BY ALL ORDER BY failures DESC, sdkappid, group_id LIMIT {p.top}
            ), f AS (
                SELECT t.sdkappid, t.group_id, t.failures, t.last_failure,
                       count(DISTINCT e.from_account) AS senders,
                       mode(e.error_code) AS top_error_code
                FROM top t JOIN exceptions e
                  ON e.sdkappid = t.sdkappid AND e.group_id = t.group_id
                 AND e.event_time >= {start}
                GROUP BY ALL
            ), s AS (
                SELECT sdkappid, group_id, sum(sends)::BIGINT AS sends
                FROM sends_minutely {sends_where} GROUP BY ALL
            )
            SELECT f.sdkappid, f.group_id, f.failures, f.senders, f.top_error_code,
                   f.last_failure,
                   CASE WHEN k.sdkappid IS NOT NULL THEN coalesce(s.sends, 0) END AS sends,
                   CASE WHEN k.sdkappid IS NOT NULL
                        THEN f.failures / (f.failures + coalesce(s.sends, 0)) END
                        AS failure_ratio
            FROM f LEFT JOIN s USING (sdkappid, group_id)
            LEFT JOIN {known} k ON k.sdkappid = f.sdkappid
            ORDER BY f.failures DESC, f.sdkappid, f.group_id""",
        "top_codes": f"""
            SELECT error_code, any_value(error_category) AS error_category,
                   count(*) AS failures, count(*) / sum(count(*)) OVER () AS share
            FROM exceptions {where}
            GROUP BY error_code ORDER BY failures DESC, error_code LIMIT {p.top}""",
        "categories": f"""
            SELECT error_category, count(*) AS failures,
                   count(DISTINCT (sdkappid, group_id)) AS groups,
                   count(*) / sum(count(*)) OVER () AS share
            FROM exceptions {where}
            GROUP BY error_category ORDER BY failures DESC, error_category""",
        "alerts": f"""
            SELECT raised_at, sdkappid, group_id, reason, window_start, failures,
                   threshold, baseline, failure_ratio
            FROM alerts WHERE raised_at >= {start}{app}
            ORDER BY raised_at DESC, sdkappid, group_id LIMIT {p.top}""",
    }


@dataclass
class Report:
    params: ReportParams
    generated_at: datetime
    sections: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def totals(self) -> dict[str, Any]:
        return self.sections["totals"][0]

    @property
    def failure_ratio(self) -> float | None:
        t = self.totals
        if not t["sends_known"]:
            return None
        sends = t["sends"] or 0
        failures = t["failures"] or 0
        return failures / (failures + sends) if failures + sends else None

    def per_minute(self) -> list[tuple[datetime, int]]:
        totals: dict[datetime, int] = {}
        for row in self.sections["trend"]:
            totals[row["minute"]] = totals.get(row["minute"], 0) + row["failures"]
        return sorted(totals.items())

    def as_json(self) -> dict[str, Any]:
        return {
            "since_ms": self.params.since_ms,
            "app": self.params.app,
            "top": self.params.top,
            "generated_at": self.generated_at,
            "failure_ratio": self.failure_ratio,
            "failures_per_minute": [{"minute": m, "failures": n} for m, n in self.per_minute()],
            **self.sections,
        }


def build_report(run: Callable[[str], pa.Table], params: ReportParams) -> Report:
    """Run every section's SQL through ``run`` (the sink endpoint or an open file)."""
    report = Report(params, datetime.now(UTC))
    for name, sql in report_queries(params).items():
        report.sections[name] = run(sql).to_pylist()
    return report
