"""Stream benchmark: one Faust worker vs a raw confluent-kafka consumer, same input, same run.

Preloads N events (exceptions and sends) under a fresh topic prefix, then measures
  * raw: a confluent-kafka consumer decoding each record and doing the same dict
    aggregation (per app x group x code x window: count and senders; sends per group);
  * worker: ``groupwatch stream`` from process start until its lag is 0 on every input
    partition (events / second), with a py-spy profile of the worker while it runs.

Usage: KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:19092 .venv/bin/python bench/stream/bench_stream.py \
          [--events 500000] [--partitions 3] [--profile-seconds 30]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import requests
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "stream"))

from streamkit import T0, Worker, exc, metric, produce, send  # noqa: E402

from groupwatch.admin.topics import create_topics  # noqa: E402
from groupwatch.contracts import Settings, Topics  # noqa: E402
from groupwatch.contracts.records import ExceptionEvent, SendEvent, decode  # noqa: E402

CODES = [10002, 10004, 10006, 10007, 10016, 10017, 10023, 80001]


def generate(n: int, seed: int = 1) -> tuple[list, list]:
    rng = random.Random(seed)
    span = 60 * 60_000
    e, s = [], []
    for i in range(n):
        t = T0 + i * span // n + rng.randint(-10_000, 2_000)
        group = f"g{int(rng.paretovariate(1.2)) % 500:03d}"
        if rng.random() < 0.3:
            s.append(send(group, t, sender=f"u{rng.randint(0, 99)}", random=rng.getrandbits(31)))
        else:
            code = CODES[min(int(rng.expovariate(0.6)), len(CODES) - 1)]
            e.append(
                exc(group, code, t, sender=f"u{rng.randint(0, 99)}", random=rng.getrandbits(31))
            )
    return e, s


def raw_consume(settings: Settings, topics: Topics, total: int) -> tuple[float, int]:
    """Seconds to read and aggregate every input record with a plain consumer."""
    start = time.perf_counter()
    consumer = Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": f"bench-raw-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.assign(
        [
            TopicPartition(t, p, OFFSET_BEGINNING)
            for t in (topics.exceptions, topics.sends)
            for p in range(settings.partitions)
        ]
    )
    failures: Counter = Counter()
    senders: defaultdict = defaultdict(set)
    sends: Counter = Counter()
    size = settings.window_seconds * 1000
    n = 0
    while n < total:
        for msg in consumer.consume(5000, 1.0):
            if msg.error():
                continue
            n += 1
            if msg.topic() == topics.exceptions:
                ev = decode(msg.value(), ExceptionEvent)
                key = (ev.sdkappid, ev.group_id, ev.error_code, ev.event_time_ms // size)
                failures[key] += 1
                senders[key].add(ev.from_account)
            else:
                sv = decode(msg.value(), SendEvent)
                sends[(sv.sdkappid, sv.group_id, sv.event_time_ms // size)] += 1
    consumer.close()
    return time.perf_counter() - start, len(failures)


def lag(worker: Worker) -> float | None:
    try:
        text = worker.metrics()
    except requests.RequestException:
        return None
    lines = [x for x in text.splitlines() if x.startswith("groupwatch_stream_lag{")]
    if len(lines) < 2 * worker.settings.partitions:
        return None
    return sum(float(x.rsplit(" ", 1)[1]) for x in lines)


def profile_summary(raw: Path, top: int = 15) -> dict[str, list[tuple[float, str]]]:
    """Share of samples per function from a py-spy raw profile: self and inclusive.

    Inclusive shares leave out the frames on (almost) every stack: the event loop, the
    CLI and the Faust worker entry points.
    """
    inclusive: Counter = Counter()
    leaf: Counter = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        samples = int(n)
        total += samples
        labels = []
        for frame in stack.split(";"):
            name = frame.split(" (")[0]
            where = frame.rsplit("/", 1)[-1].split(":")[0] if "(" in frame else ""
            labels.append(f"{name} ({where})")
        for label in set(labels):
            inclusive[label] += samples
        if labels:
            leaf[labels[-1]] += samples
    if not total:
        return {"self": [], "inclusive": []}

    def share(c: int) -> float:
        return round(100 * c / total, 1)

    inner = [(share(c), k) for k, c in inclusive.most_common() if c < 0.85 * total]
    return {
        "self": [(share(c), k) for k, c in leaf.most_common(top)],
        "inclusive": inner[: 2 * top],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=500_000)
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--profile-seconds", type=int, default=30)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "stream" / "results.json")
    args = ap.parse_args()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092")
    tmp = Path(tempfile.mkdtemp(prefix="gw-bench-stream-"))
    prefix = f"gwbench-{uuid.uuid4().hex[:8]}"
    settings = Settings(
        kafka_bootstrap_servers=bootstrap,
        topic_prefix=prefix,
        partitions=args.partitions,
        state_dir=tmp / "state",
        stream_app_id=f"gw-{prefix}",
    )
    create_topics(settings)
    topics = Topics.from_settings(settings)
    e, s = generate(args.events)
    t = time.perf_counter()
    produce(settings, topics.exceptions, e)
    produce(settings, topics.sends, s)
    print(f"preloaded {len(e)} exceptions + {len(s)} sends in {time.perf_counter() - t:.1f} s")
    total = len(e) + len(s)

    raw_s, keys = raw_consume(settings, topics, total)
    print(f"raw consumer: {raw_s:.1f} s, {total / raw_s:.0f} events/s ({keys} window keys)")

    worker = Worker(settings, tmp, "bench")
    start = time.perf_counter()
    worker.start()
    worker.wait_healthy(timeout=180)
    first = None
    prof_raw = tmp / "profile.txt"
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    prof = None
    while True:
        current = lag(worker)
        if first is None and current is not None and current < total:
            first = time.perf_counter()
            assert worker.proc is not None
            prof = subprocess.Popen(
                [
                    spy,
                    "record",
                    "-p",
                    str(worker.proc.pid),
                    "-d",
                    str(args.profile_seconds),
                    "-r",
                    "50",
                    "-f",
                    "raw",
                    "-o",
                    str(prof_raw),
                    "-n",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        if current == 0:
            break
        time.sleep(0.5)
    done = time.perf_counter()
    counted = metric(worker.metrics(), "groupwatch_stream_events_total")
    if prof is not None:
        prof.wait()
    worker.stop()
    worker_s = done - start
    proc_s = done - (first or start)
    result = {
        "events": total,
        "partitions": args.partitions,
        "raw_seconds": round(raw_s, 2),
        "raw_events_per_s": round(total / raw_s),
        "worker_seconds_from_start": round(worker_s, 2),
        "worker_events_per_s_from_start": round(total / worker_s),
        "worker_seconds_processing": round(proc_s, 2),
        "worker_events_per_s_processing": round(total / proc_s),
        "ratio_from_start": round((total / worker_s) / (total / raw_s), 3),
        "ratio_processing": round((total / proc_s) / (total / raw_s), 3),
        "worker_events_counted_metric": counted,
        "profile_top_inclusive": profile_summary(prof_raw) if prof_raw.exists() else [],
        "loadavg": os.getloadavg(),
    }
    print(json.dumps(result, indent=2))
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
