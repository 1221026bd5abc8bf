"""``report``: ``groupwatch report`` over millions of raw rows vs the same SQL run directly."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import click
import duckdb

from analytics.db import open_writer
from analytics.migrations import migrate
from bench.harness import Run, Subject, common_options, subjects
from bench.stats import ratio

HERE = Path(__file__).resolve().parent
TARGET = "report over 10 M rows <= 1.2 x direct SQL and < 2 s"
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
    """A migrated database: ``rows`` exceptions over the last two hours, per-minute sends
    for 5,000 groups and 1,000 alerts (current code's migrations)."""
    con = open_writer(db, db.with_suffix(".snap"))
    migrate(con)
    step = 1_000_000
    for lo in range(0, rows, step):
        con.execute(GENERATE, {"lo": lo, "hi": min(rows, lo + step)}).fetchall()
        click.echo(f"  generated {min(rows, lo + step):,} rows")
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


def fresh_enough(db: Path, rows: int) -> bool:
    """A cached database with ``rows`` rows built minutes ago (event times are relative to
    the build: an older one leaves the report's 1 h window partly empty)."""
    if not db.exists():
        return False
    con = duckdb.connect(str(db), read_only=True)
    have, fresh = con.execute(
        "SELECT count(*), coalesce(max(event_time) > now() - INTERVAL 5 MINUTE, false) "
        "FROM exceptions"
    ).fetchall()[0]
    con.close()
    return bool(have == rows and fresh)


def measure(subject: Subject, db: Path, repeat: int) -> dict[str, float]:
    """In the subject: report vs direct SQL; then the CLI's wall time (interpreter start
    included) of `groupwatch report --since 1h` on the file, no sink."""
    out = subject.run(
        [sys.executable, str(HERE / "report_subject.py"), str(db), "--repeat", str(repeat)],
        os.environ,
    )
    got = json.loads(out.stdout.strip().splitlines()[-1])
    if not Path(got["module"]).resolve().is_relative_to(subject.root.resolve()):
        raise click.ClickException(f"{subject.name}: analytics imported from {got['module']}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GROUPWATCH_")}
    env.update(GROUPWATCH_DUCKDB_PATH=str(db), GROUPWATCH_QUERY_PORT="1")
    t = time.perf_counter()
    subject.run(subject.groupwatch("report", "--since", "1h"), env)
    cli = time.perf_counter() - t
    return {
        "report_s": got["report_s"],
        "direct_sql_s": got["direct_sql_s"],
        "report_over_direct": got["report_s"] / got["direct_sql_s"],
        "cli_wall_s": cli,
    }


@click.command("report", short_help="`groupwatch report` over 10 M rows vs direct SQL.")
@common_options
@click.option(
    "--events",
    "rows",
    type=click.IntRange(1000),
    default=10_000_000,
    show_default=True,
    help="Raw exception rows in the database.",
)
@click.option(
    "--repeat",
    type=click.IntRange(1),
    default=3,
    show_default=True,
    help="Timed repetitions inside each round (their median is the round's).",
)
@click.option(
    "--db",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("/tmp/groupwatch-bench-report.duckdb"),
    show_default=True,
    help="Cache of the generated database (rebuilt when stale).",
)
def command(
    rounds: int, baseline_ref: str | None, output: Path | None, rows: int, repeat: int, db: Path
) -> None:
    """Builds (or reuses, when minutes old) a migrated database with N exceptions over the
    last two hours. Per round and subject: `build_report` through the guarded read-only
    path `groupwatch report` uses without a sink, plus rendering to a null console, vs
    the identical SQL strings with plain `execute().fetchall()`; and the CLI's wall time."""
    if not fresh_enough(db, rows):
        db.unlink(missing_ok=True)
        click.echo(f"building {db} with {rows:,} rows")
        build(db, rows)
    with subjects(baseline_ref) as checkouts:
        run = Run(
            "report",
            "Report: `build_report` via the guarded read-only path (+ rendering) vs the "
            "same SQL run directly, over N raw rows",
            TARGET,
            {"events": rows, "repeat": repeat, "rounds": rounds},
            checkouts,
        )
        for r in range(rounds):
            for s in run.order(r):
                run.record(r, s.name, measure(s, db, repeat))
        run.finish(output, summarize, "report_s")


def summarize(medians: dict[str, dict[str, float | None]]) -> tuple[dict[str, Any], str]:
    cur = medians["current"]
    over = ratio(cur["report_s"], cur["direct_sql_s"], 2)
    text = (
        f"{over} x direct SQL, {cur['report_s']:.2f} s (direct {cur['direct_sql_s']:.2f} s); "
        f"CLI {cur['cli_wall_s']:.2f} s"
    )
    if "baseline" in medians:
        text += f"; baseline {medians['baseline']['report_s']:.2f} s"
    return {
        "report_over_direct": over,
        "met": bool(over and over <= 1.2 and (cur["report_s"] or 9) < 2),
    }, text
