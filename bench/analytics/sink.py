"""``sink``: rows/s of a real ``groupwatch sink`` from Kafka vs one Arrow
``INSERT … ON CONFLICT`` of the same rows, same run."""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import click

from analytics.batch import exceptions_table
from analytics.db import open_writer
from analytics.migrations import migrate
from bench import events as inputs
from bench.analytics.oneshot import INSERT_EXCEPTIONS_UNIQUE
from bench.analytics.sinkproc import Sink
from bench.harness import REFERENCE, Run, Subject, common_options, kafka_option, subjects
from bench.stats import ratio
from groupwatch.admin.topics import admin_client, create_topics
from groupwatch.contracts import Settings, Topics, load_settings
from groupwatch.contracts.records import ExceptionEvent
from groupwatch.contracts.topics import topic_specs
from tests.support.ports import free_port
from tests.support.processes import cpu_seconds

TARGET = "sink rows/s >= 0.5 x a bare Arrow `INSERT … ON CONFLICT`"
POLL_S = 0.05


def direct_insert(tmp: Path, events: list[ExceptionEvent]) -> dict[str, float]:
    """The same rows, already one Arrow table, in one ``INSERT … ON CONFLICT DO NOTHING``
    into a fresh migrated database (the sink's own SQL without in-batch de-duplication:
    every id is distinct)."""
    con = open_writer(tmp / "direct.duckdb", tmp / "direct-snap.duckdb")
    migrate(con)
    table = exceptions_table(events)
    con.register("_b_exceptions", table)
    started, cpu_started = time.perf_counter(), time.process_time()
    con.execute("BEGIN TRANSACTION")
    con.execute(INSERT_EXCEPTIONS_UNIQUE).fetchall()
    con.execute("COMMIT")
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    rows = con.execute("SELECT count(*) FROM exceptions").fetchall()[0][0]
    con.close()
    if rows != len(events):
        raise click.ClickException(f"direct insert stored {rows} of {len(events)} rows")
    n = len(events)
    return {"direct_rows_per_s": n / elapsed, "direct_cpu_us_per_row": cpu / n * 1e6}


def sink_once(subject: Subject, settings: Settings, tmp: Path, n: int) -> dict[str, float]:
    """A fresh sink (own consumer group and database) until all ``n`` rows are applied.

    Rate = rows applied between the first /stats poll that shows rows and the first that
    shows all of them, over that time (both ends carry the same poll error, 50 ms); CPU
    is the sink process's over the same span. Checkpoints (a sink that runs them between
    batches reports them in /stats): how many fell inside the span, and the longest.
    """
    sink = Sink(subject, settings, tmp / "sink.log").start()
    try:
        first: tuple[float, int, float] | None = None
        first_stats: dict[str, Any] = {}
        while True:
            polled = sink.stats()
            rows = int(polled["rows"])
            now = time.perf_counter()
            if first is None and rows > 0:
                first, first_stats = (now, rows, cpu_seconds(sink.pid)), polled
            if rows >= n:
                done_stats = polled
                done, cpu_done = now, cpu_seconds(sink.pid)
                break
            time.sleep(POLL_S)
        stats = sink.stats()
        stored = sink.sql("SELECT count(*) FROM exceptions")[0][0]
    finally:
        sink.stop()
    assert first is not None
    if stored != n:
        raise click.ClickException(f"{subject.name} sink stored {stored} of {n} rows")
    applied = n - first[1]
    if applied <= 0 or done <= first[0]:
        raise click.ClickException(f"{n} rows took one batch: use more --events")
    return {
        "rows_per_s": applied / (done - first[0]),
        "cpu_us_per_row": (cpu_done - first[2]) / applied * 1e6,
        "batches": float(stats["batches"]),
        "max_batch_ms": stats["max_batch_ms"],
        **checkpoints_in_span(first_stats, done_stats),
    }


def checkpoints_in_span(first: dict[str, Any], done: dict[str, Any]) -> dict[str, float | None]:
    """Checkpoints between the two polls and the longest so far (None: a sink that does
    not report them, i.e. checkpoints inside its commits)."""
    if "checkpoints" not in done:
        return {"checkpoints": None, "max_checkpoint_ms": None}
    return {
        "checkpoints": float(done["checkpoints"] - first.get("checkpoints", 0)),
        "max_checkpoint_ms": done.get("max_checkpoint_ms"),
    }


def drop_topics(settings: Settings) -> None:
    """Delete the run's topics: leftover partitions slow the broker down."""
    admin = admin_client(settings)  # kept alive until every deletion is answered
    names = [spec.name for spec in topic_specs(settings)]
    for future in admin.delete_topics(names, operation_timeout=30).values():
        future.result()


@click.command("sink", short_help="Sink rows/s vs one bare Arrow INSERT … ON CONFLICT.")
@common_options
@kafka_option
@click.option("--events", type=click.IntRange(1000), default=200_000, show_default=True)
@click.option("--partitions", type=click.IntRange(1), default=6, show_default=True)
def command(
    rounds: int,
    baseline_ref: str | None,
    output: Path | None,
    bootstrap: str,
    events: int,
    partitions: int,
) -> None:
    """N distinct raw ExceptionEvents on a fresh topic; each round, per subject, a fresh
    `groupwatch sink` (own consumer group and database: consumer, decode, Arrow, one
    transaction per batch with its offsets) until every row is applied, and the reference:
    the same rows as one Arrow table in one `INSERT … ON CONFLICT DO NOTHING`."""
    tmp = Path(tempfile.mkdtemp(prefix="gw-bench-sink-"))
    prefix = f"gwbench-{uuid.uuid4().hex[:8]}"
    base = load_settings(
        kafka_bootstrap_servers=bootstrap,
        topic_prefix=prefix,
        partitions=partitions,
        state_dir=tmp / "state",
        snapshot_interval_seconds=3600,  # no snapshot while measuring
    )
    create_topics(base)
    rows = inputs.distinct_exceptions(events)
    inputs.produce(bootstrap, Topics.from_settings(base).exceptions, rows)
    try:
        with subjects(baseline_ref) as checkouts:
            run = Run(
                "sink",
                "Sink throughput: `groupwatch sink` from Kafka to DuckDB vs one Arrow "
                "INSERT … ON CONFLICT of the same rows",
                TARGET,
                {"events": events, "partitions": partitions, "rounds": rounds},
                checkouts,
            )
            for r in range(rounds):
                for s in run.order(r):
                    d = tmp / f"{s.name}-{r}"
                    settings = base.model_copy(
                        update={
                            "state_dir": d,
                            "duckdb_path": d / "sink.duckdb",
                            "snapshot_path": d / "snap.duckdb",
                            "sink_group_id": f"{prefix}-{s.name}{r}",
                            "query_port": free_port(),
                        }
                    )
                    d.mkdir(parents=True)
                    run.record(r, s.name, sink_once(s, settings, d, events))
                d = tmp / f"direct-{r}"
                d.mkdir()
                run.record(r, REFERENCE, direct_insert(d, rows))
                shutil.rmtree(d, ignore_errors=True)
            run.finish(output, summarize, "rows_per_s")
    finally:
        drop_topics(base)
        shutil.rmtree(tmp, ignore_errors=True)


def summarize(medians: dict[str, dict[str, float | None]]) -> tuple[dict[str, Any], str]:
    direct = medians[REFERENCE]["direct_rows_per_s"]
    cur = medians["current"]
    summary: dict[str, Any] = {"current_over_direct": ratio(cur["rows_per_s"], direct)}
    text = (
        f"{summary['current_over_direct']} x direct ({cur['rows_per_s']:,.0f} vs "
        f"{direct:,.0f} rows/s); CPU {cur['cpu_us_per_row']:.2f} us/row; "
        f"max batch {cur['max_batch_ms']:.0f} ms"
    )
    if "baseline" in medians:
        summary["baseline_over_direct"] = ratio(medians["baseline"]["rows_per_s"], direct)
        text += f"; baseline {summary['baseline_over_direct']} x direct"
    return summary, text
