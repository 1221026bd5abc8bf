"""Worker lag while the ingress runs at its benchmark maximum.

Starts, under a fresh topic prefix, the real ingress (granian, ``ingest.wsgi:app``, the
settings of bench/ingest: 2 workers x 32 threads) and one ``groupwatch stream`` worker,
then drives the ingress with ``wrk -t2 -c32`` and ``bench/ingest/post.lua`` (unpaced: its
maximum) for ``--seconds``, sampling the worker's ``/metrics`` lag (sum over its input
partitions) every second, and ``--drain`` seconds more after wrk stopped. Prints and writes
max / p95 / last lag, the ingress req/s and the worker's events counted.

Usage: KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:19092 .venv/bin/python \
    bench/stream/lag_under_ingress.py [--seconds 30] [--out bench/stream/lag.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "stream"))
sys.path.insert(0, str(ROOT))

from streamkit import Worker, free_port, metric  # noqa: E402

from groupwatch.admin.topics import create_topics  # noqa: E402
from groupwatch.contracts import Settings  # noqa: E402
from tests.processes import settings_env, wait_http_ok  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--drain", type=int, default=10)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "stream" / "lag.json")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk not found: apt-get install -y wrk")
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092")
    tmp = Path(tempfile.mkdtemp(prefix="gw-bench-lag-"))
    prefix = f"gwlag-{uuid.uuid4().hex[:8]}"
    settings = Settings(
        kafka_bootstrap_servers=bootstrap,
        topic_prefix=prefix,
        partitions=3,
        state_dir=tmp / "state",
        stream_app_id=f"gw-{prefix}",
        sdkappids=["1400000001"],  # the app of bench/ingest/post.lua
        unsigned_sdkappids=["1400000001"],  # post.lua does not sign
    )
    create_topics(settings)
    env = settings_env(settings)
    env["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="metrics-", dir=tmp)
    port = free_port()
    log = open(tmp / "ingress.log", "wb")  # noqa: SIM115
    ingress = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("granian")),
            "--interface",
            "wsgi",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "2",
            "--blocking-threads",
            "32",
            "ingest.wsgi:app",
        ],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    worker = Worker(settings, tmp, "lag")
    samples: list[tuple[float, float]] = []
    try:
        wait_http_ok(
            f"http://127.0.0.1:{port}/healthz",
            60,
            lambda: "(ingress did not start): " + (tmp / "ingress.log").read_text(),
        )
        worker.start()
        worker.wait_healthy(timeout=180)
        stop = threading.Event()
        t0 = time.monotonic()

        def sample() -> None:
            while not stop.is_set():
                current = worker.lag()
                if current is not None:
                    samples.append((round(time.monotonic() - t0, 1), current))
                stop.wait(1.0)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        out = subprocess.run(
            [
                "wrk",
                "-t2",
                f"-c{args.connections}",
                f"-d{args.seconds}s",
                "-s",
                str(ROOT / "bench" / "ingest" / "post.lua"),
                f"http://127.0.0.1:{port}",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        during = [lag for t, lag in samples]
        time.sleep(args.drain)
        stop.set()
        sampler.join()
        counted = metric(worker.metrics(), "groupwatch_stream_events_total")
    finally:
        worker.stop()
        os.killpg(ingress.pid, signal.SIGTERM)
        ingress.wait(30)
        log.close()
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    result = {
        "seconds": args.seconds,
        "ingress_requests_per_s": float(rps.group(1)) if rps else None,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "lag_max_during_load": max(during) if during else None,
        "lag_p95_during_load": percentile(during, 0.95) if during else None,
        "lag_after_drain": samples[-1][1] if samples else None,
        "worker_events_counted": counted,
        "samples": samples,
        "loadavg": os.getloadavg(),
    }
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=2))
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
