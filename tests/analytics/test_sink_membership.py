"""The group consumers' watchdog against the real broker, and a sink whose consumer is
rebuilt that lands every record once."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewTopic

from analytics.sink import Sink
from groupwatch.contracts import Settings, Topics
from groupwatch.contracts.membership import MembershipWatchdog, cluster_answers
from tests.analytics.test_sink import assert_matches_reference, sink_settings
from tests.analytics.workload import make_workload
from tests.support.ports import free_port
from tests.support.sink import high_watermarks

pytestmark = pytest.mark.kafka


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_idle_while_the_cluster_answers_is_stale_and_a_dead_cluster_decides_nothing(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    topic = f"{topic_prefix}-membership"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    live = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": f"{topic_prefix}-g"})
    dead = Consumer(
        {"bootstrap.servers": f"127.0.0.1:{free_port()}", "group.id": f"{topic_prefix}-g"}
    )
    try:
        clock = Clock()
        dog = MembershipWatchdog(topic, after_s=60, check_s=10, clock=clock)
        clock.now += 5
        assert not dog.stale(live)  # before the first check: not even asked
        clock.now += 5
        assert not dog.stale(live)  # the cluster answers: counting starts
        clock.now += 5
        assert not dog.stale(live)  # between checks
        clock.now += 50
        assert not dog.stale(live)  # answering for 55 s
        clock.now += 10
        assert dog.stale(live)  # answering for 65 s with nothing assigned: rebuild
        dog.restarted()  # the rebuilt consumer: counting starts again
        clock.now += 30
        assert not dog.stale(live)
        dog.assigned(3)
        clock.now += 1000
        assert not dog.stale(live)  # holds partitions: never asked
        dog.revoked()
        for _ in range(7):
            clock.now += 10
            stale = dog.stale(live)
        assert stale
        # time in which the cluster does not answer (down, frozen) does not count
        other = MembershipWatchdog(
            topic, after_s=60, check_s=10, metadata_timeout_s=0.5, clock=clock
        )
        for _ in range(10):
            clock.now += 10
            assert not other.stale(dead)
        assert not cluster_answers(dead, topic, timeout=1.0)
        assert cluster_answers(live, topic)
        assert not cluster_answers(live, f"{topic}-missing", timeout=2.0)
    finally:
        live.close()
        dead.close()


class WedgedOnce(MembershipWatchdog):
    """Says "wedged" once, after ``after_rows`` records are in DuckDB: the state a test
    cannot put librdkafka in on cue; the rebuild that follows is the sink's real one,
    against the real broker."""

    def __init__(self, sink: Sink, stored: Callable[[], int], after_rows: int) -> None:
        super().__init__(sink.topics.exceptions, after_s=90)
        self._stored = stored
        self._after_rows = after_rows
        self.fired = False

    def stale(self, consumer: Consumer) -> bool:
        if not self.fired and self._stored() >= self._after_rows:
            self.fired = True
            return True
        return False


def test_a_member_the_group_gives_nothing_is_not_rebuilt(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    """Two members, one partition: the second gets an empty assignment (standby), which is
    membership, not a wedge: its watchdog never asks for a rebuild."""
    topic = f"{topic_prefix}-standby"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    members = []
    for _ in range(2):
        consumer = Consumer(
            {
                "bootstrap.servers": kafka_bootstrap,
                "group.id": f"{topic_prefix}-standby-g",
                "session.timeout.ms": 6000,
            }
        )
        dog = MembershipWatchdog(topic, after_s=2.0, check_s=0.5)
        held: list[int] = []

        def on_assign(_c: object, parts: list[object], d=dog, h=held) -> None:
            d.assigned(len(parts))
            h.append(len(parts))

        consumer.subscribe(
            [topic],
            on_assign=on_assign,
            on_revoke=lambda _c, _p, d=dog: d.revoked(),
            on_lost=lambda _c, _p, d=dog: d.revoked(),
        )
        members.append((consumer, dog, held))
    try:
        deadline = time.monotonic() + 60
        while sorted(h[-1] if h else -1 for _, _, h in members) != [0, 1]:
            assert time.monotonic() < deadline, [h for _, _, h in members]
            for consumer, _, _ in members:
                consumer.poll(0.1)
        settled = time.monotonic()
        while time.monotonic() - settled < 5.0:  # 2.5 x after_s with the cluster answering
            for consumer, dog, held in members:
                consumer.poll(0.1)
                assert not dog.stale(consumer), held
        assert sorted(h[-1] for _, _, h in members) == [0, 1]  # no rebalance meanwhile
    finally:
        for consumer, _, _ in members:
            consumer.close()


def test_a_rebuilt_consumer_lands_every_record_once(
    make_settings: Callable[..., Settings], topics: Topics, tmp_path: Path
) -> None:
    settings = sink_settings(make_settings, sink_batch_rows=100)
    w = make_workload(seed=7, n_exceptions=1500, n_sends=800, n_window_keys=100)
    w.produce(settings.bootstrap_servers, topics)
    ends = high_watermarks(settings)
    total = sum(ends.values())
    sink = Sink(settings, serve=False, snapshots=False)

    def stored() -> int:  # called by the loop and the fetch thread: a cursor per call
        with sink.gate.shared():
            row = (
                sink.con.cursor()
                .execute("SELECT coalesce(sum(next_offset), 0) FROM kafka_offsets")
                .fetchone()
            )
        return int(row[0]) if row else 0

    dog = WedgedOnce(sink, stored, after_rows=total // 3)
    sink.watchdog = dog
    deadline = time.monotonic() + 120
    sink.run(until=lambda: stored() >= total or time.monotonic() > deadline)  # then closes
    assert dog.fired and sink.consumer_rebuilds == 1
    assert_matches_reference(settings.duckdb_path, w)
