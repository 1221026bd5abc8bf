"""Small real-Kafka helpers for tests: produce records, read a topic to the end."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable

from confluent_kafka import Consumer, Message, Producer


def produce(
    bootstrap: str,
    topic: str,
    records: Iterable[tuple[bytes | str | None, bytes]],
    timestamp_ms: int | None = None,
) -> int:
    """Produce (key, value) pairs and wait for every ack; returns how many were sent."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    count = 0
    for key, value in records:
        kwargs = {"timestamp": timestamp_ms} if timestamp_ms is not None else {}
        producer.produce(topic, value=value, key=key, **kwargs)
        count += 1
        producer.poll(0)
    remaining = producer.flush(30)
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
