"""Ingress benchmark: bare Flask vs the real ingress vs the spool path, same server settings.

    KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:19092 .venv/bin/python bench/ingest/run_bench.py

Targets are measured interleaved (a, b, a, b, ...) with wrk over keep-alive connections;
medians of the rounds are reported. Needs Debian's ``wrk``. Writes a JSON result file.

``--baseline DIR`` adds a target ``before``: the ingress from another copy of the
``ingest`` package (``DIR/ingest``), served and measured in the same run, for
before/after comparisons of a change.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from tests.processes import children, cpu_seconds, wait_http_ok  # noqa: E402

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ingress_env(state: Path, prefix: str) -> dict[str, str]:
    """The environment of a bench's ingress processes (fresh topics, created here)."""
    env = dict(os.environ)
    env.update(
        {
            "GROUPWATCH_TOPIC_PREFIX": f"{prefix}-{uuid.uuid4().hex[:8]}",
            "GROUPWATCH_STATE_DIR": str(state),
            "GROUPWATCH_SDKAPPIDS": "1400000001",
            "GROUPWATCH_UNSIGNED_SDKAPPIDS": "1400000001",  # post.lua does not sign
            "GROUPWATCH_PARTITIONS": "3",
        }
    )
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    subprocess.run(
        [sys.executable, "-c", "from groupwatch.cli import main; main()", "topics", "create"],
        env=env,
        check=True,
        capture_output=True,
    )
    return env


class Target:
    def __init__(
        self,
        mode: str,
        env: dict[str, str],
        workers: int,
        threads: int,
        server: str = "gunicorn",
        baseline: Path | None = None,
    ) -> None:
        self.mode = mode
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cwd: Path | None = None
        if mode == "before":  # the older ``ingest`` package shadows the installed one
            assert baseline is not None
            env = dict(env, PYTHONPATH=str(baseline))
            self.cwd = baseline
        if server == "granian":
            env = dict(env)
            if mode == "spool":
                env["KAFKA_BOOTSTRAP_SERVERS"] = f"127.0.0.1:{free_port()}"
            env["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="gw-bench-metrics-")
            cmd = [
                str(Path(sys.executable).with_name("granian")),
                "--interface",
                "wsgi",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                str(workers),
                "--blocking-threads",
                str(threads),
                "--working-dir",
                str(HERE),
                "bare_app:app" if mode == "bare" else "ingest.wsgi:app",
            ]
        else:
            cmd = self._gunicorn(mode, workers, threads)
        self._start(cmd, env)

    def _gunicorn(self, mode: str, workers: int, threads: int) -> list[str]:
        return [
            sys.executable,
            str(HERE / "serve.py"),
            "ingress" if mode == "before" else mode,
            "--port",
            str(self.port),
            "--workers",
            str(workers),
            "--threads",
            str(threads),
            "--dead-port",
            str(free_port()),
        ]

    def _start(self, cmd: list[str], env: dict[str, str]) -> None:
        mode = self.mode
        self.log = open(Path(env["GROUPWATCH_STATE_DIR"]) / f"{mode}.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            cmd,
            env=env,
            cwd=self.cwd,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_http_ok(f"{self.url}/healthz", 60, lambda: f"({mode} did not start)")
        time.sleep(1.0)
        self.workers = children(self.proc.pid) or [self.proc.pid]

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()


def parse_wrk(text: str) -> dict[str, float]:
    def latency(pct: str) -> float:
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        return float(m.group(1)) * UNITS[m.group(2)] if m else float("nan")

    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    errors = re.search(r"Socket errors:.*", text)
    return {
        "rps": float(rps.group(1)) if rps else float("nan"),
        "p50_ms": latency("50"),
        "p99_ms": latency("99"),
        "non_2xx": float(non2xx.group(1)) if non2xx else 0.0,
        "socket_errors": 1.0 if errors else 0.0,
    }


def broker_pid(bootstrap: str) -> int | None:
    """The local process listening on the bootstrap port (to account the broker's CPU)."""
    port = bootstrap.split(",")[0].rsplit(":", 1)[1]
    out = subprocess.run(
        ["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True, check=False
    ).stdout
    m = re.search(r"pid=(\d+)", out)
    return int(m.group(1)) if m else None


def machine_busy() -> float:
    """Busy CPU seconds of the whole machine so far (all processes, /proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


BROKER: int | None = None


def wrk(
    target: Target, seconds: int, connections: int, threads: int, pause_ms: int = 0
) -> dict[str, float]:
    before = {pid: cpu_seconds(pid) for pid in target.workers}
    broker_before = cpu_seconds(BROKER) if BROKER else 0.0
    busy_before = machine_busy()
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(HERE / "post.lua"),
            f"{target.url}/callback",
            "--",
            str(pause_ms),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result = parse_wrk(out)
    shares = []
    for pid in target.workers:
        try:
            shares.append(cpu_seconds(pid) - before[pid])
        except OSError:
            shares.append(0.0)
    total = sum(shares) or 1.0
    result["worker_cpu_share_max"] = max(shares) / total
    result["worker_cpu_s"] = total
    result["broker_cpu_s"] = cpu_seconds(BROKER) - broker_before if BROKER else float("nan")
    result["machine_busy_cpu_s"] = machine_busy() - busy_before
    result["seconds"] = float(seconds)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--servers", default="granian,gunicorn", help="comma separated")
    parser.add_argument("--quick", action="store_true", help="max load of bare and ingress only")
    parser.add_argument("--out", type=Path, default=Path("bench/ingest/results.json"))
    parser.add_argument(
        "--baseline", type=Path, help="directory holding an older ingest/ package to compare"
    )
    args = parser.parse_args()
    if args.baseline and not (args.baseline / "ingest" / "__init__.py").is_file():
        sys.exit(f"--baseline {args.baseline}: no ingest/ package there")
    if not shutil.which("wrk"):
        sys.exit("wrk not found: apt-get install -y wrk")
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        sys.exit("set KAFKA_BOOTSTRAP_SERVERS to a running broker")
    servers = [x for x in args.servers.split(",") if x]
    modes: tuple[str, ...] = ("bare", "ingress") if args.quick else ("bare", "ingress", "spool")
    if args.baseline:
        modes = (*modes, "before")
    half_modes = tuple(m for m in ("bare", "ingress", "before") if m in modes)

    global BROKER
    BROKER = broker_pid(bootstrap)
    state = Path(tempfile.mkdtemp(prefix="gw-ingest-bench-"))
    env = ingress_env(state, "gwbench")

    def env_for(name: str) -> dict[str, str]:
        e = dict(env)
        e["GROUPWATCH_STATE_DIR"] = str(state / name)
        Path(e["GROUPWATCH_STATE_DIR"]).mkdir(exist_ok=True)
        return e

    runs: dict[str, dict[str, list[dict[str, float]]]] = {
        s: {m: [] for m in modes} for s in servers
    }
    half: dict[str, dict[str, list[dict[str, float]]]] = {
        s: {m: [] for m in half_modes} for s in servers
    }
    targets: dict[tuple[str, str], Target] = {}
    half_target: dict[str, float] = {}
    try:
        for server in servers:
            for mode in modes:
                t = Target(
                    mode,
                    env_for(f"{server}-{mode}"),
                    args.workers,
                    args.threads,
                    server,
                    args.baseline.resolve() if args.baseline else None,
                )
                targets[(server, mode)] = t
                wrk(t, 3, args.connections, args.wrk_threads)  # warm-up
        for r in range(args.rounds):  # interleaved: every target in every round
            for server in servers:
                for mode in modes:
                    result = wrk(
                        targets[(server, mode)], args.seconds, args.connections, args.wrk_threads
                    )
                    runs[server][mode].append(result)
                    print(f"round {r + 1} {server} {mode}: {short(result)}", flush=True)
        if not args.quick:
            # Half of each server's ingress max load, for bare and ingress alike. wrk has
            # no fixed rate: each connection pauses between requests, calibrated once per
            # target so that connections * 1000 / (pause + latency) ~= the target rate.
            pauses: dict[tuple[str, str], int] = {}
            for server in servers:
                rate = statistics.median(x["rps"] for x in runs[server]["ingress"]) / 2
                half_target[server] = rate
                cycle = args.connections * 1000 / rate
                for mode in half_modes:
                    t = targets[(server, mode)]
                    probe = wrk(t, 5, args.connections, args.wrk_threads, round(cycle))
                    latency = max(0.0, args.connections * 1000 / probe["rps"] - round(cycle))
                    pauses[(server, mode)] = max(1, round(cycle - latency))
            for r in range(args.rounds):
                for server in servers:
                    for mode in half_modes:
                        pause = pauses[(server, mode)]
                        result = wrk(
                            targets[(server, mode)],
                            args.seconds,
                            args.connections,
                            args.wrk_threads,
                            pause,
                        )
                        half[server][mode].append(result)
                        print(
                            f"half-load round {r + 1} {server} {mode} (pause {pause} ms): "
                            f"{short(result)}",
                            flush=True,
                        )
    finally:
        for t in targets.values():
            t.stop()
        shutil.rmtree(state, ignore_errors=True)

    summary = summarize(runs, half, half_target)
    summary["config"] = vars(args) | {"out": str(args.out), "cpus": os.cpu_count()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2, default=str))
    print(json.dumps({k: v for k, v in summary.items() if k != "rounds"}, indent=2, default=str))


def short(row: dict[str, float]) -> str:
    return (
        f"{row['rps']:.0f} req/s p50 {row['p50_ms']:.2f} ms p99 {row['p99_ms']:.2f} ms "
        f"non-2xx {row['non_2xx']:.0f} busiest worker {row['worker_cpu_share_max']:.0%} of CPU"
    )


def summarize(
    runs: dict[str, dict[str, list[dict[str, float]]]],
    half: dict[str, dict[str, list[dict[str, float]]]],
    half_target: dict[str, float],
) -> dict[str, Any]:
    def med(values: list[float]) -> float:
        return statistics.median(values) if values else float("nan")

    def per_req(row: dict[str, float], key: str) -> float:
        return row[key] / (row["rps"] * row["seconds"]) * 1e6

    out: dict[str, Any] = {"max_load": {}, "half_load": {}, "ratios": {}, "errors": {}}
    for server, by_mode in runs.items():
        out["max_load"][server] = {
            mode: {
                "rps": med([r["rps"] for r in rows]),
                "p50_ms": med([r["p50_ms"] for r in rows]),
                "p99_ms": med([r["p99_ms"] for r in rows]),
                "busiest_worker_cpu_share": med([r["worker_cpu_share_max"] for r in rows]),
                "worker_cpu_us_per_req": med([per_req(r, "worker_cpu_s") for r in rows]),
                "broker_cpu_us_per_req": med([per_req(r, "broker_cpu_s") for r in rows]),
                "machine_busy_cores": med([r["machine_busy_cpu_s"] / r["seconds"] for r in rows]),
            }
            for mode, rows in by_mode.items()
        }
        out["errors"][server] = {
            mode: sum(r["non_2xx"] + r["socket_errors"] for r in rows)
            for mode, rows in by_mode.items()
        }
        m = out["max_load"][server]
        ratios = {"ingress_rps_over_bare": m["ingress"]["rps"] / m["bare"]["rps"]}
        if "spool" in m:
            ratios["spool_rps_over_bare"] = m["spool"]["rps"] / m["bare"]["rps"]
        if "before" in m:
            ratios["before_rps_over_bare"] = m["before"]["rps"] / m["bare"]["rps"]
        if half[server]["ingress"]:
            h = out["half_load"][server] = {
                mode: {
                    "rps": med([r["rps"] for r in rows]),
                    "p50_ms": med([r["p50_ms"] for r in rows]),
                    "p99_ms": med([r["p99_ms"] for r in rows]),
                }
                for mode, rows in half[server].items()
            }
            out.setdefault("half_load_target_rps", {})[server] = half_target[server]
            ratios["half_load_p99_ingress_over_bare"] = h["ingress"]["p99_ms"] / h["bare"]["p99_ms"]
            if "before" in h:
                ratios["half_load_p99_before_over_bare"] = (
                    h["before"]["p99_ms"] / h["bare"]["p99_ms"]
                )
        out["ratios"][server] = ratios
    out["rounds"] = {"max_load": runs, "half_load": half}
    return out


if __name__ == "__main__":
    main()
