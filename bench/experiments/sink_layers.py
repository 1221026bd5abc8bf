"""The sink's cost per row by layer, one layer at a time (no overlap, no HTTP).

``python -m bench.experiments.sink_layers --bootstrap HOST:PORT [--events N]``: N distinct
raw ExceptionEvents on a fresh topic (as ``python -m bench sink``), then ONE in-process
``analytics.sink.Sink`` (no served SQL, no snapshots) driven by hand, batch by batch:
consume (librdkafka + the Message objects), ``_fresh`` (the redelivery filter), collate
(Arrow's JSON reader and the contract checks), prepare, and the batch transaction
(``apply_batch``), each timed with the thread's CPU and the wall clock; then the same rows
as one Arrow ``INSERT … ON CONFLICT`` (the benchmark's reference). Prints µs per row per
layer and the worst batch.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click

from analytics.batch import collate, prepare
from analytics.sink import Sink
from bench import events as inputs
from bench.analytics.sink import direct_insert, drop_topics
from groupwatch.admin.topics import create_topics
from groupwatch.contracts import Topics, load_settings

T = TypeVar("T")


@click.command()
@click.option("--bootstrap", envvar="KAFKA_BOOTSTRAP_SERVERS", required=True)
@click.option("--events", type=int, default=200_000, show_default=True)
@click.option("--batch-rows", type=int, default=None, help="sink_batch_rows (default: setting)")
def main(bootstrap: str, events: int, batch_rows: int | None) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="gw-sink-layers-"))
    prefix = f"gwlayers-{uuid.uuid4().hex[:8]}"
    extra = {} if batch_rows is None else {"sink_batch_rows": batch_rows}
    settings = load_settings(
        kafka_bootstrap_servers=bootstrap,
        topic_prefix=prefix,
        partitions=6,
        state_dir=tmp / "state",
        duckdb_path=tmp / "sink.duckdb",
        snapshot_path=tmp / "snap.duckdb",
        sink_group_id=f"{prefix}-sink",
        **extra,
    )
    create_topics(settings)
    rows = inputs.distinct_exceptions(events)
    inputs.produce(bootstrap, Topics.from_settings(settings).exceptions, rows)
    try:
        cpu: dict[str, float] = defaultdict(float)
        wall: dict[str, float] = defaultdict(float)
        worst = 0.0
        sink = Sink(settings, serve=False, snapshots=False)
        t = sink.topics
        sink.consumer.subscribe(
            [t.exceptions, t.sends, t.failure_windows, t.alerts], on_assign=sink._on_assign
        )
        done = 0
        s = settings

        def timed(name: str, fn: Callable[..., T], *args: object) -> T:
            c0, w0 = time.thread_time(), time.perf_counter()
            out = fn(*args)
            cpu[name] += time.thread_time() - c0
            wall[name] += time.perf_counter() - w0
            return out

        while done < events:
            messages = timed(
                "consume",
                lambda: sink.consumer.consume(
                    num_messages=s.sink_batch_rows, timeout=s.sink_batch_ms / 1000
                ),
            )
            fresh = timed("fresh", sink._fresh, messages)
            if not fresh:
                continue
            batch = timed("collate", collate, fresh, sink.topics)
            sink.positions.update(batch.next_offsets)
            prepared = timed("prepare", prepare, batch, sink.generation)
            w0 = time.perf_counter()
            done += timed("apply", sink.apply_once, prepared)
            worst = max(worst, time.perf_counter() - w0)
        sink.consumer.close()
        sink.con.close()
        d = tmp / "direct"
        d.mkdir()
        ref = direct_insert(d, rows)
    finally:
        drop_topics(settings)
        shutil.rmtree(tmp, ignore_errors=True)
    total_cpu = sum(cpu.values())
    print(f"{events} rows, batches of {settings.sink_batch_rows}")
    for name in cpu:
        print(
            f"  {name:8s} cpu {cpu[name] / events * 1e6:6.2f} us/row"
            f"  wall {wall[name] / events * 1e6:6.2f} us/row"
        )
    print(f"  total    cpu {total_cpu / events * 1e6:6.2f} us/row (thread CPU: DuckDB on 1 thread)")
    print(f"  worst batch transaction {worst * 1000:.0f} ms")
    print(
        f"  one-shot: {ref['direct_cpu_us_per_row']:.2f} us/row CPU, "
        f"{ref['direct_rows_per_s']:,.0f} rows/s"
    )


if __name__ == "__main__":
    main()
