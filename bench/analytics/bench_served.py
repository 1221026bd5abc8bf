"""Batch latency of a real ``groupwatch sink`` while 4 clients query it, same run.

    KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:19092 .venv/bin/python bench/analytics/bench_served.py

A feeder produces ~2,000 exceptions/s. Phases of --seconds each: no queries; 4 threads
POSTing /query in a loop (HTTP, Arrow); 4 concurrent ``groupwatch query`` processes in a
loop. Per phase: the sink's batch latency (p50/p95/max, from /stats) and the clients'
round trip (p50/p95/max; for the CLI both the query round trip and the process wall time).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import requests

from groupwatch.admin.topics import create_topics
from groupwatch.contracts import Settings, Topics
from tests.analytics.sinkproc import GROUPWATCH, SinkProcess
from tests.analytics.test_served import Feeder
from tests.conftest import free_port
from tests.processes import settings_env

SQL = "SELECT * FROM top_groups_24h LIMIT 10"


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    tmp = Path(tempfile.mkdtemp(prefix="gw-served-"))
    settings = Settings(
        kafka_bootstrap_servers=bootstrap,
        topic_prefix=prefix,
        partitions=3,
        state_dir=tmp,
        duckdb_path=tmp / "db.duckdb",
        snapshot_path=tmp / "snap.duckdb",
        query_port=free_port(),
        sink_group_id=prefix,
    )
    create_topics(settings)
    sink = SinkProcess(settings, tmp / "sink.log").start()
    feeder = Feeder(settings, Topics.from_settings(settings), per_round=200)
    feeder.start()
    time.sleep(2)

    def phase(name: str) -> None:
        since = time.time()
        rtts: list[float] = []
        walls: list[float] = []

        def client(_: int) -> None:
            end = time.monotonic() + args.seconds
            while time.monotonic() < end:
                t = time.monotonic()
                if name == "http":
                    requests.post(
                        f"{sink.url}/query", json={"sql": SQL, "format": "arrow"}, timeout=30
                    ).raise_for_status()
                    rtts.append(time.monotonic() - t)
                elif name == "cli":
                    proc = subprocess.run(
                        [GROUPWATCH, "query", SQL, "--timing"],
                        env=settings_env(settings),
                        capture_output=True,
                        text=True,
                        check=True,
                    )
                    walls.append(time.monotonic() - t)
                    m = re.search(r"query: ([0-9.]+) ms", proc.stderr)
                    rtts.append(float(m.group(1)) / 1000 if m else float("nan"))
                else:
                    time.sleep(0.5)

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(client, range(4)))
        st = sink.stats(since=since)
        line = (
            f"{name:5} batches={st['window_batches']:4} batch ms p50={st['p50_batch_ms']} "
            f"p95={st['p95_batch_ms']} max={st['max_batch_ms']} "
            f"(max cpu {st['max_batch_cpu_ms']})"
        )
        if rtts:
            line += (
                f" | queries={len(rtts)} round trip ms p50={statistics.median(rtts) * 1000:.0f}"
                f" p95={pct(rtts, 0.95) * 1000:.0f} max={max(rtts) * 1000:.0f}"
            )
        if walls:
            line += f" | CLI wall s p50={statistics.median(walls):.2f} max={max(walls):.2f}"
        print(line + f" | load={os.getloadavg()[0]:.1f}", flush=True)

    try:
        for name in ("idle", "http", "cli", "idle", "http", "cli"):
            phase(name)
    finally:
        feeder.stop()
        sink.stop()


if __name__ == "__main__":
    main()
