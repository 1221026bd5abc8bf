"""``stream``: one worker catching up on a preloaded backlog vs a raw confluent-kafka
aggregation of the same records, same run."""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import click
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from bench import events as inputs
from bench.harness import REFERENCE, Run, Subject, common_options, kafka_option, subjects
from bench.stats import ratio
from bench.stream.worker import StreamWorker
from groupwatch.admin.topics import create_topics
from groupwatch.contracts import Settings, Topics, load_settings
from groupwatch.contracts.records import ExceptionEvent, SendEvent, decode
from tests.support.processes import cpu_seconds

TARGET = "one worker catching up >= 0.5 x a raw confluent-kafka aggregation"


def raw_consume(settings: Settings, topics: Topics, total: int) -> dict[str, float]:
    """Read and aggregate every input record with a plain consumer (per app x group x code
    x window: count and senders; sends per group and window)."""
    start, cpu0 = time.perf_counter(), time.process_time()
    consumer = Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": f"bench-raw-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.assign(
        [
            TopicPartition(t, p, OFFSET_BEGINNING)
            for t in (topics.exceptions, topics.sends)
            for p in range(settings.partitions)
        ]
    )
    failures: Counter[tuple[str, str, int, int]] = Counter()
    senders: defaultdict[tuple[str, str, int, int], set[str | None]] = defaultdict(set)
    sends: Counter[tuple[str, str, int]] = Counter()
    size = settings.window_seconds * 1000
    n = 0
    while n < total:
        for msg in consumer.consume(5000, 1.0):
            if msg.error():
                continue
            n += 1
            if msg.topic() == topics.exceptions:
                ev = decode(msg.value() or b"", ExceptionEvent)
                key = (ev.sdkappid, ev.group_id, ev.error_code, ev.event_time_ms // size)
                failures[key] += 1
                senders[key].add(ev.from_account)
            else:
                sv = decode(msg.value() or b"", SendEvent)
                sends[(sv.sdkappid, sv.group_id, sv.event_time_ms // size)] += 1
    consumer.close()
    seconds = time.perf_counter() - start
    cpu = time.process_time() - cpu0  # librdkafka's threads included
    return {"raw_events_per_s": total / seconds, "raw_cpu_us_per_event": cpu / total * 1e6}


def catch_up(subject: Subject, settings: Settings, workdir: Path, total: int) -> dict[str, float]:
    """Start a worker (fresh consumer group) and wait until its lag is 0 everywhere."""
    worker = StreamWorker(subject, settings, workdir)
    start = time.perf_counter()
    worker.start()
    try:
        worker.wait_healthy()
        first = None
        while True:
            lag = worker.lag(min_series=2 * settings.partitions)
            if first is None and lag is not None and lag < total:
                first = time.perf_counter()
            if lag == 0:
                break
            if worker.proc is not None and worker.proc.poll() is not None:
                raise click.ClickException(f"{subject.name} worker exited: {worker.tail()}")
            time.sleep(0.2)
        done = time.perf_counter()
        counted = worker.counter("groupwatch_stream_events_total")
        assert worker.proc is not None
        cpu = cpu_seconds(worker.proc.pid)
    finally:
        worker.stop()
    return {
        "events_per_s_from_start": total / (done - start),
        "events_per_s_processing": total / (done - (first or start)),
        "cpu_us_per_event": cpu / total * 1e6,  # start-up included
        "events_counted": counted,
    }


@click.command("stream", short_help="Stream worker catch-up vs a raw confluent-kafka consumer.")
@common_options
@kafka_option
@click.option("--events", type=click.IntRange(1000), default=500_000, show_default=True)
@click.option("--partitions", type=click.IntRange(1), default=3, show_default=True)
def command(
    rounds: int,
    baseline_ref: str | None,
    output: Path | None,
    bootstrap: str,
    events: int,
    partitions: int,
) -> None:
    """One `groupwatch stream` worker catching up on N preloaded events (70 % exceptions,
    30 % sends, one hour of event time) from process start until its lag is 0 on every
    input partition, against a raw confluent-kafka consumer doing the same aggregation
    (decode, count and senders per app x group x code x window). Each round: the raw
    consumer, then every subject's worker (fresh consumer group each)."""
    tmp = Path(tempfile.mkdtemp(prefix="gw-bench-stream-"))
    prefix = f"gwbench-{uuid.uuid4().hex[:8]}"
    settings = load_settings(
        kafka_bootstrap_servers=bootstrap,
        topic_prefix=prefix,
        partitions=partitions,
        state_dir=tmp / "state",
        stream_app_id=f"gw-{prefix}",
    )
    create_topics(settings)
    topics = Topics.from_settings(settings)
    exceptions, sends = inputs.mixed_hour(events)
    inputs.produce(bootstrap, topics.exceptions, exceptions)
    inputs.produce(bootstrap, topics.sends, sends)
    total = len(exceptions) + len(sends)
    try:
        with subjects(baseline_ref) as checkouts:
            run = Run(
                "stream",
                "Stream worker catch-up: `groupwatch stream` from start until lag 0, "
                "vs a raw confluent-kafka aggregation of the same records",
                TARGET,
                {"events": total, "partitions": partitions, "rounds": rounds},
                checkouts,
            )
            for r in range(rounds):
                run.record(r, REFERENCE, raw_consume(settings, topics, total))
                for s in run.order(r):
                    ws = settings.model_copy(update={"stream_app_id": f"gw-{prefix}-{s.name}{r}"})
                    run.record(r, s.name, catch_up(s, ws, tmp / f"{s.name}-{r}", total))
            run.finish(output, summarize, "events_per_s_from_start")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def summarize(medians: dict[str, dict[str, float | None]]) -> tuple[dict[str, Any], str]:
    raw = medians[REFERENCE]["raw_events_per_s"]
    cur = medians["current"]
    summary: dict[str, Any] = {
        "current_over_raw_from_start": ratio(cur["events_per_s_from_start"], raw),
        "current_over_raw_processing": ratio(cur["events_per_s_processing"], raw),
    }
    text = (
        f"{summary['current_over_raw_from_start']} x raw from start, "
        f"{summary['current_over_raw_processing']} x processing "
        f"({cur['events_per_s_from_start']:,.0f} vs {raw:,.0f} ev/s); CPU "
        f"{cur['cpu_us_per_event']:.1f} us/event vs raw "
        f"{medians[REFERENCE]['raw_cpu_us_per_event']:.1f}"
    )
    if "baseline" in medians:
        base = medians["baseline"]
        summary["baseline_over_raw_from_start"] = ratio(base["events_per_s_from_start"], raw)
        text += f"; baseline {summary['baseline_over_raw_from_start']} x raw"
    return summary, text
