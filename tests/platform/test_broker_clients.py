"""The pinned Kafka works with both Python clients the pipeline uses, transactions included."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from tests.support.kafka import consume_all, produce

pytestmark = pytest.mark.kafka


@pytest.fixture
def topic(kafka_bootstrap: str) -> str:
    name = f"gwtest-clients-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(name, 3, 1)])[name].result(30)
    return name


def test_confluent_round_trip(kafka_bootstrap: str, topic: str) -> None:
    sent = [(f"k{i}".encode(), f"v{i}".encode()) for i in range(50)]
    produce(kafka_bootstrap, topic, sent)
    got = consume_all(kafka_bootstrap, topic, expected=50)
    assert sorted((m.key(), m.value()) for m in got) == sorted(sent)


def test_aiokafka_round_trip(kafka_bootstrap: str, topic: str) -> None:
    async def run() -> list[tuple[bytes, bytes]]:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True)
        await producer.start()
        try:
            for i in range(20):
                await producer.send_and_wait(topic, f"a{i}".encode(), key=f"k{i}".encode())
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=kafka_bootstrap,
            group_id=f"g-{uuid.uuid4().hex[:6]}",
            auto_offset_reset="earliest",
        )
        await consumer.start()
        got: list[tuple[bytes, bytes]] = []
        try:
            async with asyncio.timeout(30):
                while len(got) < 20:
                    batch = await consumer.getmany(timeout_ms=1000)
                    for messages in batch.values():
                        got += [(m.key, m.value) for m in messages]  # type: ignore[misc]
            await consumer.commit()
        finally:
            await consumer.stop()
        return got

    got = asyncio.run(run())
    assert sorted(got) == sorted((f"k{i}".encode(), f"a{i}".encode()) for i in range(20))


def test_confluent_transaction_commit_visible_abort_invisible(
    kafka_bootstrap: str, topic: str
) -> None:
    producer = Producer(
        {"bootstrap.servers": kafka_bootstrap, "transactional.id": f"tx-{uuid.uuid4().hex}"}
    )
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(topic, key=b"k", value=b"aborted")
    assert producer.flush(30) == 0  # on the broker, then aborted
    producer.abort_transaction(30)
    producer.begin_transaction()
    for i in range(5):
        producer.produce(topic, key=b"k", value=f"committed-{i}".encode())
    producer.commit_transaction(30)

    committed = consume_all(kafka_bootstrap, topic, expected=5, isolation="read_committed")
    assert [m.value() for m in committed] == [f"committed-{i}".encode() for i in range(5)]
    uncommitted = consume_all(kafka_bootstrap, topic, expected=6, isolation="read_uncommitted")
    assert b"aborted" in [m.value() for m in uncommitted]


def test_aiokafka_transaction_commit(kafka_bootstrap: str, topic: str) -> None:
    async def run() -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=kafka_bootstrap, transactional_id=f"atx-{uuid.uuid4().hex}"
        )
        await producer.start()
        try:
            async with producer.transaction():
                await producer.send_and_wait(topic, b"from-aiokafka", key=b"k")
        finally:
            await producer.stop()

    asyncio.run(run())
    got = consume_all(kafka_bootstrap, topic, expected=1, isolation="read_committed")
    assert [m.value() for m in got] == [b"from-aiokafka"]
