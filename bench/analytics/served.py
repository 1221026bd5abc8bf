"""``served``: a real sink's batch latency while 4 clients query it."""

from __future__ import annotations

import re
import shutil
import statistics
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import click
import requests
from confluent_kafka import Producer

from bench import events as inputs
from bench.analytics.sinkproc import Sink
from bench.harness import Run, Subject, common_options, kafka_option, subjects
from bench.stats import percentile
from groupwatch.admin.topics import create_topics
from groupwatch.contracts import Settings, Topics, load_settings
from groupwatch.contracts.keys import group_key
from groupwatch.contracts.records import encode
from tests.support.ports import free_port
from tests.support.processes import settings_env

SQL = "SELECT * FROM top_groups_24h LIMIT 10"
TARGET = "queries do not stall the sink: batch p95 with 4 querying clients near idle's"


class Feeder(threading.Thread):
    """~``rate`` exceptions/s (and a send every tenth of a second) until stopped."""

    def __init__(self, bootstrap: str, topics: Topics, rate: int) -> None:
        super().__init__(daemon=True)
        self.topics, self.per_tick = topics, max(1, rate // 10)
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
        self.stopping = threading.Event()

    def run(self) -> None:
        i = 0
        while not self.stopping.is_set():
            t = int(time.time() * 1000)
            for _ in range(self.per_tick):
                e = inputs.exception(inputs.APP, f"g{i % 50}", f"u{i % 300}", i, t, 10006)
                self.producer.produce(
                    self.topics.exceptions, encode(e), group_key(e.sdkappid, e.group_id).encode()
                )
                i += 1
            s = inputs.send(inputs.APP, f"g{i % 50}", "u1", i, t)
            self.producer.produce(
                self.topics.sends, encode(s), group_key(s.sdkappid, s.group_id).encode()
            )
            self.producer.poll(0)
            self.stopping.wait(0.1)
        self.producer.flush(30)

    def stop(self) -> None:
        self.stopping.set()
        self.join(60)


def phase(
    subject: Subject, sink: Sink, settings: Settings, name: str, seconds: float
) -> dict[str, float | None]:
    """``seconds`` of 4 clients (``http``: POST /query, Arrow; ``cli``: `groupwatch query`
    processes; ``idle``: none); the sink's batch latency over the phase, client round trips."""
    since = time.time()
    rtts: list[float] = []
    env = settings_env(settings)

    def client(_: int) -> None:
        http = requests.Session()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            t = time.monotonic()
            if name == "http":
                http.post(
                    f"{sink.url}/query", json={"sql": SQL, "format": "arrow"}, timeout=30
                ).raise_for_status()
                rtts.append(time.monotonic() - t)
            elif name == "cli":
                proc = subject.run(subject.groupwatch("query", SQL, "--timing"), env)
                m = re.search(r"query: ([0-9.]+) ms", proc.stderr)
                if m:
                    rtts.append(float(m.group(1)) / 1000)
            else:
                time.sleep(0.5)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(client, range(4)))
    st = sink.stats(since=since)
    out: dict[str, float | None] = {
        f"{name}_batches": float(st["window_batches"]),
        f"{name}_batch_p50_ms": st["p50_batch_ms"],
        f"{name}_batch_p95_ms": st["p95_batch_ms"],
        f"{name}_batch_max_ms": st["max_batch_ms"],
    }
    if rtts:
        out[f"{name}_queries"] = float(len(rtts))
        out[f"{name}_query_p50_ms"] = statistics.median(rtts) * 1000
        out[f"{name}_query_p95_ms"] = percentile(rtts, 0.95) * 1000
    return out


@click.command("served", short_help="Sink batch latency while 4 clients query it.")
@common_options
@kafka_option
@click.option(
    "--seconds", type=click.FloatRange(1), default=10.0, show_default=True, help="Per phase."
)
@click.option(
    "--rate",
    type=click.IntRange(10),
    default=2000,
    show_default=True,
    help="Exceptions/s fed while measuring.",
)
@click.option(
    "--cli/--no-cli",
    "with_cli",
    default=True,
    show_default=True,
    help="Also a phase of 4 `groupwatch query` processes in a loop.",
)
def command(
    rounds: int,
    baseline_ref: str | None,
    output: Path | None,
    bootstrap: str,
    seconds: float,
    rate: int,
    with_cli: bool,
) -> None:
    """A feeder produces ~2,000 exceptions/s. Per round and subject, a fresh `groupwatch
    sink` runs phases of --seconds each: no queries; 4 threads POSTing /query in a loop
    (HTTP, Arrow); (--cli) 4 concurrent `groupwatch query` processes in a loop. Per phase:
    the sink's batch latency (p50/p95/max from /stats) and the clients' round trips."""
    tmp = Path(tempfile.mkdtemp(prefix="gw-bench-served-"))
    prefix = f"gwbench-{uuid.uuid4().hex[:8]}"
    base = load_settings(
        kafka_bootstrap_servers=bootstrap, topic_prefix=prefix, partitions=3, state_dir=tmp
    )
    create_topics(base)
    feeder = Feeder(bootstrap, Topics.from_settings(base), rate)
    feeder.start()
    phases = ("idle", "http", "cli") if with_cli else ("idle", "http")
    try:
        with subjects(baseline_ref) as checkouts:
            run = Run(
                "served",
                "Served queries: a real `groupwatch sink`'s batch latency with 4 clients "
                "querying it (HTTP /query, `groupwatch query`) vs none",
                TARGET,
                {"seconds": seconds, "rate": rate, "phases": list(phases), "rounds": rounds},
                checkouts,
            )
            for r in range(rounds):
                for s in run.order(r):
                    d = tmp / f"{s.name}-{r}"
                    settings = base.model_copy(
                        update={
                            "state_dir": d,
                            "duckdb_path": d / "db.duckdb",
                            "snapshot_path": d / "snap.duckdb",
                            "query_port": free_port(),
                            "sink_group_id": f"{prefix}-{s.name}{r}",
                        }
                    )
                    d.mkdir(parents=True)
                    sink = Sink(s, settings, d / "sink.log").start()
                    try:
                        sink.http.get(f"{sink.url}/healthz", timeout=5)
                        time.sleep(2)  # caught up with the backlog of earlier rounds
                        values: dict[str, float | None] = {}
                        for name in phases:
                            values.update(phase(s, sink, settings, name, seconds))
                    finally:
                        sink.stop()
                    run.record(r, s.name, values)
            run.finish(output, summarize, "http_batch_p95_ms")
    finally:
        feeder.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def summarize(medians: dict[str, dict[str, float | None]]) -> tuple[dict[str, Any], str]:
    cur = medians["current"]

    def ms(key: str) -> str:
        value = cur.get(key)
        return "—" if value is None else f"{value:.0f}"

    text = (
        f"batch p95 idle {ms('idle_batch_p95_ms')} ms, 4 HTTP clients "
        f"{ms('http_batch_p95_ms')} ms (query p50 {ms('http_query_p50_ms')} ms)"
    )
    if "cli_batch_p95_ms" in cur:
        text += f", 4 CLI clients {ms('cli_batch_p95_ms')} ms"
    if "baseline" in medians:
        b = medians["baseline"].get("http_batch_p95_ms")
        text += f"; baseline HTTP {b:.0f} ms" if b is not None else ""
    return {}, text
