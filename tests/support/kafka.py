"""Real-Kafka helpers for tests: produce records; read a topic to its end, until a
predicate holds, or until it goes quiet; watermarks and end offsets."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from groupwatch.contracts import Settings

Key = bytes | str | None
# (key, value) or (key, value, Kafka timestamp in ms)
Record = tuple[Key, bytes] | tuple[Key, bytes, int]


def produce(
    bootstrap: str,
    topic: str,
    records: Iterable[Record],
    timestamp_ms: int | None = None,
    partition: int | None = None,
) -> int:
    """Produce records and wait for every ack; returns how many were sent.

    A record's own timestamp wins over ``timestamp_ms``; without either the broker's
    clock stamps it. ``partition`` pins every record to one partition (else: by key).
    """
    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 20, "enable.idempotence": True}
    )
    count = 0
    for key, value, *stamp in records:
        kwargs: dict[str, Any] = {}
        timestamp = stamp[0] if stamp else timestamp_ms
        if timestamp is not None:
            kwargs["timestamp"] = timestamp
        if partition is not None:
            kwargs["partition"] = partition
        while True:
            try:
                producer.produce(topic, value=value, key=key, **kwargs)
                break
            except BufferError:  # the local queue is full: let deliveries drain it
                producer.poll(0.1)
        count += 1
        if count % 1000 == 0:
            producer.poll(0)
    remaining = producer.flush(60)
    assert remaining == 0, f"{remaining} records not acknowledged"
    return count


def consume_all(
    bootstrap: str,
    topic: str,
    expected: int | None = None,
    timeout: float = 30.0,
    idle: float = 2.0,
    isolation: str = "read_committed",
) -> list[Message]:
    """Read a topic from the beginning: until ``expected`` records, or ``idle`` s of silence."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-reader-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": isolation,
        }
    )
    consumer.subscribe([topic])
    out: list[Message] = []
    deadline = time.monotonic() + timeout
    last_seen = time.monotonic()
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                if expected is None and out and time.monotonic() - last_seen > idle:
                    break
                if (
                    expected is not None
                    and len(out) >= expected
                    and time.monotonic() - last_seen > idle
                ):
                    break
                continue
            if msg.error():
                continue
            out.append(msg)
            last_seen = time.monotonic()
    finally:
        consumer.close()
    return out


def read_topic(
    settings: Settings, topic: str, *, expect: int | None = None, timeout: float = 30.0
) -> list[Message]:
    """Every record of ``topic``, waiting (up to ``timeout``) until at least ``expect``."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": f"gwtest-reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        deadline = time.monotonic() + timeout
        partitions = list(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        while True:
            marks = {p: watermarks(consumer, topic, p) for p in partitions}
            total = sum(high - low for low, high in marks.values())
            if expect is None or total >= expect or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        records: list[Message] = []
        remaining = {p for p, (low, high) in marks.items() if high > low}
        while remaining and time.monotonic() < deadline + 30:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            records.append(msg)
            if msg.offset() + 1 >= marks[msg.partition()][1]:
                remaining.discard(msg.partition())
        return records
    finally:
        consumer.close()


def read_until(
    settings: Settings,
    topic: str,
    until: Callable[[list[Any]], bool],
    *,
    convert: Callable[[Message], Any] | None = None,
    timeout: float = 90.0,
) -> list[Any]:
    """Every partition of ``topic`` from the start (messages, or each one ``convert``ed),
    polled until ``until`` holds of what was read (or ``timeout``: then what was read)."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": f"test-reader-{time.time_ns()}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        consumer.assign(
            [TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(settings.partitions)]
        )
        out: list[Any] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batch = [m for m in consumer.consume(1000, 0.5) if not m.error()]
            out.extend(batch if convert is None else map(convert, batch))
            if until(out):
                break
        return out
    finally:
        consumer.close()


# Errors of a partition whose leader is still being elected (not flagged retriable).
_SETTLING = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
    }
)


def watermarks(consumer: Consumer, topic: str, partition: int) -> tuple[int, int]:
    """Low/high watermarks, retrying while a new partition's leader settles."""
    for attempt in range(50):
        try:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            return int(low), int(high)
        except KafkaException as exc:
            error = exc.args[0]
            settling = error.retriable() or error.code() in _SETTLING
            if attempt == 49 or not settling:
                raise
            time.sleep(0.2)
    raise AssertionError("unreachable")


def topic_end(settings: Settings, topic: str) -> int:
    """How many records ``topic`` ever held: the sum of its partitions' ends."""
    return sum(end_offsets(settings, [topic]).values())


def end_offsets(settings: Settings, topics: Iterable[str]) -> dict[tuple[str, int], int]:
    """The end (high watermark) of every non-empty partition of ``topics``."""
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": "hw"})
    try:
        out = {}
        for topic in topics:
            for p in range(settings.partitions):
                _, high = watermarks(consumer, topic, p)
                if high > 0:
                    out[(topic, p)] = high
        return out
    finally:
        consumer.close()
