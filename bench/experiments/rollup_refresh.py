"""Experiment: what the sink's rollup refresh (``analytics.rollups.refresh``, run before
each snapshot and inside it) costs: wall and CPU time per exceptions row for N new rows
on top of a database that already holds (and has rolled up) M rows, and what the same
statements cost inside each batch's transaction instead.

``python -m bench.experiments.rollup_refresh [--stored 1000000] [--new 200000] [--batch 10000]``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from analytics import rollups
from analytics.apply import INSERT_EXCEPTIONS_NEW
from analytics.batch import exceptions_table
from analytics.db import open_writer
from analytics.migrations import migrate
from analytics.tables import EXCEPTIONS
from bench import events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stored", type=int, default=1_000_000)
    parser.add_argument("--new", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=10_000)
    args = parser.parse_args()
    rows = events.distinct_exceptions(args.stored + args.new)
    with tempfile.TemporaryDirectory(prefix="gw-rollup-") as tmp:
        for mode in ("refresh", "in-batch"):
            path = Path(tmp) / f"{mode}.duckdb"
            con = open_writer(path, Path(tmp) / "snap.duckdb", lock=False)
            con.execute("SET enable_progress_bar = false")
            migrate(con)
            spent = cpu = 0.0
            for lo in range(0, len(rows), args.batch):
                measured = lo >= args.stored
                con.register(EXCEPTIONS.registered, exceptions_table(rows[lo : lo + args.batch]))
                con.execute("BEGIN TRANSACTION")
                con.execute(INSERT_EXCEPTIONS_NEW).fetchall()
                if mode == "in-batch" and measured:
                    t, c = time.perf_counter(), time.process_time()
                    con.execute(";\n".join(rollups.exceptions_sql(EXCEPTIONS.registered)))
                    spent += time.perf_counter() - t
                    cpu += time.process_time() - c
                con.execute("COMMIT")
                con.unregister(EXCEPTIONS.registered)
                if lo + args.batch == args.stored:
                    rollups.refresh(con)  # the stored rows, rolled up beforehand
            if mode == "refresh":
                t, c = time.perf_counter(), time.process_time()
                done = rollups.refresh(con)
                spent, cpu = time.perf_counter() - t, time.process_time() - c
                assert done == args.new, done
            con.close()
            print(
                f"{mode:9s} {args.new:,} new rows over {args.stored:,}: "
                f"{spent:.2f} s wall, {spent / args.new * 1e6:.2f} us/row wall, "
                f"{cpu / args.new * 1e6:.2f} us/row CPU"
            )


if __name__ == "__main__":
    main()
