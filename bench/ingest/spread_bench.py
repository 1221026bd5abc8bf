"""Keep-alive spread: how persistent connections land on workers, per server and worker count.

    .venv/bin/python bench/ingest/spread_bench.py

Starts the bare app under granian and gunicorn with 2 and 4 workers, opens 16 keep-alive
connections one after another (gap 0, 50 ms, 500 ms; 3 trials each) and prints the
largest share of connections any single worker holds.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from keepalive_spread import spread
from run_bench import Target


def main() -> None:
    env = dict(os.environ)
    env["GROUPWATCH_STATE_DIR"] = tempfile.mkdtemp(prefix="gw-spread-")
    env.setdefault("GROUPWATCH_SDKAPPIDS", "1400000001")
    env.setdefault("GROUPWATCH_UNSIGNED_SDKAPPIDS", env["GROUPWATCH_SDKAPPIDS"])
    print("server    workers  gap_ms  max share of 16 connections on one worker (3 trials)")
    for server in ("granian", "gunicorn"):
        for workers in (2, 4):
            target = Target("bare", env, workers, 32, server)
            try:
                for gap in (0.0, 0.05, 0.5):
                    shares = [max(spread(target.url, 16, gap).values()) / 16 for _ in range(3)]
                    print(
                        f"{server:9s} {workers:7d} {gap * 1000:7.0f}  "
                        f"{', '.join(f'{x:.0%}' for x in shares)}"
                        f"  (median {statistics.median(shares):.0%}, even = {1 / workers:.0%})"
                    )
            finally:
                target.stop()


if __name__ == "__main__":
    main()
