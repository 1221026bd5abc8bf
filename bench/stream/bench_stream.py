"""Stream benchmark: one Faust worker vs a raw confluent-kafka consumer, same input, same run.

Preloads N events (exceptions and sends) under a fresh topic prefix, then measures
  * raw: a confluent-kafka consumer decoding each record and doing the same dict
    aggregation (per app x group x code x window: count and senders; sends per group);
  * ceiling: a Faust app with the worker's settings whose agent only counts records
    (``take_events``; ``faust_ceiling.py``): the Faust per-record path's own ceiling;
  * worker: ``groupwatch stream`` from process start until its lag is 0 on every input
    partition (events / second), with a py-spy profile of the worker while it runs.

With ``--rounds N`` the three run N times alternately on the same topics (fresh consumer
groups each time); the result holds every round and the medians.

Usage: KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:19092 .venv/bin/python bench/stream/bench_stream.py \
          [--events 500000] [--partitions 3] [--profile-seconds 30] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "stream"))
sys.path.insert(0, str(ROOT))

from streamkit import T0, Worker, exc, free_port, metric, produce, send  # noqa: E402

from groupwatch.admin.topics import create_topics  # noqa: E402
from groupwatch.contracts import Settings, Topics  # noqa: E402
from groupwatch.contracts.records import ExceptionEvent, SendEvent, decode  # noqa: E402
from tests.processes import cpu_seconds  # noqa: E402

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
    cpu0 = time.process_time()
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
    raw_cpu["s"] = time.process_time() - cpu0  # this process, librdkafka's threads included
    return time.perf_counter() - start, len(failures)


raw_cpu: dict[str, float] = {}


def faust_ceiling(
    settings: Settings, topics: Topics, total: int, tmp: Path, mode: str = "stream"
) -> dict:
    """Seconds (from process start, and from the first record) of a count-only Faust app."""
    script = Path(__file__).with_name("faust_ceiling.py")
    datadir = Path(tempfile.mkdtemp(prefix="ceiling-", dir=tmp))
    start = time.time()
    out = subprocess.run(
        [
            sys.executable,
            str(script),
            "--bootstrap",
            settings.bootstrap_servers,
            "--exceptions",
            topics.exceptions,
            "--sends",
            topics.sends,
            "--partitions",
            str(settings.partitions),
            "--total",
            str(total),
            "--datadir",
            str(datadir),
            "--web-port",
            str(free_port()),
            "--mode",
            mode,
        ],
        capture_output=True,
        text=True,
        timeout=1800,
        cwd=ROOT,
    )
    # Faust's worker redirects stdout into its log (stderr)
    lines = [x for x in (out.stdout + out.stderr).splitlines() if '{"first"' in x]
    if not lines:
        raise RuntimeError("faust_ceiling.py failed: " + out.stderr[-2000:])
    marks = json.loads(lines[-1][lines[-1].index('{"first"') :])
    return {
        "from_start": marks["done"] - start,
        "processing": marks["done"] - marks["first"],
        "cpu": marks["cpu"],
    }


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


def run_worker(
    settings: Settings, tmp: Path, r: int, total: int, prof_raw: Path | None, seconds: int
) -> tuple[float, float, float, float]:
    """Seconds from start and from the first processed record until lag 0, events counted
    and the worker's CPU seconds (startup included)."""
    worker = Worker(settings, tmp, f"bench{r}")
    start = time.perf_counter()
    worker.start()
    worker.wait_healthy(timeout=180)
    first = None
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    prof = None
    while True:
        current = worker.lag(min_series=2 * worker.settings.partitions)
        if first is None and current is not None and current < total:
            first = time.perf_counter()
            assert worker.proc is not None
            if prof_raw is not None:
                prof = subprocess.Popen(
                    [
                        spy,
                        "record",
                        "-p",
                        str(worker.proc.pid),
                        "-d",
                        str(seconds),
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
        time.sleep(0.2)
    done = time.perf_counter()
    counted = metric(worker.metrics(), "groupwatch_stream_events_total")
    assert worker.proc is not None
    cpu = cpu_seconds(worker.proc.pid)
    if prof is not None:
        prof.wait()
    worker.stop()
    return done - start, done - (first or start), counted, cpu


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=500_000)
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--profile-seconds", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument(
        "--stream-ceiling-rounds",
        type=int,
        default=99,
        help="run the (slow) per-record Faust ceiling only in this many first rounds",
    )
    ap.add_argument(
        "--compare",
        type=Path,
        default=None,
        help="also run, each round, a worker whose `stream` package comes from this dir "
        "(e.g. a copy of the previous code), first on PYTHONPATH",
    )
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
    print(f"topic prefix {prefix}")
    print(f"preloaded {len(e)} exceptions + {len(s)} sends in {time.perf_counter() - t:.1f} s")
    total = len(e) + len(s)

    rounds = []
    prof_raw = tmp / "profile.txt"
    for r in range(args.rounds):
        raw_s, keys = raw_consume(settings, topics, total)
        print(f"[{r}] raw consumer: {raw_s:.1f} s, {total / raw_s:.0f} events/s ({keys} keys)")
        ceil: dict = {}
        if r < args.stream_ceiling_rounds:  # slow: the per-record path
            ceiling = faust_ceiling(settings, topics, total, tmp)
            print(f"[{r}] faust count-only: {ceiling['from_start']:.1f} s from start")
            ceil = {
                "ceiling_events_per_s_from_start": round(total / ceiling["from_start"]),
                "ceiling_events_per_s_processing": round(total / ceiling["processing"]),
                "ceiling_cpu_us_per_event": round(ceiling["cpu"] / total * 1e6, 1),
            }
        bceil = faust_ceiling(settings, topics, total, tmp, "batch")
        print(f"[{r}] faust count-only, batch drain: {bceil['from_start']:.1f} s from start")
        ws = settings.model_copy(update={"stream_app_id": f"gw-{prefix}-r{r}"})
        profile = r == args.rounds - 1 and args.profile_seconds > 0
        worker_s, proc_s, counted, w_cpu = run_worker(
            ws, tmp, r, total, prof_raw if profile else None, args.profile_seconds
        )
        print(f"[{r}] worker: {worker_s:.1f} s from start, {total / worker_s:.0f} events/s")
        extra = {}
        if args.compare is not None:
            cs = settings.model_copy(update={"stream_app_id": f"gw-{prefix}-c{r}"})
            # the worker runs ``python -c``: its cwd comes first on sys.path, so the
            # compare dir must be its cwd (PYTHONPATH alone would lose to this repo)
            os.environ["PYTHONPATH"] = str(args.compare)
            os.chdir(args.compare)
            try:
                c_s, c_proc, c_counted, c_cpu = run_worker(cs, tmp, 100 + r, total, None, 0)
            finally:
                os.chdir(ROOT)
                del os.environ["PYTHONPATH"]
            print(f"[{r}] compare worker: {c_s:.1f} s from start, {total / c_s:.0f} events/s")
            extra = {
                "compare_events_per_s_from_start": round(total / c_s),
                "compare_events_per_s_processing": round(total / c_proc),
                "compare_events_counted_metric": c_counted,
                "compare_cpu_us_per_event": round(c_cpu / total * 1e6, 1),
            }
        rounds.append(
            {
                **extra,
                "raw_events_per_s": round(total / raw_s),
                **ceil,
                "batch_ceiling_events_per_s_from_start": round(total / bceil["from_start"]),
                "batch_ceiling_events_per_s_processing": round(total / bceil["processing"]),
                "worker_events_per_s_from_start": round(total / worker_s),
                "worker_events_per_s_processing": round(total / proc_s),
                "worker_events_counted_metric": counted,
                "raw_cpu_us_per_event": round(raw_cpu["s"] / total * 1e6, 1),
                "batch_ceiling_cpu_us_per_event": round(bceil["cpu"] / total * 1e6, 1),
                "worker_cpu_us_per_event": round(w_cpu / total * 1e6, 1),
                "loadavg": os.getloadavg(),
            }
        )

    def med(name: str) -> float:
        values = [x[name] for x in rounds if name in x]
        return statistics.median(values) if values else None

    raw = med("raw_events_per_s")

    def ratio(name: str) -> float | None:
        value = med(name)
        return None if value is None or not raw else round(value / raw, 3)

    result = {
        "events": total,
        "partitions": args.partitions,
        "rounds": rounds,
        "median_raw_events_per_s": raw,
        "median_ceiling_events_per_s_from_start": med("ceiling_events_per_s_from_start"),
        "median_ceiling_events_per_s_processing": med("ceiling_events_per_s_processing"),
        "median_batch_ceiling_events_per_s_from_start": med(
            "batch_ceiling_events_per_s_from_start"
        ),
        "median_worker_events_per_s_from_start": med("worker_events_per_s_from_start"),
        "median_worker_events_per_s_processing": med("worker_events_per_s_processing"),
        "ratio_ceiling_from_start": ratio("ceiling_events_per_s_from_start"),
        "ratio_batch_ceiling_from_start": ratio("batch_ceiling_events_per_s_from_start"),
        "ratio_from_start": ratio("worker_events_per_s_from_start"),
        "median_raw_cpu_us_per_event": med("raw_cpu_us_per_event"),
        "median_ceiling_cpu_us_per_event": med("ceiling_cpu_us_per_event"),
        "median_batch_ceiling_cpu_us_per_event": med("batch_ceiling_cpu_us_per_event"),
        "median_worker_cpu_us_per_event": med("worker_cpu_us_per_event"),
        "ratio_processing": ratio("worker_events_per_s_processing"),
        **(
            {
                "median_compare_events_per_s_from_start": med("compare_events_per_s_from_start"),
                "ratio_compare_from_start": ratio("compare_events_per_s_from_start"),
                "median_compare_cpu_us_per_event": med("compare_cpu_us_per_event"),
            }
            if args.compare is not None
            else {}
        ),
        "profile_top_inclusive": profile_summary(prof_raw) if prof_raw.exists() else [],
    }
    print(json.dumps(result, indent=2))
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    if prof_raw.exists():  # the whole py-spy profile (collapsed stacks), for a closer look
        shutil.copy(prof_raw, args.out.with_suffix(".profile.txt"))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
