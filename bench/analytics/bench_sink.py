"""Sink throughput: end to end from Kafka vs one Arrow INSERT … ON CONFLICT, same run.

    KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:19092 .venv/bin/python bench/analytics/bench_sink.py \
        --rows 200000 --repeat 5

Variants run interleaved in each repeat, against the same baseline: ``--batch-rows`` and
``--sink-module`` may be given several times (e.g. ``--sink-module analytics_before.sink``
with a copy of an older ``analytics/`` on PYTHONPATH, for before/after in one run).

Each repeat: fresh topics (unique prefix) pre-filled with N raw ExceptionEvents; the
sink (the real ``Sink`` class: consumer, decode, Arrow, one transaction per batch with
offsets) runs in this process until every record is applied. Timed from the first
consumed batch to the last commit (the consumer-group join before it is reported
separately). The baseline inserts the same N records, already as one Arrow table, into
a fresh database with the sink's own ``INSERT … ON CONFLICT DO NOTHING`` (the
form without in-batch de-duplication, as every id is distinct).
"""

from __future__ import annotations

import argparse
import importlib
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import duckdb

from analytics.batch import exceptions_table
from analytics.commands import sink_process_tuning
from analytics.db import open_writer
from analytics.migrations import migrate
from bench.analytics.oneshot import INSERT_EXCEPTIONS_UNIQUE
from groupwatch.admin.topics import admin_client, create_topics
from groupwatch.contracts import Settings, Topics
from groupwatch.contracts.catalog import error_category
from groupwatch.contracts.keys import group_key, make_event_id
from groupwatch.contracts.records import ExceptionEvent, encode
from groupwatch.contracts.topics import topic_specs

CODES = (10004, 10006, 10017, 80001, 10002, 10016, 10023)


def make_events(n: int, seed: int = 1) -> list[ExceptionEvent]:
    rng = random.Random(seed)
    base = int(time.time() * 1000) - 3_600_000
    out = []
    for i in range(n):
        app, group = f"14000000{i % 3}", f"@TGS#{rng.randrange(5000)}"
        sender, t, code = (
            f"user{rng.randrange(100_000)}",
            base + rng.randrange(3_600_000),
            rng.choice(CODES),
        )
        out.append(
            ExceptionEvent(
                event_id=make_event_id(app, group, sender, i, t),
                sdkappid=app,
                group_id=group,
                group_type="Public",
                from_account=sender,
                random=i,
                msg_types=["TIMTextElem"],
                error_code=code,
                error_info="bench",
                error_category=error_category(code),
                event_time_ms=t,
                received_at_ms=t + 30,
                client_ip="10.1.2.3",
                platform="iOS",
            )
        )
    return out


def produce_all(settings: Settings, topic: str, events: list[ExceptionEvent]) -> None:
    from confluent_kafka import Producer

    p = Producer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "linger.ms": 20,
            "batch.size": 1 << 20,
            "compression.type": "lz4",
        }
    )
    for e in events:
        while True:
            try:
                p.produce(topic, encode(e), group_key(e.sdkappid, e.group_id))
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    assert p.flush(60) == 0


def drop_topics(settings: Settings) -> None:
    """Delete a repeat's topics: thousands of leftover partitions slow the broker down."""
    names = [spec.name for spec in topic_specs(settings)]
    admin = admin_client(settings)  # kept alive until every deletion is answered
    for future in admin.delete_topics(names, operation_timeout=30).values():
        future.result()


def run_sink(
    sink_module: str, settings: Settings, n: int
) -> tuple[float, float, int, float, float]:
    """(s first batch -> last commit, s incl. group join, batches, CPU s, max batch s).

    CPU is the whole process's CPU time (every thread: librdkafka, DuckDB, Python) while
    the sink runs, group join included: robust where wall time is not on a busy host.
    """
    sink = importlib.import_module(sink_module).Sink(settings, serve=False, snapshots=False)
    started, cpu_started = time.time(), time.process_time()
    with sink_process_tuning():  # as ``groupwatch sink`` runs it
        sink.run(until=lambda: sink.stats.total_rows >= n)  # closes consumer and database
    finished, cpu = time.time(), time.process_time() - cpu_started
    first_at, first_seconds, _, _ = sink.stats._recent[0]
    first = first_at - first_seconds  # when the first batch's transaction began
    max_batch = max(seconds for _, seconds, _, _ in sink.stats._recent)
    con = duckdb.connect(str(settings.duckdb_path), read_only=True)
    rows = con.execute("SELECT count(*) FROM exceptions").fetchall()[0][0]
    con.close()
    assert rows == n, (rows, n)
    return finished - first, finished - started, sink.stats.batches, cpu, max_batch


def run_direct(tmp: Path, events: list[ExceptionEvent]) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of the one-shot insert."""
    con = open_writer(tmp / "direct.duckdb", tmp / "direct-snap.duckdb")
    migrate(con)
    table = exceptions_table(events)
    con.register("_b_exceptions", table)
    started, cpu_started = time.perf_counter(), time.process_time()
    con.execute("BEGIN TRANSACTION")
    con.execute(INSERT_EXCEPTIONS_UNIQUE).fetchall()
    con.execute("COMMIT")
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    assert con.execute("SELECT count(*) FROM exceptions").fetchall()[0][0] == len(events)
    con.close()
    return elapsed, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument(
        "--batch-rows",
        type=int,
        action="append",
        help="sink_batch_rows (repeatable; default: the Settings default)",
    )
    ap.add_argument(
        "--sink-module",
        action="append",
        help="module holding the Sink class (repeatable; default analytics.sink)",
    )
    ap.add_argument(
        "--checkpoint-mb",
        type=int,
        action="append",
        help="sink_checkpoint_mb (repeatable; default: the Settings default)",
    )
    ap.add_argument("--partitions", type=int, default=6)
    args = ap.parse_args()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    n = args.rows
    events = make_events(n)
    batch_rows = args.batch_rows or [Settings.model_fields["sink_batch_rows"].default]
    checkpoints = args.checkpoint_mb or [Settings.model_fields["sink_checkpoint_mb"].default]
    variants = [
        (m, b, c)
        for m in args.sink_module or ["analytics.sink"]
        for b in batch_rows
        for c in checkpoints
    ]
    rates: dict[tuple[str, int, int], list[float]] = {v: [] for v in variants}
    cpus: dict[tuple[str, int, int], list[float]] = {v: [] for v in variants}
    max_batches: dict[tuple[str, int, int], list[float]] = {v: [] for v in variants}
    direct_rates, direct_cpu = [], []
    for r in range(args.repeat):
        for variant in variants:
            module, rows, ckpt = variant
            with tempfile.TemporaryDirectory(prefix="gw-bench-") as d:
                tmp = Path(d)
                prefix = f"bench-{uuid.uuid4().hex[:8]}"
                settings = Settings(
                    kafka_bootstrap_servers=bootstrap,
                    topic_prefix=prefix,
                    partitions=args.partitions,
                    state_dir=tmp,
                    duckdb_path=tmp / "sink.duckdb",
                    snapshot_path=tmp / "snap.duckdb",
                    sink_group_id=prefix,
                    sink_batch_rows=rows,
                    sink_checkpoint_mb=ckpt,
                )
                create_topics(settings)
                produce_all(settings, Topics.from_settings(settings).exceptions, events)
                try:
                    steady, total, batches, cpu, max_batch = run_sink(module, settings, n)
                finally:
                    drop_topics(settings)
                rates[variant].append(n / steady)
                cpus[variant].append(cpu * 1e6 / n)
                max_batches[variant].append(max_batch * 1000)
                print(
                    f"run {r + 1} {module} batch_rows={rows} checkpoint={ckpt}MB: "
                    f"{n / steady:,.0f} rows/s "
                    f"({batches} batches, {steady:.2f} s; {total:.2f} s incl. group join; "
                    f"CPU {cpu * 1e6 / n:.2f} us/row; max batch {max_batch * 1000:.0f} ms)",
                    flush=True,
                )
        with tempfile.TemporaryDirectory(prefix="gw-bench-") as d:
            direct, dcpu = run_direct(Path(d), events)
        direct_rates.append(n / direct)
        direct_cpu.append(dcpu * 1e6 / n)
        print(
            f"run {r + 1} direct Arrow INSERT: {n / direct:,.0f} rows/s ({direct:.2f} s; "
            f"CPU {direct_cpu[-1]:.2f} us/row)",
            flush=True,
        )
    dr, dc = statistics.median(direct_rates), statistics.median(direct_cpu)
    print(
        f"\nmedians of {args.repeat} (rows={n}, partitions={args.partitions}, "
        f"load={os.getloadavg()[0]:.1f}); direct {dr:,.0f} rows/s, CPU {dc:.2f} us/row"
    )
    print("| variant | sink rows/s | ratio (>= 0.5) | CPU us/row | CPU ratio | max batch ms |")
    print("|---|---|---|---|---|---|")
    for variant in variants:
        module, rows, ckpt = variant
        s, c = statistics.median(rates[variant]), statistics.median(cpus[variant])
        print(
            f"| {module} batch_rows={rows} checkpoint={ckpt}MB | {s:,.0f} | {s / dr:.2f} "
            f"| {c:.2f} | {dc / c:.2f} | {statistics.median(max_batches[variant]):.0f} |"
        )


if __name__ == "__main__":
    main()
