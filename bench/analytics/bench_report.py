"""``report`` over 10 million raw rows vs the same SQL run directly, same run.

    .venv/bin/python bench/analytics/bench_report.py --rows 10000000 --repeat 5

Builds (once, cached at --db) a migrated database with N exceptions over the last two
hours, per-minute sends and alerts. Then alternates, --repeat times each:
  * report: ``build_report`` through the guarded read-only path ``groupwatch report``
    uses without a sink (cursor, read-only transaction, checks, row cap) + terminal
    rendering to a null console;
  * direct: the identical SQL strings run with plain ``con.execute(...).fetchall()``.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import duckdb
from rich.console import Console

from analytics.db import open_read_only, open_writer
from analytics.migrations import migrate
from analytics.report import ReportParams, build_report, report_queries
from analytics.report_view import print_report
from bench.analytics.guarded_select import run_select

GENERATE = """
INSERT INTO exceptions
SELECT md5(i::VARCHAR), '14000000' || (i % 3), 'Group.CallbackSendMsgException',
       '@TGS#' || (hash(i) % 5000), 'Public', 'user' || (hash(i + 1) % 100000), NULL, i,
       false, ['TIMTextElem'], code, 'bench',
       CASE code WHEN 10004 THEN 'invalid_param' WHEN 10006 THEN 'rate_limited'
                 WHEN 10023 THEN 'rate_limited' WHEN 10017 THEN 'muted'
                 WHEN 80001 THEN 'content_filtered' WHEN 10002 THEN 'internal'
                 ELSE 'rejected_by_app' END,
       now() - to_milliseconds((hash(i + 3) % 7200000)::BIGINT), now(), '10.0.0.1', 'iOS',
       NULL, NULL, NULL
FROM (SELECT i, [10004, 10006, 10017, 80001, 10002, 10016, 10023][1 + (hash(i + 2) % 7)::BIGINT]
             AS code FROM range($lo, $hi) t(i))
"""


def build(db: Path, rows: int) -> None:
    con = open_writer(db, db.with_suffix(".snap"))
    migrate(con)
    step = 1_000_000
    for lo in range(0, rows, step):
        con.execute(GENERATE, {"lo": lo, "hi": min(rows, lo + step)}).fetchall()
        print(f"  generated {min(rows, lo + step):,} rows", flush=True)
    con.execute(
        "INSERT INTO sends_minutely SELECT '14000000' || (g % 3), '@TGS#' || g, "
        "date_trunc('minute', now()) - to_minutes(m), 10 + (g * m) % 50 "
        "FROM range(5000) a(g), range(120) b(m)"
    ).fetchall()
    con.execute(
        "INSERT INTO alerts SELECT '14000000' || (g % 3), '@TGS#' || g, 'Public', "
        "date_trunc('minute', now()) - to_minutes(g % 120), "
        "date_trunc('minute', now()) - to_minutes(g % 120) + INTERVAL 1 MINUTE, "
        "'threshold', 40, 20, NULL, 3.0, [], NULL, NULL, "
        "now() - to_minutes(g % 120), 0 FROM range(1000) a(g)"
    ).fetchall()
    con.execute("CHECKPOINT")
    con.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--db", type=Path, default=Path("/tmp/groupwatch-bench-report.duckdb"))
    args = ap.parse_args()
    if args.db.exists():
        con = duckdb.connect(str(args.db), read_only=True)
        have, fresh = con.execute(
            "SELECT count(*), coalesce(max(event_time) > now() - INTERVAL 5 MINUTE, false) "
            "FROM exceptions"
        ).fetchall()[0]
        con.close()
        if have != args.rows or not fresh:
            # event times are relative to the build: a cache older than a few minutes
            # leaves the report's 1 h window partly or wholly empty
            args.db.unlink()
    if not args.db.exists():
        print(f"building {args.db} with {args.rows:,} rows", flush=True)
        build(args.db, args.rows)
    params = ReportParams(since_ms=3_600_000, top=10)
    sqls = list(report_queries(params).values())
    con = open_read_only(args.db)
    in_window = con.execute(
        "SELECT count(*) FROM exceptions WHERE event_time >= now() - INTERVAL 1 HOUR"
    ).fetchall()[0][0]
    print(f"rows in the report's 1 h window: {in_window:,}", flush=True)

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
    env = dict(os.environ, GROUPWATCH_DUCKDB_PATH=str(args.db), GROUPWATCH_QUERY_PORT="1")
    cli = []
    for _ in range(3):
        t = time.perf_counter()
        subprocess.run(
            [str(Path(sys.executable).parent / "groupwatch"), "report", "--since", "1h"],
            env=env,
            check=True,
            capture_output=True,
        )
        cli.append(time.perf_counter() - t)
    r, d = statistics.median(rep), statistics.median(dir_)
    print(
        f"median: report {r:.3f} s, direct SQL {d:.3f} s, ratio {r / d:.2f}; best: report "
        f"{min(rep):.3f} s, direct {min(dir_):.3f} s, ratio {min(rep) / min(dir_):.2f} "
        f"(target <= 1.2 and < 2 s)\nruns report={[round(x, 3) for x in rep]} "
        f"direct={[round(x, 3) for x in dir_]}\nCLI `groupwatch report --since 1h` "
        f"(file, no sink; incl. interpreter start): median {statistics.median(cli):.3f} s, "
        f"best {min(cli):.3f} s; rows={args.rows:,} load={os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
