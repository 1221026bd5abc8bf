"""``ingest``: req/s and p99 of bare Flask vs the real ingress vs the spool path under the
ingress's own server settings, with wrk over keep-alive connections."""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import click

from bench.harness import (
    REFERENCE,
    Run,
    Subject,
    common_options,
    kafka_option,
    stop_group,
    subjects,
)
from bench.processes import clean_env, granian_argv
from bench.stats import median, ratio
from tests.support.ports import free_port
from tests.support.processes import children, cpu_seconds, wait_http_ok

HERE = Path(__file__).resolve().parent
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}
TARGET = "durable ingress >= 0.7 x bare Flask req/s; p99 at half load <= 3 x bare p99"


class Target:
    """One server (gunicorn via serve.py, or granian) of ``mode`` from ``subject``."""

    def __init__(
        self, subject: Subject, mode: str, server: str, env: dict[str, str], state: Path
    ) -> None:
        self.subject, self.mode, self.server = subject, mode, server
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        state.mkdir(parents=True, exist_ok=True)
        env = dict(env, GROUPWATCH_STATE_DIR=str(state))
        if server == "granian":
            if mode == "spool":  # no broker answers: every event goes to the spool
                env["KAFKA_BOOTSTRAP_SERVERS"] = f"127.0.0.1:{free_port()}"
            env["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="metrics-", dir=state)
            argv = granian_argv(
                self.port, "bare_app:app" if mode == "bare" else "ingest.wsgi:app", HERE
            )
        else:
            argv = [
                sys.executable,
                str(HERE / "serve.py"),
                mode,
                "--port",
                str(self.port),
                "--workers",
                "2",
                "--threads",
                "32",
                "--dead-port",
                str(free_port()),
            ]
        self.log = open(state / f"{server}-{mode}.log", "ab")  # noqa: SIM115
        self.proc = subject.popen(argv, env, self.log)
        wait_http_ok(f"{self.url}/healthz", 60, lambda: f"({subject.name} {server} {mode})")
        time.sleep(1.0)
        self.workers = children(self.proc.pid) or [self.proc.pid]

    def stop(self) -> None:
        stop_group(self.proc)
        self.log.close()


def parse_wrk(text: str) -> dict[str, float]:
    def latency(pct: str) -> float:
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        return float(m.group(1)) * UNITS[m.group(2)] if m else float("nan")

    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    return {
        "rps": float(rps.group(1)) if rps else float("nan"),
        "p50_ms": latency("50"),
        "p99_ms": latency("99"),
        "errors": (float(non2xx.group(1)) if non2xx else 0.0)
        + (1.0 if re.search(r"Socket errors:", text) else 0.0),
    }


def wrk(target: Target, seconds: float, connections: int, pause_ms: int = 0) -> dict[str, float]:
    """One wrk run (2 threads) against ``target``; CPU us per request of its workers."""
    before = {pid: cpu_seconds(pid) for pid in target.workers}
    out = subprocess.run(
        [
            "wrk",
            "-t2",
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
    used = 0.0
    for pid in target.workers:
        with contextlib.suppress(OSError):
            used += cpu_seconds(pid) - before[pid]
    result["cpu_us_per_req"] = used / max(1.0, result["rps"] * seconds) * 1e6
    return result


@click.command("ingest", short_help="Ingress req/s and p99 vs bare Flask (wrk).")
@common_options
@kafka_option
@click.option(
    "--seconds", type=click.IntRange(1), default=10, show_default=True, help="Per wrk run."
)
@click.option("--connections", type=click.IntRange(1), default=32, show_default=True)
@click.option(
    "--servers",
    default="granian,gunicorn",
    show_default=True,
    help="Comma separated: granian, gunicorn.",
)
@click.option(
    "--spool/--no-spool",
    default=True,
    show_default=True,
    help="Also measure the spool path (no broker answers).",
)
@click.option(
    "--half-load/--no-half-load",
    default=True,
    show_default=True,
    help="Also measure p99 at half of the ingress's max load.",
)
def command(
    rounds: int,
    baseline_ref: str | None,
    output: Path | None,
    bootstrap: str,
    seconds: int,
    connections: int,
    servers: str,
    spool: bool,
    half_load: bool,
) -> None:
    """Each server (granian: `ingest.wsgi:app`; gunicorn: the ingress's own
    `IngressServer` settings), 2 workers x 32 threads, serves bare Flask (reference),
    and per subject the ingress and (--spool) the spool path. Rounds interleave every
    target; then (--half-load) each connection is paced to half of the current
    ingress's median max load and p99 is measured again."""
    if not shutil.which("wrk"):
        raise click.ClickException("wrk not found: apt-get install -y wrk")
    names = [s for s in servers.split(",") if s]
    if not names or set(names) - {"granian", "gunicorn"}:
        raise click.ClickException(f"--servers {servers}: granian and/or gunicorn")
    state = Path(tempfile.mkdtemp(prefix="gw-bench-ingest-"))
    env = clean_env()
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=bootstrap,
        GROUPWATCH_TOPIC_PREFIX=f"gwbench-{uuid.uuid4().hex[:8]}",
        GROUPWATCH_SDKAPPIDS="1400000001",
        GROUPWATCH_UNSIGNED_SDKAPPIDS="1400000001",  # post.lua does not sign
        GROUPWATCH_PARTITIONS="3",
        GROUPWATCH_STATE_DIR=str(state),
    )
    targets: dict[tuple[str, str, str], Target] = {}
    try:
        with subjects(baseline_ref) as checkouts:
            run = Run(
                "ingest",
                "Ingress throughput: bare Flask vs the durable ingress vs the spool path, "
                "same server settings, wrk keep-alive",
                TARGET,
                {
                    "seconds": seconds,
                    "connections": connections,
                    "servers": names,
                    "spool": spool,
                    "half_load": half_load,
                    "workers": 2,
                    "threads": 32,
                    "rounds": rounds,
                },
                checkouts,
            )
            checkouts[0].run(checkouts[0].groupwatch("topics", "create"), env)
            modes = ("ingress", "spool") if spool else ("ingress",)
            for server in names:
                targets[(REFERENCE, server, "bare")] = Target(
                    checkouts[0], "bare", server, env, state / f"{server}-bare"
                )
                for s in checkouts:
                    for mode in modes:
                        targets[(s.name, server, mode)] = Target(
                            s, mode, server, env, state / f"{s.name}-{server}-{mode}"
                        )
            for t in targets.values():
                wrk(t, 3, connections)  # warm-up
            max_rps: dict[str, list[float]] = {n: [] for n in names}
            for r in range(rounds):
                values: dict[str, dict[str, float]] = {}
                for server in names:
                    order = [REFERENCE, *(s.name for s in run.order(r))]
                    for who in order:
                        for mode in ("bare",) if who == REFERENCE else modes:
                            got = wrk(targets[(who, server, mode)], seconds, connections)
                            row = values.setdefault(who, {})
                            for k, v in got.items():
                                row[f"{server}_{mode}_{k}"] = v
                            if who == "current" and mode == "ingress":
                                max_rps[server].append(got["rps"])
                for who, row in values.items():
                    run.record(r, who, row)
            if half_load:
                pauses = calibrate(targets, names, max_rps, connections)
                for r in range(rounds):
                    values = {}
                    for server in names:
                        for who in [REFERENCE, *(s.name for s in run.order(r))]:
                            mode = "bare" if who == REFERENCE else "ingress"
                            got = wrk(
                                targets[(who, server, mode)],
                                seconds,
                                connections,
                                pauses[(who, server)],
                            )
                            row = values.setdefault(who, {})
                            row[f"{server}_half_{mode}_rps"] = got["rps"]
                            row[f"{server}_half_{mode}_p99_ms"] = got["p99_ms"]
                    for who, row in values.items():
                        run.record(rounds + r, who, row)
            run.finish(output, lambda m: summarize(m, names), f"{names[0]}_ingress_rps")
    finally:
        for t in targets.values():
            t.stop()
        shutil.rmtree(state, ignore_errors=True)


def calibrate(
    targets: dict[tuple[str, str, str], Target],
    names: list[str],
    max_rps: dict[str, list[float]],
    connections: int,
) -> dict[tuple[str, str], int]:
    """Per-connection pause (ms) so that each target runs at half of the current ingress's
    median max load: wrk has no fixed rate, so ``connections * 1000 / (pause + latency)``
    is calibrated once per target."""
    pauses = {}
    for server in names:
        rate = (median(max_rps[server]) or 1.0) / 2
        cycle = connections * 1000 / rate
        for (who, srv, mode), t in targets.items():
            if srv != server or mode not in ("bare", "ingress"):
                continue
            probe = wrk(t, 5, connections, round(cycle))
            latency = max(0.0, connections * 1000 / probe["rps"] - round(cycle))
            pauses[(who, server)] = max(1, round(cycle - latency))
    return pauses


def summarize(
    medians: dict[str, dict[str, float | None]], names: list[str]
) -> tuple[dict[str, Any], str]:
    ref, cur = medians[REFERENCE], medians["current"]
    summary: dict[str, Any] = {}
    parts = []
    for server in names:
        over = ratio(cur[f"{server}_ingress_rps"], ref[f"{server}_bare_rps"])
        summary[f"{server}_ingress_over_bare_rps"] = over
        part = (
            f"{server}: {over} x bare ({cur[f'{server}_ingress_rps']:,.0f} vs "
            f"{ref[f'{server}_bare_rps']:,.0f} req/s)"
        )
        if f"{server}_spool_rps" in cur:
            spool = ratio(cur[f"{server}_spool_rps"], ref[f"{server}_bare_rps"])
            summary[f"{server}_spool_over_bare_rps"] = spool
            part += f", spool {spool} x"
        if f"{server}_half_ingress_p99_ms" in cur:
            p99 = ratio(cur[f"{server}_half_ingress_p99_ms"], ref[f"{server}_half_bare_p99_ms"])
            summary[f"{server}_half_load_p99_over_bare"] = p99
            part += f", half-load p99 {p99} x"
        if "baseline" in medians:
            base = ratio(medians["baseline"][f"{server}_ingress_rps"], ref[f"{server}_bare_rps"])
            summary[f"{server}_baseline_ingress_over_bare_rps"] = base
            part += f" (baseline {base} x)"
        parts.append(part)
    return summary, "; ".join(parts)
