"""Seeded input for the benchmarks: contract records and a fast producer (current code)."""

from __future__ import annotations

import random
import time
from collections.abc import Iterable

import msgspec
from confluent_kafka import Producer

from groupwatch.contracts.catalog import error_category
from groupwatch.contracts.keys import group_key, make_event_id
from groupwatch.contracts.records import ExceptionEvent, SendEvent, encode

APP = "1400000001"
HOUR_MS = 3_600_000
CODES = (10002, 10004, 10006, 10007, 10016, 10017, 10023, 80001)


def hours_ago(hours: int) -> int:
    """Epoch ms of the hour boundary ``hours`` ago: recent enough for the broker's
    time-based retention (Kafka timestamp = event time), a window boundary."""
    return (int(time.time() * 1000) // HOUR_MS - hours) * HOUR_MS


def exception(app: str, group: str, sender: str, rnd: int, t: int, code: int) -> ExceptionEvent:
    return ExceptionEvent(
        event_id=make_event_id(app, group, sender, rnd, t),
        sdkappid=app,
        group_id=group,
        group_type="Public",
        from_account=sender,
        random=rnd,
        msg_types=["TIMTextElem"],
        error_code=code,
        error_info="bench",
        error_category=error_category(code),
        event_time_ms=t,
        received_at_ms=t + 30,
        client_ip="10.1.2.3",
        platform="iOS",
    )


def send(app: str, group: str, sender: str, rnd: int, t: int) -> SendEvent:
    return SendEvent(
        event_id=make_event_id(app, group, sender, rnd, t),
        sdkappid=app,
        group_id=group,
        group_type="Public",
        from_account=sender,
        random=rnd,
        event_time_ms=t,
        received_at_ms=t,
    )


def mixed_hour(n: int, seed: int = 1) -> tuple[list[ExceptionEvent], list[SendEvent]]:
    """``n`` events over one hour three hours ago, 70 % exceptions (Pareto-skewed groups,
    exponentially skewed codes, a little disorder), 30 % sends."""
    rng = random.Random(seed)
    t0, span = hours_ago(3), HOUR_MS
    exceptions, sends = [], []
    for i in range(n):
        t = t0 + i * span // n + rng.randint(-10_000, 2_000)
        group = f"g{int(rng.paretovariate(1.2)) % 500:03d}"
        sender = f"u{rng.randint(0, 99)}"
        if rng.random() < 0.3:
            sends.append(send(APP, group, sender, rng.getrandbits(31), t))
        else:
            code = CODES[min(int(rng.expovariate(0.6)), len(CODES) - 1)]
            exceptions.append(exception(APP, group, sender, rng.getrandbits(31), t, code))
    return exceptions, sends


def distinct_exceptions(n: int, seed: int = 1) -> list[ExceptionEvent]:
    """``n`` exceptions with distinct ids over the last hour (3 apps, 5,000 groups)."""
    rng = random.Random(seed)
    base = int(time.time() * 1000) - HOUR_MS
    return [
        exception(
            f"14000000{i % 3}",
            f"@TGS#{rng.randrange(5000)}",
            f"user{rng.randrange(100_000)}",
            i,
            base + rng.randrange(HOUR_MS),
            rng.choice(CODES),
        )
        for i in range(n)
    ]


def produce(bootstrap: str, topic: str, records: Iterable[msgspec.Struct]) -> int:
    """Produce records keyed by group, Kafka timestamp = event time; returns the count."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 20,
            "batch.size": 1 << 20,
            "enable.idempotence": True,
        }
    )
    n = 0
    for rec in records:
        key = group_key(rec.sdkappid, rec.group_id)  # type: ignore[attr-defined]
        while True:
            try:
                producer.produce(
                    topic,
                    encode(rec),
                    key.encode(),
                    timestamp=rec.event_time_ms,  # type: ignore[attr-defined]
                )
                break
            except BufferError:
                producer.poll(0.05)
        n += 1
        if n % 10_000 == 0:
            producer.poll(0)
    left = producer.flush(60)
    if left:
        raise RuntimeError(f"{left} records not delivered to {topic}")
    return n
