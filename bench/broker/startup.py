"""``broker``: wall time of ``groupwatch kafka start`` until the broker is ready."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import click

from bench.harness import Run, Subject, common_options, subjects
from tests.support.ports import free_port

TARGET = "local broker ready within 60 s (jars cached)"


def start_stop(subject: Subject, tmp: Path) -> dict[str, float]:
    """`groupwatch kafka start` (returns once the broker answers) on free ports with a
    private state dir, then `groupwatch kafka stop`; both timed."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("GROUPWATCH_") and k != "KAFKA_BOOTSTRAP_SERVERS"
    }
    env.update(
        GROUPWATCH_STATE_DIR=str(tmp),
        GROUPWATCH_KAFKA_PORT=str(free_port()),
        GROUPWATCH_KAFKA_CONTROLLER_PORT=str(free_port()),
    )
    t = time.perf_counter()
    try:
        subject.run(subject.groupwatch("kafka", "start"), env, timeout=180)
        started = time.perf_counter() - t
    finally:
        t = time.perf_counter()
        subject.run(subject.groupwatch("kafka", "stop"), env, timeout=120)
        stopped = time.perf_counter() - t
    return {"start_s": started, "stop_s": stopped}


@click.command("broker", short_help="Local broker start-up time (`groupwatch kafka start`).")
@common_options
def command(rounds: int, baseline_ref: str | None, output: Path | None) -> None:
    """Per round and subject: `groupwatch kafka start` on free ports with a fresh state
    dir, timed until it returns (the broker answers), then `groupwatch kafka stop`. The
    jars must be cached (the first start resolves them with Maven)."""
    tmp = Path(tempfile.mkdtemp(prefix="gw-bench-broker-"))
    try:
        with subjects(baseline_ref) as checkouts:
            run = Run(
                "broker",
                "Platform: `groupwatch kafka start` until ready, fresh state dir, cached jars",
                TARGET,
                {"rounds": rounds},
                checkouts,
            )
            for r in range(rounds):
                for s in run.order(r):
                    run.record(r, s.name, start_stop(s, tmp / f"{s.name}-{r}"))
            run.finish(output, summarize, "start_s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def summarize(medians: dict[str, dict[str, float | None]]) -> tuple[dict[str, Any], str]:
    cur = medians["current"]
    start = cur["start_s"] or float("nan")
    text = f"ready in {start:.1f} s, stopped in {cur['stop_s']:.1f} s"
    if "baseline" in medians:
        text += f"; baseline {medians['baseline']['start_s']:.1f} s"
    return {"met": start <= 60}, text
