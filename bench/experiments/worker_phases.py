"""Experiment: one ``groupwatch stream`` worker catching up on the ``peer`` bench's input,
its CPU split into start-up (process start to the first record applied) and processing
(first record to lag 0), optionally with ``py-spy`` recording the processing phase.

``python -m bench.experiments.worker_phases --bootstrap HOST:PORT [--events 720000]
[--profile FILE]``

Prints CPU seconds and µs per event of each phase (utime + stime of the worker, all its
threads) and the wall time of the processing phase; with ``--profile`` a collapsed-stack
file (``py-spy record -f raw``, all threads) of the processing phase, to attribute the
processing CPU by layer.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from bench import events as inputs
from bench.harness import ROOT, Subject, git
from bench.stream.peer import sentinels
from bench.stream.worker import StreamWorker
from groupwatch.admin.topics import create_topics
from groupwatch.contracts import Topics, load_settings
from tests.support.processes import cpu_seconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--events", type=int, default=720_000)
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--profile", type=Path, help="py-spy raw output of the processing phase")
    args = ap.parse_args()
    prefix = f"gwphase-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="gw-phases-") as tmp:
        settings = load_settings(
            kafka_bootstrap_servers=args.bootstrap,
            topic_prefix=prefix,
            partitions=args.partitions,
            state_dir=Path(tmp) / "state",
            stream_app_id=f"gw-{prefix}",
            idle_close_seconds=0,
        )
        create_topics(settings)
        topics = Topics.from_settings(settings)
        exceptions, sends = inputs.mixed_hour(args.events)
        last = max(max(e.event_time_ms for e in exceptions), max(s.event_time_ms for s in sends))
        inputs.produce(args.bootstrap, topics.exceptions, exceptions)
        inputs.produce(args.bootstrap, topics.sends, sends)
        window_ms = settings.window_seconds * 1000
        sentinels(settings, topics, last + 2 * window_ms + settings.grace_seconds * 1000)
        total = len(exceptions) + len(sends) + 2 * args.partitions
        del exceptions, sends
        subject = Subject("current", ROOT, "HEAD (working tree)", git("rev-parse", "HEAD"))
        worker = StreamWorker(subject, settings, Path(tmp) / "worker").start()
        assert worker.proc is not None
        pid = worker.proc.pid
        started = time.time()
        spy: subprocess.Popen[bytes] | None = None
        try:
            first_cpu = first_at = None
            while True:
                lag = worker.lag(min_series=2 * args.partitions)
                if lag is not None and lag < total and first_cpu is None:
                    first_cpu, first_at = cpu_seconds(pid), time.time()
                    if args.profile:
                        spy_args = ["-r", "200", "-f", "raw", "-o", str(args.profile)]
                        spy = subprocess.Popen(
                            [str(ROOT / ".venv/bin/py-spy"), "record", *spy_args, "-p", str(pid)],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                        )
                if lag == 0 and first_cpu is not None and first_at is not None:
                    done_cpu, done_at = cpu_seconds(pid), time.time()
                    break
                if time.time() - started > 600:
                    raise SystemExit("the worker did not catch up in 600 s")
                time.sleep(0.05)
        finally:
            if spy is not None:
                spy.send_signal(2)  # SIGINT: py-spy writes what it sampled
                spy.wait(30)
            worker.stop()
        wall = done_at - first_at
        print(
            f"start-up: {first_cpu:.2f} s CPU ({first_cpu / total * 1e6:.1f} us/event), "
            f"{first_at - started:.1f} s wall\n"
            f"processing: {done_cpu - first_cpu:.2f} s CPU "
            f"({(done_cpu - first_cpu) / total * 1e6:.1f} us/event), {wall:.1f} s wall "
            f"({total / wall:,.0f} events/s, {(done_cpu - first_cpu) / wall:.2f} cores)"
        )


if __name__ == "__main__":
    main()
