"""Run the sink once over a pre-filled topic, for a profiler (py-spy) to watch.

    KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:19092 .venv/bin/py-spy record -r 250 -n -f raw \\
        -o /tmp/sink.raw -- .venv/bin/python bench/analytics/profile_sink.py --rows 200000

Pre-fills fresh topics with N raw ExceptionEvents (as bench_sink.py does), then runs the
real ``Sink`` until every record is applied and prints rows/s and the process CPU per row.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench_sink import make_events, produce_all

from analytics.commands import sink_process_tuning
from groupwatch.admin.topics import create_topics
from groupwatch.contracts import Settings, Topics


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--batch-rows", type=int, default=None)
    ap.add_argument("--sink-module", default="analytics.sink")
    ap.add_argument("--partitions", type=int, default=6)
    args = ap.parse_args()
    n = args.rows
    events = make_events(n)
    with tempfile.TemporaryDirectory(prefix="gw-prof-") as d:
        tmp, prefix = Path(d), f"prof-{uuid.uuid4().hex[:8]}"
        extra = {} if args.batch_rows is None else {"sink_batch_rows": args.batch_rows}
        settings = Settings(
            kafka_bootstrap_servers=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
            topic_prefix=prefix,
            partitions=args.partitions,
            state_dir=tmp,
            duckdb_path=tmp / "sink.duckdb",
            snapshot_path=tmp / "snap.duckdb",
            sink_group_id=prefix,
            **extra,
        )
        create_topics(settings)
        produce_all(settings, Topics.from_settings(settings).exceptions, events)
        sink = importlib.import_module(args.sink_module).Sink(
            settings, serve=False, snapshots=False
        )
        started, cpu_started = time.time(), time.process_time()
        with sink_process_tuning():  # as ``groupwatch sink`` runs it
            sink.run(until=lambda: sink.stats.total_rows >= n)
        wall, cpu = time.time() - started, time.process_time() - cpu_started
    print(
        f"{args.sink_module}: {n / wall:,.0f} rows/s incl. group join, "
        f"CPU {cpu * 1e6 / n:.2f} us/row, {sink.stats.batches} batches"
    )


if __name__ == "__main__":
    main()
