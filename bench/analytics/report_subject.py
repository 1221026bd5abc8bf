"""Run by ``python -m bench report`` inside one subject (its checkout on PYTHONPATH):
time ``build_report`` through the guarded read-only path ``groupwatch report`` uses
without a sink (+ rendering to a null console) against the identical SQL run directly.

    python bench/analytics/report_subject.py DB --repeat N   -> one JSON line
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import time
from pathlib import Path

from guarded_select import run_select  # this script's folder: the harness's, any subject
from rich.console import Console

import analytics
from analytics.db import open_read_only
from analytics.report import ReportParams, build_report, report_queries
from analytics.report_view import print_report


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("db")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    params = ReportParams(since_ms=3_600_000, top=10)
    sqls = list(report_queries(params).values())
    con = open_read_only(Path(args.db))

    def via_report() -> None:
        report = build_report(lambda sql: run_select(con, sql, 60, 10_000).table, params)
        print_report(report, Console(file=io.StringIO(), width=120))

    def direct() -> None:
        for sql in sqls:
            con.execute(sql).fetchall()

    via_report()
    direct()  # warm both
    rep, dir_ = [], []
    for _ in range(args.repeat):
        t = time.perf_counter()
        via_report()
        rep.append(time.perf_counter() - t)
        t = time.perf_counter()
        direct()
        dir_.append(time.perf_counter() - t)
    con.close()
    out = {
        "report_s": statistics.median(rep),
        "direct_sql_s": statistics.median(dir_),
        "module": analytics.__file__,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
