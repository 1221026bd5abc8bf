"""``freshness``: time from a callback's POST to its window's final row in DuckDB.

Starts ingress, one stream worker and the sink of a subject as separate processes (short
windows), sends simulated exception and send callbacks at a steady rate with event time =
wall time (no storm, no late events), records each exception callback's POST wall time
under its window key, and polls the sink's SQL endpoint for ``final`` rows, noting when
each key's final first appeared. Latency = first poll that saw the final row - POST time
(over-stated by up to one poll interval). Only windows that the steady traffic itself
closed (end + grace before the load stopped) count; the tail windows are not measured.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import click
import requests

from bench.harness import Run, Subject, common_options, kafka_option, stop_group, subjects
from bench.processes import clean_env
from bench.stats import percentile
from groupwatch.simulate.generator import Generator, Planned, SimConfig
from groupwatch.simulate.ledger import Ledger
from groupwatch.simulate.sender import Sender, SendOptions
from groupwatch.simulate.signing import App
from tests.support.ports import free_port
from tests.support.processes import wait_http_ok

APPS = (App("1400000001", "fresh-token-0123456789"),)
TARGET = "p95 POST -> window's final row in DuckDB <= window + grace + 2 s"
Key = tuple[str, str, int, int]  # sdkappid, group, code, window start ms


class TimedSender(Sender):
    """Notes each exception callback's POST wall time under its window key."""

    def __init__(self, options: SendOptions, ledger: Ledger, window_ms: int) -> None:
        super().__init__(options, ledger)
        self.window_ms = window_ms
        self.posts: list[tuple[Key, float]] = []
        self._posts_lock = threading.Lock()

    def send_one(self, planned: Planned) -> int:
        posted = time.time()
        status = super().send_one(planned)
        if status == 200 and planned.kind == "exception" and planned.error_code is not None:
            ws = planned.event_time_ms - planned.event_time_ms % self.window_ms
            key = (planned.app.sdkappid, planned.group_id, planned.error_code, ws)
            with self._posts_lock:
                self.posts.append((key, posted))
        return status


def stage_env(
    bootstrap: str, tmp: Path, prefix: str, window: int, grace: int, groups_partitions: int
) -> dict[str, str]:
    env = clean_env()
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=bootstrap,
        GROUPWATCH_STATE_DIR=str(tmp / "state"),
        GROUPWATCH_TOPIC_PREFIX=prefix,
        GROUPWATCH_PARTITIONS=str(groups_partitions),
        GROUPWATCH_DUCKDB_PATH=str(tmp / "gw.duckdb"),
        GROUPWATCH_SNAPSHOT_PATH=str(tmp / "gw-snapshot.duckdb"),
        GROUPWATCH_SDKAPPIDS=APPS[0].sdkappid,
        GROUPWATCH_CALLBACK_TOKENS=f"{APPS[0].sdkappid}:{APPS[0].token}",
        GROUPWATCH_INGEST_PORT=str(free_port()),
        GROUPWATCH_STREAM_WEB_PORT=str(free_port()),
        GROUPWATCH_QUERY_PORT=str(free_port()),
        GROUPWATCH_QUERY_MAX_ROWS="1000000",
        GROUPWATCH_STREAM_APP_ID=f"{prefix}-stream",
        GROUPWATCH_SINK_GROUP_ID=f"{prefix}-sink",
        GROUPWATCH_WINDOW_SECONDS=str(window),
        GROUPWATCH_GRACE_SECONDS=str(grace),
        GROUPWATCH_IDLE_CLOSE_SECONDS="0",
    )
    return env


def one_run(
    subject: Subject, env: dict[str, str], tmp: Path, params: dict[str, Any]
) -> dict[str, float | None]:
    ingress_url = f"http://127.0.0.1:{env['GROUPWATCH_INGEST_PORT']}"
    sink_url = f"http://127.0.0.1:{env['GROUPWATCH_QUERY_PORT']}"
    stages = [
        ("ingest", f"{ingress_url}/readyz"),
        ("stream", f"http://127.0.0.1:{env['GROUPWATCH_STREAM_WEB_PORT']}/healthz"),
        ("sink", f"{sink_url}/healthz"),
    ]
    subject.run(subject.groupwatch("topics", "create"), env)
    procs: list[tuple[subprocess.Popen[bytes], Any]] = []
    try:
        for name, health in stages:
            log = open(tmp / f"{name}.log", "ab")  # noqa: SIM115
            procs.append((subject.popen(subject.groupwatch(name), env, log), log))
            wait_http_ok(health, 120, lambda n=name: f"({subject.name} {n})")
        return measure(params, ingress_url, sink_url)
    finally:
        for proc, log in reversed(procs):
            stop_group(proc, 60)
            log.close()


def measure(p: dict[str, Any], ingress_url: str, sink_url: str) -> dict[str, float | None]:
    window_ms = p["window"] * 1000
    config = SimConfig(
        apps=APPS,
        event_time_start_ms=int(time.time() * 1000),
        step_ms=1000.0 / p["rate"],
        seed=5,
        groups=p["groups"],
        window_seconds=p["window"],
        grace_seconds=p["grace"],
        dup_rate=0.0,
        late_rate=0.0,
        other_rate=0.0,
        storm_start=None,
    )
    ledger = Ledger(p["window"], p["grace"])
    sender = TimedSender(
        SendOptions(url=f"{ingress_url}/callback", connections=4, rate=p["rate"]),
        ledger,
        window_ms,
    )
    seen: dict[Key, float] = {}
    stop_polling = threading.Event()

    def poll() -> None:
        sql = (
            "SELECT sdkappid, group_id, error_code, epoch_ms(window_start) AS ws "
            "FROM failure_windows WHERE final"
        )
        http = requests.Session()
        while not stop_polling.is_set():
            try:
                resp = http.post(f"{sink_url}/query", json={"sql": sql}, timeout=10)
                now = time.time()
                for row in resp.json()["rows"]:
                    seen.setdefault((row[0], row[1], int(row[2]), int(row[3])), now)
            except (requests.RequestException, ValueError, KeyError):
                pass
            stop_polling.wait(p["poll"])

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    sender.run(Generator(config), deadline=time.monotonic() + p["duration"])
    stopped = time.time()
    closed_by_traffic_ms = int(stopped * 1000) - (p["grace"] + p["window"]) * 1000
    measured = [
        (key, posted)
        for key, posted in sender.posts
        if key[3] + window_ms + p["grace"] * 1000 <= closed_by_traffic_ms
    ]
    deadline = time.monotonic() + 60
    while any(key not in seen for key, _ in measured) and time.monotonic() < deadline:
        time.sleep(0.5)
    stop_polling.set()
    poller.join(15)
    latencies = [seen[key] - posted for key, posted in measured if key in seen]
    after_close = [
        seen[key] - (key[3] + window_ms + p["grace"] * 1000) / 1000
        for key in {k for k, _ in measured}
        if key in seen
    ]
    return {
        "p50_s": statistics.median(latencies) if latencies else None,
        "p95_s": percentile(latencies, 0.95) if latencies else None,
        "max_s": max(latencies) if latencies else None,
        "final_after_close_p95_s": percentile(after_close, 0.95) if after_close else None,
        "callbacks_measured": float(len(latencies)),
        "windows_measured": float(len({k for k, _ in measured})),
        "without_final_after_60s": float(sum(1 for key, _ in measured if key not in seen)),
    }


@click.command("freshness", short_help="POST -> final row in DuckDB latency, whole stack.")
@common_options
@kafka_option
@click.option(
    "--seconds",
    "duration",
    type=click.FloatRange(10),
    default=90.0,
    show_default=True,
    help="Load time per round.",
)
@click.option("--window", type=click.IntRange(1), default=10, show_default=True)
@click.option("--grace", type=click.IntRange(0), default=5, show_default=True)
@click.option(
    "--rate", type=click.FloatRange(1), default=50.0, show_default=True, help="Callbacks/s."
)
@click.option("--poll", type=click.FloatRange(0.05), default=0.25, show_default=True)
@click.option("--groups", type=click.IntRange(1), default=30, show_default=True)
def command(
    rounds: int,
    baseline_ref: str | None,
    output: Path | None,
    bootstrap: str,
    duration: float,
    window: int,
    grace: int,
    rate: float,
    poll: float,
    groups: int,
) -> None:
    """Per round and subject, under a fresh topic prefix: `groupwatch ingest`, `stream`
    and `sink` of that subject, simulated callbacks at --rate for --seconds, and the
    latency from each exception callback's POST to its window's final row."""
    params = {
        "seconds": duration,
        "duration": duration,
        "window": window,
        "grace": grace,
        "rate": rate,
        "poll": poll,
        "groups": groups,
        "rounds": rounds,
        "bound_s": window + grace + 2,
    }
    tmp = Path(tempfile.mkdtemp(prefix="gw-bench-fresh-"))
    try:
        with subjects(baseline_ref) as checkouts:
            run = Run(
                "freshness",
                "Freshness: POST -> the window's final row visible in DuckDB, ingress + "
                "stream + sink as processes",
                TARGET,
                {k: v for k, v in params.items() if k != "duration"},
                checkouts,
            )
            for r in range(rounds):
                for s in run.order(r):
                    d = tmp / f"{s.name}-{r}"
                    d.mkdir(parents=True)
                    env = stage_env(bootstrap, d, f"gwfresh-{free_port()}", window, grace, 3)
                    run.record(r, s.name, one_run(s, env, d, params))
            run.finish(output, lambda m: summarize(m, params["bound_s"]), "p95_s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def summarize(
    medians: dict[str, dict[str, float | None]], bound: float
) -> tuple[dict[str, Any], str]:
    cur = medians["current"]

    def s(key: str, m: dict[str, float | None] = cur) -> str:
        value = m.get(key)
        return "—" if value is None else f"{value:.1f}"

    text = f"p95 {s('p95_s')} s (bound {bound:.0f} s), p50 {s('p50_s')} s, max {s('max_s')} s"
    if "baseline" in medians:
        text += f"; baseline p95 {s('p95_s', medians['baseline'])} s"
    p95 = cur.get("p95_s")
    return {"bound_s": bound, "met": p95 is not None and p95 <= bound}, text
