"""A real worker restores a state changelog in which a late write of an ended ownership
landed after the next owner's writes (stream/epochs.py): the late write is ignored, the
newer owner's state is what the finals count, and the worker writes under an epoch no
lower than the highest it restored (a fresh group's generation is 1).

The changelog is crafted on the real broker the way the cluster suite's outage leaves it:
ownership 5 wrote an aggregate, ownership 6 (the next owner) wrote it again, then
ownership 5's in-flight write of the same key and of a key only it wrote arrived.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from groupwatch.admin.topics import create_topics
from groupwatch.contracts import Settings, Topics
from groupwatch.contracts.catalog import error_category
from stream import codecs, epochs, keys
from stream.aggregate import CodeAgg
from tests.support.events import APP
from tests.support.metrics import metric
from tests.support.stream import T0, Worker, close_all, finals, read_topic

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]
S = 1000
CODE = 10004


def agg(group: str, n: int, off: int) -> bytes:
    return codecs.encode_code(
        CodeAgg(
            ws=T0,
            app=APP,
            grp=group,
            code=CODE,
            cat=error_category(CODE),
            gt="Public",
            n=n,
            senders={f"s{i}" for i in range(n)},
            first=T0 + S,
            last=T0 + n * S,
            off=off,
        )
    )


# (group, failures, highest applied offset, epoch header; None: written before epochs)
CHANGELOG = [
    ("g-legacy", 1, 5, None),
    ("g-kept", 3, 10, 5),
    ("g-kept", 7, 20, 6),  # the next owner's value
    ("g-kept", 4, 12, 5),  # the ended ownership's late write of the same key: ignored
    ("g-late-only", 2, 13, 5),  # a key only the late write has: ignored
]


def craft_changelog(settings: Settings, changelog: str) -> None:
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
    spec = NewTopic(changelog, settings.partitions, 1, config={"cleanup.policy": "compact"})
    for future in admin.create_topics([spec]).values():
        future.result(30)
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers, "acks": "all"})
    for group, n, off, epoch in CHANGELOG:
        producer.produce(
            changelog,
            key=keys.code(0, T0, APP, group, CODE).encode(),
            value=agg(group, n, off),
            partition=0,
            headers=None if epoch is None else epochs.headers(epoch),
        )
        producer.flush(30)  # one by one: the log order is the list's


def changelog_records(settings: Settings, changelog: str) -> list[tuple[bytes, Any]]:
    consumer = Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": "epoch-reader",
            "enable.auto.commit": False,
        }
    )
    try:
        tp = TopicPartition(changelog, 0, 0)
        _, high = consumer.get_watermark_offsets(tp, timeout=10)
        consumer.assign([tp])
        out: list[tuple[bytes, Any]] = []
        while len(out) < high:
            msg = consumer.poll(5)
            assert msg is not None, f"read {len(out)} of {high} changelog records"
            assert msg.error() is None, msg.error()
            out.append((msg.key(), msg.headers()))
        return out
    finally:
        consumer.close()


def test_a_late_write_of_an_ended_ownership_is_ignored_on_restore(
    kafka_bootstrap: str, make_settings: Any, tmp_path: Path
) -> None:
    settings = make_settings(stream_app_id=f"gw-epochs-{tmp_path.name[-12:]}")
    create_topics(settings)
    topics = Topics.from_settings(settings)
    changelog = f"{settings.stream_app_id}-state-changelog"
    craft_changelog(settings, changelog)
    close_all(settings, topics, T0 + 600 * S)  # stream time far past the window's close
    worker = Worker(settings, tmp_path).start()
    try:
        worker.wait_healthy()
        records = read_topic(
            settings,
            topics.failure_windows,
            until=lambda r: {v["group_id"] for _, v in finals(r)} >= {"g-kept", "g-legacy"},
        )
        text = worker.metrics()
    finally:
        worker.stop()
    got = {v["group_id"]: (v["failures"], v["senders"]) for _, v in finals(records)}
    assert got.get("g-kept") == (7, 7), (got, worker.tail())
    assert got.get("g-legacy") == (1, 1), got
    assert "g-late-only" not in got, got
    assert metric(text, "groupwatch_stream_changelog_ignored_total") == 2, text

    written = changelog_records(settings, changelog)[len(CHANGELOG) :]
    assert written, "the worker wrote no state"
    found = {epochs.record_epoch(headers) for _, headers in written}
    assert found == {6}, found  # the restored highest, not the fresh group's generation
