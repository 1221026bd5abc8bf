"""Freshness: time from a callback's POST to its window's final row being visible in DuckDB.

Starts ingress, one stream worker and the sink as separate processes (short windows),
sends simulated exception and send callbacks at a steady rate with event time = wall time
(no storm, no late events), records each exception callback's POST wall time under its
window key, and polls the sink's SQL endpoint for ``final`` rows, noting when each key's
final first appeared. Latency = first poll that saw the final row - POST time, so it is
over-stated by up to one poll interval. Also per window: final seen - (end + grace), the
pipeline's share of the latency (event time = wall time). Only windows that closed by the
steady traffic itself count (end + grace before the load stopped); the tail windows are
not measured.

Usage:
  .venv/bin/python bench/e2e/freshness.py [--window 10] [--grace 5] [--rate 50]
      [--duration 90] [--poll 0.25] [--out bench/e2e/freshness-results.json]
With KAFKA_BOOTSTRAP_SERVERS set that broker is used, else a local one is started.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from groupwatch.simulate.generator import Generator, Planned, SimConfig  # noqa: E402
from groupwatch.simulate.ledger import Ledger  # noqa: E402
from groupwatch.simulate.sender import Sender, SendOptions  # noqa: E402
from groupwatch.simulate.signing import App  # noqa: E402
from tests.conftest import free_port  # noqa: E402
from tests.processes import BrokerProcess, StageProcess, clean_env, groupwatch  # noqa: E402

APPS = (App("1400000001", "fresh-token-0123456789"),)
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


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--window", type=int, default=10)
    ap.add_argument("--grace", type=int, default=5)
    ap.add_argument("--rate", type=float, default=50.0)
    ap.add_argument("--duration", type=float, default=90.0)
    ap.add_argument("--poll", type=float, default=0.25)
    ap.add_argument("--groups", type=int, default=30)
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--idle-close", type=int, default=0)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="gw-fresh-"))
    prefix = f"gwfresh-{free_port()}"
    env = clean_env(
        GROUPWATCH_STATE_DIR=str(tmp / "state"),
        GROUPWATCH_KAFKA_PORT=str(free_port()),
        GROUPWATCH_KAFKA_CONTROLLER_PORT=str(free_port()),
        GROUPWATCH_TOPIC_PREFIX=prefix,
        GROUPWATCH_PARTITIONS=str(args.partitions),
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
        GROUPWATCH_WINDOW_SECONDS=str(args.window),
        GROUPWATCH_GRACE_SECONDS=str(args.grace),
        GROUPWATCH_IDLE_CLOSE_SECONDS=str(args.idle_close),
    )
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    broker = None
    if external:
        env["KAFKA_BOOTSTRAP_SERVERS"] = external
    else:
        broker = BrokerProcess(env)
        broker.start()
    ingress_url = f"http://127.0.0.1:{env['GROUPWATCH_INGEST_PORT']}"
    sink_url = f"http://127.0.0.1:{env['GROUPWATCH_QUERY_PORT']}"
    logs = tmp / "logs"
    stages = [
        StageProcess("ingress", ["ingest"], env, logs / "ingest.log", f"{ingress_url}/readyz"),
        StageProcess(
            "stream",
            ["stream"],
            env,
            logs / "stream.log",
            f"http://127.0.0.1:{env['GROUPWATCH_STREAM_WEB_PORT']}/healthz",
        ),
        StageProcess("sink", ["sink"], env, logs / "sink.log", f"{sink_url}/healthz"),
    ]
    try:
        groupwatch(env, "topics", "create")
        for stage in stages:
            stage.start()
        result = measure(args, ingress_url, sink_url)
    finally:
        for stage in reversed(stages):
            stage.stop()
        if broker is not None:
            broker.stop()
    result["load_average"] = os.getloadavg()
    result["logs"] = str(logs)
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


def measure(args: argparse.Namespace, ingress_url: str, sink_url: str) -> dict[str, Any]:
    window_ms = args.window * 1000
    config = SimConfig(
        apps=APPS,
        event_time_start_ms=int(time.time() * 1000),
        step_ms=1000.0 / args.rate,
        seed=5,
        groups=args.groups,
        window_seconds=args.window,
        grace_seconds=args.grace,
        dup_rate=0.0,
        late_rate=0.0,
        other_rate=0.0,
        storm_start=None,
    )
    ledger = Ledger(args.window, args.grace)
    options = SendOptions(url=f"{ingress_url}/callback", connections=4, rate=args.rate)
    sender = TimedSender(options, ledger, window_ms)
    seen: dict[Key, float] = {}
    stop_polling = threading.Event()

    def poll() -> None:
        sql = (
            "SELECT sdkappid, group_id, error_code, epoch_ms(window_start) AS ws "
            "FROM failure_windows WHERE final"
        )
        while not stop_polling.is_set():
            try:
                resp = requests.post(f"{sink_url}/query", json={"sql": sql}, timeout=10)
                now = time.time()
                for row in resp.json()["rows"]:
                    seen.setdefault((row[0], row[1], int(row[2]), int(row[3])), now)
            except (requests.RequestException, ValueError, KeyError):
                pass
            stop_polling.wait(args.poll)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    started = time.time()
    sender.run(Generator(config), deadline=time.monotonic() + args.duration)
    stopped = time.time()
    # Windows that the steady traffic itself closed: end + grace before the load stopped
    # (event time = wall time), with one window of margin for the jitter.
    closed_by_traffic_ms = int(stopped * 1000) - (args.grace + args.window) * 1000
    measured = [
        (key, posted)
        for key, posted in sender.posts
        if key[3] + window_ms + args.grace * 1000 <= closed_by_traffic_ms
    ]
    deadline = time.monotonic() + 60
    while any(key not in seen for key, _ in measured) and time.monotonic() < deadline:
        time.sleep(0.5)
    stop_polling.set()
    poller.join(15)
    missing = sum(1 for key, _ in measured if key not in seen)
    latencies = [seen[key] - posted for key, posted in measured if key in seen]
    bound = args.window + args.grace + 2
    # Per window: when its final appeared after the earliest moment it could close
    # (end + grace on the wall clock, event time being wall time): the pipeline's share.
    after_close = [
        seen[key] - (key[3] + window_ms + args.grace * 1000) / 1000
        for key in {k for k, _ in measured}
        if key in seen
    ]
    p95 = percentile(latencies, 0.95) if latencies else float("nan")
    return {
        "window_s": args.window,
        "grace_s": args.grace,
        "rate": args.rate,
        "duration_s": round(stopped - started, 1),
        "poll_s": args.poll,
        "idle_close_s": args.idle_close,
        "exception_callbacks_measured": len(latencies),
        "windows_measured": len({k for k, _ in measured}),
        "without_final_after_60s": missing,
        "p50_s": round(statistics.median(latencies), 2) if latencies else None,
        "p95_s": round(p95, 2),
        "max_s": round(max(latencies), 2) if latencies else None,
        "bound_s": bound,
        "final_after_close_p50_s": round(statistics.median(after_close), 2)
        if after_close
        else None,
        "final_after_close_p95_s": round(percentile(after_close, 0.95), 2) if after_close else None,
        "met": bool(latencies) and p95 <= bound and missing == 0,
        "totals": ledger.to_dict()["totals"],
    }


if __name__ == "__main__":
    raise SystemExit(main())
