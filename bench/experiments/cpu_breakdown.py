"""CPU per request of one running server process, by thread group, while wrk drives it.

    .venv/bin/python -m bench.experiments.cpu_breakdown --pid WORKER_PID --port PORT [--seconds 8]

Reads each thread's exact on-CPU time (``/proc/<pid>/task/*/schedstat``, nanoseconds,
not the tick-sampled utime/stime) and its context switches before and after a wrk run
with ``post.lua``, and prints them per request, grouped by thread name (granian's
request threads are ``tokio-rt-worker``; librdkafka's ``rdk:*``; Python threads such as
the Kafka poll thread keep the process name).
"""

from __future__ import annotations

import argparse
import re
import subprocess
from collections import defaultdict
from pathlib import Path

POST_LUA = Path(__file__).resolve().parents[1] / "ingest" / "post.lua"
Sample = dict[str, tuple[str, int, int, int]]


def snapshot(pid: int) -> Sample:
    """tid -> (thread name, on-CPU ns, voluntary switches, involuntary switches)."""
    out: Sample = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
            status = (task / "status").read_text()
            runtime = int((task / "schedstat").read_text().split()[0])
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        vol = re.search(r"^voluntary_ctxt_switches:\s+(\d+)", status, re.M)
        invol = re.search(r"^nonvoluntary_ctxt_switches:\s+(\d+)", status, re.M)
        out[task.name] = (
            name,
            runtime,
            int(vol.group(1)) if vol else 0,
            int(invol.group(1)) if invol else 0,
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pid", type=int, required=True, help="the worker process")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    before = snapshot(args.pid)
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{args.connections}",
            f"-d{args.seconds}s",
            "-s",
            str(POST_LUA),
            f"http://127.0.0.1:{args.port}/callback",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    after = snapshot(args.pid)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not rps:
        raise SystemExit(f"no wrk result:\n{out}")
    requests = float(rps.group(1)) * args.seconds
    groups: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for tid, (name, runtime, vol, invol) in after.items():
        _, runtime0, vol0, invol0 = before.get(tid, (name, 0, 0, 0))
        group = groups[re.sub(r"\d+", "#", name)]
        group[0] += 1
        group[1] += runtime - runtime0
        group[2] += vol - vol0
        group[3] += invol - invol0
    print(f"{float(rps.group(1)):.0f} req/s")
    total = 0
    for name, (count, runtime, vol, invol) in sorted(groups.items(), key=lambda g: -g[1][1]):
        total += runtime
        print(
            f"{name:18s} threads {count:3d}  cpu {runtime / 1e3 / requests:6.1f} us/req  "
            f"switches/req voluntary {vol / requests:5.2f} involuntary {invol / requests:5.2f}"
        )
    print(f"total cpu {total / 1e3 / requests:.0f} us/req")


if __name__ == "__main__":
    main()
