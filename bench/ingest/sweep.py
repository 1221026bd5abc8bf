"""Server-settings sweep: bare Flask vs the durable ingress for each workers x threads.

    KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:19092 .venv/bin/python bench/ingest/sweep.py \
        --configs 1x4,1x8,1x16,1x32,2x4,2x8,2x16,2x32 --rounds 3 --seconds 5

Each config is one ``run_bench.py --quick`` run (both servers; (a) and (b) with the SAME
workers and threads, interleaved, medians of the rounds). Prints one row per config
and server and writes ``bench/ingest/results-sweep.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--configs", default="1x4,1x8,1x16,1x32,2x4,2x8,2x16,2x32")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--servers", default="granian,gunicorn")
    parser.add_argument("--out", type=Path, default=HERE / "results-sweep.json")
    args = parser.parse_args()
    rows = []
    for config in args.configs.split(","):
        workers, _, threads = config.partition("x")
        if not (workers.isdigit() and threads.isdigit()):
            sys.exit(f"--configs: {config!r} is not WORKERSxTHREADS")
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            subprocess.run(
                [
                    sys.executable,
                    str(HERE / "run_bench.py"),
                    "--quick",
                    "--rounds",
                    str(args.rounds),
                    "--seconds",
                    str(args.seconds),
                    "--workers",
                    workers,
                    "--threads",
                    threads,
                    "--servers",
                    args.servers,
                    "--out",
                    out.name,
                ],
                check=True,
                stdout=subprocess.DEVNULL,
            )
            result = json.loads(Path(out.name).read_text())
        for server, by_mode in result["max_load"].items():
            bare, ingress = by_mode["bare"], by_mode["ingress"]
            row = {
                "server": server,
                "workers": int(workers),
                "threads": int(threads),
                "bare_rps": bare["rps"],
                "ingress_rps": ingress["rps"],
                "ratio": ingress["rps"] / bare["rps"],
                "bare_p99_ms": bare["p99_ms"],
                "ingress_p99_ms": ingress["p99_ms"],
                "bare_cpu_us": bare["worker_cpu_us_per_req"],
                "ingress_cpu_us": ingress["worker_cpu_us_per_req"],
                "broker_cpu_us": ingress["broker_cpu_us_per_req"],
                "errors": result["errors"][server],
                "load": os.getloadavg()[0],
            }
            rows.append(row)
            print(
                f"{server:8s} {workers}x{threads:>2s}  bare {row['bare_rps']:6.0f}  "
                f"ingress {row['ingress_rps']:5.0f}  ratio {row['ratio']:.2f}  "
                f"p99 {row['bare_p99_ms']:.1f}/{row['ingress_p99_ms']:.1f} ms  "
                f"cpu {row['bare_cpu_us']:.0f}/{row['ingress_cpu_us']:.0f} us  "
                f"load {row['load']:.1f}",
                flush=True,
            )
    args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
