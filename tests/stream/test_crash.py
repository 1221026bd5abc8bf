"""Exactness across crashes: >= 50,000 events, SIGKILLed workers, compared to a clean run.

The same generated input is produced under four prefixes (one per run, so every run has
its own output topics): one worker uninterrupted (the reference), two workers, one worker
SIGKILLed at random moments and restarted, and two workers with one of them SIGKILLed.
"""

from __future__ import annotations

import random
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from groupwatch.admin.topics import create_topics
from groupwatch.contracts import Settings, Topics
from tests.support.metrics import metric
from tests.support.stream import (
    T0,
    Worker,
    close_all,
    exc,
    final_set,
    finals,
    produce,
    read_topic,
    send,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

N_EVENTS = 50_000
SPAN_MS = 30 * 60_000
CODES = [10002, 10004, 10006, 10007, 10016, 10017, 10023, 80001, 80123, 12345]


def generate(seed: int = 7) -> tuple[list[Any], list[Any]]:
    """Exceptions and sends, roughly in event-time order with jitter, duplicates and late ones."""
    rng = random.Random(seed)
    groups = [f"g{i:03d}" for i in range(150)]
    exceptions: list[Any] = []
    sends: list[Any] = []
    for i in range(N_EVENTS):
        t = T0 + i * SPAN_MS // N_EVENTS + rng.randint(-20_000, 5_000)
        group = groups[int(rng.paretovariate(1.2)) % len(groups)]
        sender = f"u{rng.randint(0, 40)}"
        r = rng.random()
        if rng.random() < 0.01:
            t -= rng.randint(120_000, 400_000)  # far behind: late for its window
        if r < 0.35:
            sends.append(send(group, t, sender=sender, random=rng.getrandbits(31)))
            continue
        if r < 0.38 and exceptions:
            prev = exceptions[rng.randint(max(0, len(exceptions) - 500), len(exceptions) - 1)]
            exceptions.append(
                exc(
                    prev.group_id,
                    prev.error_code,
                    t,
                    sender=prev.from_account or "",
                    random=prev.random,
                )
            )  # same event_id: a duplicate
            continue
        code = CODES[min(int(rng.expovariate(0.6)), len(CODES) - 1)]
        exceptions.append(exc(group, code, t, sender=sender, random=rng.getrandbits(31)))
    return exceptions, sends


@pytest.fixture(scope="module")
def data() -> tuple[list[Any], list[Any]]:
    return generate()


def make_run(
    bootstrap: str, base: Path, data: tuple[list[Any], list[Any]], name: str
) -> tuple[Settings, Topics]:
    """Fresh topics for one run, loaded with the same input."""
    prefix = f"gwcrash-{name}-{uuid.uuid4().hex[:8]}"
    settings = Settings(
        kafka_bootstrap_servers=bootstrap,
        topic_prefix=prefix,
        state_dir=base / name,
        partitions=3,
        stream_app_id=f"gw-{prefix}",
        update_interval_seconds=2.0,
    )
    create_topics(settings)
    topics = Topics.from_settings(settings)
    exceptions, sends = data
    produce(settings, topics.exceptions, exceptions)
    produce(settings, topics.sends, sends)
    close_all(settings, topics, T0 + SPAN_MS + 3_600_000)
    return settings, topics


def caught_up(workers: list[Worker], partitions: int) -> bool:
    """Every input partition reported by some live worker with lag 0."""
    series: dict[str, float] = {}
    for w in workers:
        try:
            text = w.metrics()
        except Exception:
            return False
        for line in text.splitlines():
            if line.startswith("groupwatch_stream_lag{"):
                head, _, value = line.rpartition(" ")
                series[head] = float(value)
    return len(series) == 2 * partitions and all(v == 0 for v in series.values())


def collect(
    settings: Settings, topics: Topics, workers: list[Worker], timeout: float = 240.0
) -> list[tuple[str, dict[str, Any]]]:
    """Wait until the workers caught up and the finals stopped changing; all records."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not caught_up(workers, settings.partitions):
        time.sleep(1.0)
    assert caught_up(workers, settings.partitions), workers[0].tail()
    last = -1
    while True:
        records = read_topic(settings, topics.failure_windows, until=lambda r: False, timeout=3)
        n = len(finals(records))
        if n == last:
            return records
        last = n


@pytest.fixture(scope="module")
def ref(
    kafka_bootstrap: str,
    tmp_path_factory: pytest.TempPathFactory,
    data: tuple[list[Any], list[Any]],
) -> set[str]:
    """Final records of one uninterrupted worker."""
    base = tmp_path_factory.mktemp("crash-ref")
    settings, topics = make_run(kafka_bootstrap, base, data, "ref")
    w = Worker(settings, base, "ref").start()
    try:
        w.wait_healthy()
        records = collect(settings, topics, [w])
    finally:
        w.stop()
    ref = final_set(records)
    assert len(ref) > 1000, len(ref)
    return ref


def kill_loop(worker: Worker, rng: random.Random, kills: int, busy_within: float = 120.0) -> None:
    """SIGKILL ``worker`` ``kills`` times, each once it processes events.

    ``busy_within`` caps the wait for its first event: a worker rejoining next to another
    one may be handed partitions that are already caught up, and is then killed after
    the join instead. So is a worker that restarts with nothing left to read (the input is
    pre-loaded, and a few lives read all of it): it is killed once it reports lag 0.
    """
    for _ in range(kills):
        worker.start()
        worker.wait_healthy()
        deadline = time.monotonic() + busy_within
        while time.monotonic() < deadline:  # kill while it processes, not while it joins
            try:
                if metric(worker.metrics(), "groupwatch_stream_events_total") > 0:
                    break
            except Exception:
                pass
            if caught_up([worker], worker.settings.partitions):
                break
            time.sleep(0.2)
        time.sleep(rng.uniform(0.2, 3.0))
        worker.kill()


def test_sigkilled_worker_equals_uninterrupted(
    ref: set[str], kafka_bootstrap: str, tmp_path: Path, data: tuple[list[Any], list[Any]]
) -> None:
    settings, topics = make_run(kafka_bootstrap, tmp_path, data, "kill1")
    rng = random.Random(11)
    w = Worker(settings, tmp_path, "k1")
    kill_loop(w, rng, kills=5)
    w.start()
    try:
        w.wait_healthy()
        records = collect(settings, topics, [w])
    finally:
        w.stop()
    got = final_set(records)
    assert got == ref, (len(got - ref), len(ref - got), sorted(got ^ ref)[:4])
    # duplicates of a final (a crash between send and state write) are byte-identical
    assert len({k for k, _ in finals(records)}) == len(
        {
            s.split(" ", 1)[0]
            for s in got | {f"{k} x" for k, v in finals(records) if v["group_id"].startswith("zz-")}
        }
    )
    assert w.starts == 6


def test_two_workers_equal_one_and_survive_a_kill(
    ref: set[str], kafka_bootstrap: str, tmp_path: Path, data: tuple[list[Any], list[Any]]
) -> None:
    # two workers, undisturbed
    settings, topics = make_run(kafka_bootstrap, tmp_path, data, "two")
    a, b = Worker(settings, tmp_path, "a").start(), Worker(settings, tmp_path, "b").start()
    try:
        a.wait_healthy()
        b.wait_healthy()
        records = collect(settings, topics, [a, b])
    finally:
        a.stop()
        b.stop()
    assert final_set(records) == ref
    # two workers, one of them SIGKILLed at random moments and restarted
    settings, topics = make_run(kafka_bootstrap, tmp_path, data, "two-kill")
    rng = random.Random(23)
    a = Worker(settings, tmp_path, "ka").start()
    b = Worker(settings, tmp_path, "kb")
    try:
        a.wait_healthy()
        kill_loop(b, rng, kills=3, busy_within=20.0)
        b.start()
        b.wait_healthy()
        records = collect(settings, topics, [a, b])
    finally:
        a.stop()
        b.stop()
    got = final_set(records)
    assert got == ref, (len(got - ref), len(ref - got), sorted(got ^ ref)[:4])
