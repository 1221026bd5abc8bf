"""The sink's membership watchdog against the real broker, and a rebuilt consumer that
lands every record once."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewTopic

from analytics.sink import Sink
from groupwatch.contracts import Settings, Topics
from groupwatch.contracts.membership import MembershipWatchdog
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


def joined(
    bootstrap: str,
    group: str,
    topic: str,
    *,
    want_partitions: bool,
    others: tuple[Consumer, ...] = (),
) -> Consumer:
    """A consumer of ``group`` that has joined (assigned its share, possibly nothing);
    ``others`` of the group keep polling meanwhile, so the rebalance completes."""
    done = threading.Event()
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})

    def on_assign(c: Consumer, parts: list[object]) -> None:
        if parts or not want_partitions:
            done.set()

    consumer.subscribe([topic], on_assign=on_assign)
    deadline = time.monotonic() + 60
    while not done.is_set():
        assert time.monotonic() < deadline, f"{group}: no assignment in 60 s"
        consumer.poll(0.2)
        for other in others:
            other.poll(0.05)
    return consumer


def test_a_listed_member_is_left_alone_and_a_forgotten_one_is_stale(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    topic = f"{topic_prefix}-membership"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    group, other_group = f"{topic_prefix}-g{free_port()}", f"{topic_prefix}-h{free_port()}"
    active = joined(kafka_bootstrap, group, topic, want_partitions=True)
    standby = joined(kafka_bootstrap, group, topic, want_partitions=False, others=(active,))
    elsewhere = joined(kafka_bootstrap, other_group, topic, want_partitions=True)
    try:
        for _ in range(25):  # the standby's join rebalanced the group: let both settle
            active.poll(0.1)
            standby.poll(0.1)
        clock = Clock()
        dog = MembershipWatchdog(kafka_bootstrap, group, after_s=30, clock=clock)
        dog.assigned(0)
        clock.now += 29
        assert not dog.stale(standby)  # not idle long enough: no broker call yet
        clock.now += 2
        # idle 31 s, but the group lists it: a standby (the partition is the other's)
        assert not dog.stale(standby)
        assert standby.memberid() in (dog.members() or set())
        clock.now += 31
        # a consumer whose member id the group does not list (here: it is in another group)
        assert dog.stale(elsewhere)
        assert not dog.stale(elsewhere)  # checked at most every after_s
        dog.assigned(1)
        clock.now += 100
        assert not dog.stale(elsewhere)  # holds partitions: never checked
    finally:
        for c in (active, standby, elsewhere):
            c.close()


class ForgottenOnce(MembershipWatchdog):
    """The group "forgets" the sink once, after ``after_rows`` records are in DuckDB:
    the one decision a test cannot make the broker take on cue; the rebuild that follows is
    the sink's real one, against the real broker."""

    def __init__(self, sink: Sink, stored: Callable[[], int], after_rows: int) -> None:
        super().__init__(sink.settings.bootstrap_servers, sink.settings.sink_group_id, after_s=30)
        self._stored = stored
        self._after_rows = after_rows
        self.fired = False

    def stale(self, consumer: Consumer) -> bool:
        if not self.fired and self._stored() >= self._after_rows:
            self.fired = True
            return True
        return False


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

    dog = ForgottenOnce(sink, stored, after_rows=total // 3)
    sink.watchdog = dog
    deadline = time.monotonic() + 120
    sink.run(until=lambda: stored() >= total or time.monotonic() > deadline)  # then closes
    assert dog.fired and sink.consumer_rebuilds == 1
    assert_matches_reference(settings.duckdb_path, w)
