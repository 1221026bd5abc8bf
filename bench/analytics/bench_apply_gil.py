"""What a busy Python thread costs the sink's apply path (the GIL), with no Kafka involved.

    PYTHONPATH=/tmp/gwbefore .venv/bin/python bench/analytics/bench_apply_gil.py \
        --rows 100000 --repeat 3 --apply-module analytics_before.apply \
        --apply-module analytics.apply

Applies N prepared rows in 5,000-row batches (``apply_batch``, one transaction each, into
a fresh database) while another thread is (a) idle, (b) busy in C without the GIL
(sha256 of 64 MB: CPU contention only) or (c) decoding and building batches in Python
as the sink's fetch thread does, at Python's default switch interval (5 ms) and at the
sink's (0.2 ms). Prints the apply wall time and the apply thread's own CPU per row.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import importlib
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench_sink import make_events

from analytics.db import open_writer
from analytics.migrations import migrate
from groupwatch.contracts import Settings, Topics
from groupwatch.contracts.records import encode

BATCH = 5000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--apply-module", action="append", help="default analytics.apply")
    args = ap.parse_args()
    topics = Topics.from_settings(Settings(topic_prefix="gil"))
    values = [encode(e) for e in make_events(args.rows)]
    raw = [(topics.exceptions, i % 6, i // 6, v) for i, v in enumerate(values)]
    big = b"x" * (64 << 20)
    gc.freeze()
    gc.disable()

    def run(module: str, other: str, interval: float) -> tuple[float, float]:
        apply_mod = importlib.import_module(module)
        batch_mod = importlib.import_module(module.rsplit(".", 1)[0] + ".batch")
        prepared = [
            batch_mod.prepare(
                batch_mod.collate([batch_mod.RawMessage(*m) for m in raw[i : i + BATCH]], topics)
            )
            for i in range(0, len(raw), BATCH)
        ]
        sample = [batch_mod.RawMessage(*m) for m in raw[:BATCH]]
        stop = threading.Event()

        def busy() -> None:
            while not stop.is_set():
                if other == "no-GIL":
                    hashlib.sha256(big).digest()
                else:
                    batch_mod.prepare(batch_mod.collate(sample, topics))

        thread = threading.Thread(target=busy)
        sys.setswitchinterval(interval)
        try:
            with tempfile.TemporaryDirectory(prefix="gw-gil-") as d:
                con = open_writer(Path(d) / "a.duckdb", Path(d) / "s.duckdb")
                migrate(con)
                if other != "idle":
                    thread.start()
                started, cpu_started = time.perf_counter(), time.thread_time()
                for p in prepared:
                    apply_mod.apply_batch(con, p)
                wall = time.perf_counter() - started
                cpu = time.thread_time() - cpu_started
                stop.set()
                if other != "idle":
                    thread.join()
                con.close()
        finally:
            sys.setswitchinterval(0.005)
        return wall * 1e6 / args.rows, cpu * 1e6 / args.rows

    variants = [
        (m, other, interval)
        for m in args.apply_module or ["analytics.apply"]
        for other, interval in (
            ("idle", 0.005),
            ("no-GIL", 0.005),
            ("Python", 0.005),
            ("Python", 0.0002),
        )
    ]
    results: dict[tuple[str, str, float], list[tuple[float, float]]] = {v: [] for v in variants}
    for _ in range(args.repeat):
        for v in variants:
            results[v].append(run(*v))
    print(f"medians of {args.repeat}, rows={args.rows}, load={os.getloadavg()[0]:.1f}")
    print(
        "| apply module | other thread | switch interval | apply wall us/row | thread CPU us/row |"
    )
    print("|---|---|---|---|---|")
    for (module, other, interval), rs in results.items():
        wall = statistics.median(r[0] for r in rs)
        cpu = statistics.median(r[1] for r in rs)
        print(f"| {module} | {other} | {interval * 1000:g} ms | {wall:.2f} | {cpu:.2f} |")


if __name__ == "__main__":
    main()
