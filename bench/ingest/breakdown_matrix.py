"""Per-thread CPU per request of several server targets, measured interleaved.

    KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:19092 .venv/bin/python bench/ingest/breakdown_matrix.py \
        SPEC.json [--rounds 3] [--seconds 6] [--connections 32]

SPEC.json is a list of targets, each started once (granian unless ``"server":
"gunicorn"``) and driven by wrk with ``post.lua`` in every round, one after another:

    [{"name": "bare", "app": "bare_app:app", "workers": 2, "threads": 32},
     {"name": "ingress", "workers": 2, "threads": 32},
     {"name": "variant", "pythonpath": "/tmp/copy", "workers": 2, "threads": 32,
      "args": ["--runtime-threads", "2"], "env": {"BENCH_VARIANT": "stub"},
      "app": "variant_wsgi:app"}]

``pythonpath`` puts another copy of the ``ingest`` package (``DIR/ingest``) first.
Per target and round: req/s, p50/p99, exact on-CPU time per request of every thread
group of the worker processes (``/proc/<pid>/task/*/schedstat``), voluntary switches per
request, the broker's CPU per request and the whole machine's busy CPU per request.
Prints medians and writes SPEC.json.out.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cpu_breakdown import Sample, snapshot
from run_bench import (
    HERE,
    UNITS,
    broker_pid,
    children,
    cpu_seconds,
    free_port,
    ingress_env,
    machine_busy,
    wait_http_ok,
)

MAIN = ("rps", "p50", "p99", "total_us", "vol_sw", "broker_us", "machine_us")


def start(target: dict[str, Any], base: dict[str, str], state: Path) -> tuple[Any, int, list[int]]:
    port = free_port()
    env = dict(base, **target.get("env", {}))
    env["GROUPWATCH_STATE_DIR"] = str(state / target["name"])
    Path(env["GROUPWATCH_STATE_DIR"]).mkdir()
    env["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="gw-matrix-metrics-")
    cwd = None
    if target.get("pythonpath"):
        env["PYTHONPATH"] = f"{target['pythonpath']}:{HERE}"
        cwd = target["pythonpath"]
    workers, threads = str(target.get("workers", 1)), str(target.get("threads", 32))
    if target.get("server", "granian") == "granian":
        cmd = [
            str(Path(sys.executable).with_name("granian")),
            *("--interface", "wsgi", "--host", "127.0.0.1", "--port", str(port)),
            *("--workers", workers, "--blocking-threads", threads, "--working-dir", str(HERE)),
            *target.get("args", []),
            target.get("app", "ingest.wsgi:app"),
        ]
    else:
        cmd = [
            sys.executable,
            str(HERE / "serve.py"),
            target.get("mode", "ingress"),
            *("--port", str(port), "--workers", workers, "--threads", threads),
            *("--dead-port", str(free_port())),
        ]
    log = open(state / f"{target['name']}.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen(
        cmd, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    wait_http_ok(
        f"http://127.0.0.1:{port}/healthz",
        60,
        lambda: f"({target['name']} did not start, log in {state})",
    )
    time.sleep(1)
    return proc, port, children(proc.pid) or [proc.pid]


def measure(
    port: int, pids: list[int], seconds: int, connections: int, broker: int | None
) -> dict[str, float]:
    before: dict[int, Sample] = {pid: snapshot(pid) for pid in pids}
    broker0 = cpu_seconds(broker) if broker else 0.0
    busy0 = machine_busy()
    out = subprocess.run(
        [
            *("wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency"),
            *("-s", str(HERE / "post.lua"), f"http://127.0.0.1:{port}/callback"),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    after = {pid: snapshot(pid) for pid in pids}
    rps_match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not rps_match:
        raise SystemExit(f"no wrk result:\n{out}")
    rps = float(rps_match.group(1))
    requests_done = rps * seconds

    def latency(pct: str) -> float:
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        return float(m.group(1)) * UNITS[m.group(2)] if m else float("nan")

    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    groups: dict[str, list[int]] = {}
    for pid in pids:
        for tid, (name, runtime, vol, _invol) in after[pid].items():
            _, runtime0, vol0, _ = before[pid].get(tid, (name, 0, 0, 0))
            group = groups.setdefault(re.sub(r"\d+", "#", name), [0, 0])
            group[0] += runtime - runtime0
            group[1] += vol - vol0
    row = {
        "rps": rps,
        "p50": latency("50"),
        "p99": latency("99"),
        "non_2xx": float(non2xx.group(1)) if non2xx else 0.0,
        "total_us": sum(g[0] for g in groups.values()) / 1e3 / requests_done,
        "vol_sw": sum(g[1] for g in groups.values()) / requests_done,
        "broker_us": (cpu_seconds(broker) - broker0) * 1e6 / requests_done if broker else 0.0,
        "machine_us": (machine_busy() - busy0) * 1e6 / requests_done,
    }
    for name, (runtime, vol) in groups.items():
        row[f"{name}_us"] = runtime / 1e3 / requests_done
        row[f"{name}_vsw"] = vol / requests_done
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("spec", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    spec = json.loads(args.spec.read_text())
    if not isinstance(spec, list) or not all(isinstance(t, dict) and "name" in t for t in spec):
        sys.exit(f"{args.spec}: expected a list of targets, each with a name")
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        sys.exit("set KAFKA_BOOTSTRAP_SERVERS to a running broker")
    state = Path(tempfile.mkdtemp(prefix="gw-matrix-"))
    base = ingress_env(state, "gwmatrix")
    broker = broker_pid(bootstrap)
    procs = {}
    results: dict[str, list[dict[str, float]]] = {t["name"]: [] for t in spec}
    try:
        for target in spec:
            procs[target["name"]] = start(target, base, state)
        for _, port, pids in procs.values():  # warm-up
            measure(port, pids, 2, args.connections, broker)
        for r in range(args.rounds):
            for name, (_, port, pids) in procs.items():
                row = measure(port, pids, args.seconds, args.connections, broker)
                results[name].append(row)
                print(
                    f"round {r + 1} {name:16s} "
                    + " ".join(f"{k} {row[k]:.1f}" for k in MAIN)
                    + f" non-2xx {row['non_2xx']:.0f}",
                    flush=True,
                )
    finally:
        for proc, _, _ in procs.values():
            os.killpg(proc.pid, signal.SIGTERM)
        for proc, _, _ in procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
    print(f"load average after the run: {os.getloadavg()}")
    for name, rows in results.items():
        keys = sorted({k for row in rows for k in row})
        med = {k: statistics.median(row.get(k, 0.0) for row in rows) for k in keys}
        print(f"{name:16s} " + " ".join(f"{k}={med[k]:.1f}" for k in MAIN))
        print(" " * 17 + " ".join(f"{k}={med[k]:.1f}" for k in keys if k not in MAIN))
    Path(f"{args.spec}.out.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
