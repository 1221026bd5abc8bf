"""``stream-lag``: one worker's lag while the ingress runs at its maximum (wrk)."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import click

from bench.harness import Run, Subject, common_options, kafka_option, stop_group, subjects
from bench.processes import granian_argv
from bench.stats import percentile
from bench.stream.worker import StreamWorker
from groupwatch.admin.topics import create_topics
from groupwatch.contracts import Settings, load_settings
from tests.support.ports import free_port
from tests.support.processes import settings_env, wait_http_ok

POST_LUA = Path(__file__).resolve().parents[1] / "ingest" / "post.lua"
TARGET = "worker lag bounded while the ingress runs at its maximum"


def under_load(
    subject: Subject, settings: Settings, tmp: Path, seconds: int, drain: int, connections: int
) -> dict[str, float | None]:
    """Ingress (granian, 2 workers x 32 threads) and one worker of ``subject``; wrk at the
    ingress's maximum for ``seconds``, lag sampled every second, ``drain`` s more after."""
    tmp.mkdir(parents=True)
    env = settings_env(settings)
    env["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="metrics-", dir=tmp)
    port = free_port()
    argv = granian_argv(port, "ingest.wsgi:app")
    log = open(tmp / "ingress.log", "ab")  # noqa: SIM115
    ingress = subject.popen(argv, env, log)
    worker = StreamWorker(subject, settings, tmp / "worker")
    samples: list[float] = []
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/healthz", 60, lambda: f"({subject.name} ingress)")
        worker.start().wait_healthy()
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                current = worker.lag()
                if current is not None:
                    samples.append(current)
                stop.wait(1.0)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        out = subprocess.run(
            [
                "wrk",
                "-t2",
                f"-c{connections}",
                f"-d{seconds}s",
                "-s",
                str(POST_LUA),
                f"http://127.0.0.1:{port}",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        during = list(samples)
        time.sleep(drain)
        stop.set()
        sampler.join()
        counted = worker.counter("groupwatch_stream_events_total")
    finally:
        worker.stop()
        stop_group(ingress)
        log.close()
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return {
        "ingress_rps": float(rps.group(1)) if rps else None,
        "non_2xx": float(non2xx.group(1)) if non2xx else 0.0,
        "lag_max": max(during) if during else None,
        "lag_p95": percentile(during, 0.95) if during else None,
        "lag_after_drain": samples[-1] if samples else None,
        "events_counted": counted,
    }


@click.command("stream-lag", short_help="Stream worker lag while the ingress runs at its max.")
@common_options
@kafka_option
@click.option(
    "--seconds", type=click.IntRange(1), default=30, show_default=True, help="Load time per round."
)
@click.option(
    "--drain",
    type=click.IntRange(0),
    default=10,
    show_default=True,
    help="Seconds sampled after the load.",
)
@click.option("--connections", type=click.IntRange(1), default=32, show_default=True)
def command(
    rounds: int,
    baseline_ref: str | None,
    output: Path | None,
    bootstrap: str,
    seconds: int,
    drain: int,
    connections: int,
) -> None:
    """Per round and subject, under a fresh topic prefix: the real ingress (granian,
    `ingest.wsgi:app`) and one `groupwatch stream` worker; wrk drives the ingress
    unpaced; the worker's /metrics lag (sum over its input partitions) is sampled every
    second. Reports max / p95 lag during the load, lag after the drain, req/s."""
    if not shutil.which("wrk"):
        raise click.ClickException("wrk not found: apt-get install -y wrk")
    tmp = Path(tempfile.mkdtemp(prefix="gw-bench-lag-"))
    try:
        with subjects(baseline_ref) as checkouts:
            run = Run(
                "stream-lag",
                "Stream lag under ingress load: `groupwatch stream` behind the real ingress "
                "driven by wrk at its maximum",
                TARGET,
                {"seconds": seconds, "drain": drain, "connections": connections, "rounds": rounds},
                checkouts,
            )
            for r in range(rounds):
                for s in run.order(r):
                    prefix = f"gwlag-{uuid.uuid4().hex[:8]}"
                    settings = load_settings(
                        kafka_bootstrap_servers=bootstrap,
                        topic_prefix=prefix,
                        partitions=3,
                        state_dir=tmp / f"{s.name}-{r}" / "state",
                        stream_app_id=f"gw-{prefix}",
                        sdkappids=["1400000001"],  # the app of bench/ingest/post.lua
                        unsigned_sdkappids=["1400000001"],  # post.lua does not sign
                    )
                    create_topics(settings)
                    run.record(
                        r,
                        s.name,
                        under_load(s, settings, tmp / f"{s.name}-{r}", seconds, drain, connections),
                    )
            run.finish(output, summarize, "lag_max")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def summarize(medians: dict[str, dict[str, float | None]]) -> tuple[dict[str, Any], str]:
    cur = medians["current"]
    text = (
        f"lag max {cur['lag_max']:,.0f} / p95 {cur['lag_p95']:,.0f} events at "
        f"{cur['ingress_rps']:,.0f} req/s; after drain {cur['lag_after_drain']:,.0f}"
    )
    if "baseline" in medians:
        base = medians["baseline"]
        text += f"; baseline max {base['lag_max']:,.0f} at {base['ingress_rps']:,.0f} req/s"
    return {"bounded": cur["lag_after_drain"] == 0}, text
