"""The durability state machine under a scripted producer (hypothesis, stateful).

The real ``Publisher``, spool (writer, ledger, segments, frames), forwarder and merge
run on a real temporary spool directory; only the producer is a double whose every
outcome hypothesis chooses: a request's record is acked, fails, is refused at
``produce`` (``BufferError``) or is held past the publish timeout and reported later
(delivered or failed); forwarded records are delivered while the "broker" is up and
fail while it is down; the publisher is closed and restarted on the same directory
(its segment is claimed by the next one). Requests are made one at a time, so arrival
order is their call order, and the forwarder is stepped by the test instead of running
as a thread.

Checked after every step, and after draining at the end:

* every event answered (``publish`` returned, i.e. HTTP 200) reaches "Kafka" (the
  double's delivered log) exactly once, and nothing else does;
* per key (one key: one partition), Kafka's order is the arrival order: what has
  reached Kafka for a key is always a prefix of that key's answered events (events
  held in the spool are not overtaken; docs/INGEST.md "Arrival order is kept").
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections import Counter, deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from groupwatch.contracts import Settings
from ingest.envelope import Envelope
from ingest.publisher import Publisher

OnDelivery = Callable[[KafkaError | None, Any], None]
_FAILED = KafkaError(KafkaError._MSG_TIMED_OUT)


class ScriptedProducer:
    """A producer whose outcomes the test scripts; ``delivered`` is what "Kafka" holds.

    A request's ``produce`` takes the fate set in ``next_fate`` (once); any other
    ``produce`` (the forwarder's) is delivered if ``broker_up``, else fails. Reports are
    served by ``poll`` in produce order, as librdkafka serves them per partition.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._due: deque[tuple[bytes, str, OnDelivery]] = deque()
        self.held: list[tuple[bytes, OnDelivery]] = []
        self.delivered: list[bytes] = []  # values, in the order Kafka got them
        self.next_fate: str | None = None
        self.broker_up = True
        self._queued = 0  # reports put in _due
        self._served = 0  # reports whose on_delivery has run

    def produce(
        self,
        topic: str,
        value: bytes,
        key: bytes | None,
        *,
        timestamp: int,
        headers: Any,
        on_delivery: OnDelivery,
    ) -> None:
        with self._cond:
            fate, self.next_fate = self.next_fate, None
            if fate is None:
                fate = "ack" if self.broker_up else "fail"
            if fate == "refuse":
                raise BufferError("Local: Queue full")
            if fate == "hold":
                self.held.append((value, on_delivery))
                return
            self._due.append((value, fate, on_delivery))
            self._queued += 1
            self._cond.notify_all()

    def poll(self, timeout: float) -> int:
        with self._cond:
            if not self._due:  # short waits: a closing publisher's poll thread ends soon
                self._cond.wait(min(timeout, 0.01))
            due, self._due = self._due, deque()
        for value, fate, on_delivery in due:
            self._report(value, fate == "ack", on_delivery)
        with self._cond:
            self._served += len(due)
            self._cond.notify_all()
        return len(due)

    def _report(self, value: bytes, ok: bool, on_delivery: OnDelivery) -> None:
        if ok:
            with self._cond:
                self.delivered.append(value)
        on_delivery(None if ok else _FAILED, None)

    def release(self, ok: bool) -> None:
        """The oldest held record's report comes, late."""
        with self._cond:
            value, on_delivery = self.held.pop(0)
            self._due.append((value, "ack" if ok else "fail", on_delivery))
            self._queued += 1
            queued = self._queued
            self._cond.notify_all()
            # served by the publisher's poll thread (or by flush): wait until it ran
            assert self._cond.wait_for(lambda: self._served >= queued, 10), "report not served"

    def flush(self, timeout: float) -> int:
        while self.held:
            self.release(self.broker_up)
        with self._cond:
            queued = self._queued
            assert self._cond.wait_for(lambda: self._served >= queued, 10), "reports not served"
        return 0

    def list_topics(self, *, timeout: float) -> Any:
        return None


KEYS = [b"1400000001:g1", b"1400000001:g2", b"1400000002:g1"]


class SpoolStates(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="gw-spool-states-"))
        self.settings = Settings(
            kafka_bootstrap_servers="127.0.0.1:9",  # never used: the producer is scripted
            state_dir=self.dir,
            publish_timeout_ms=50,
        )
        self.kafka = ScriptedProducer()
        self.publisher = self._start()
        self.answered: dict[bytes, list[bytes]] = {k: [] for k in KEYS}
        self.key_of: dict[bytes, bytes] = {}
        self.count = 0

    def _start(self) -> Publisher:
        publisher = Publisher(
            self.settings, make_producer=lambda _config: self.kafka, forward_thread=False
        )
        publisher.start()
        return publisher

    def _step(self) -> str:
        assert self.publisher.forwarder is not None
        return self.publisher.forwarder.step()

    @rule(fate=st.sampled_from(["ack", "ack", "fail", "hold", "refuse"]), key=st.sampled_from(KEYS))
    def request(self, fate: str, key: bytes) -> None:
        value = f"event-{self.count}".encode()
        self.count += 1
        env = Envelope(topic="t", key=key, value=value, timestamp_ms=self.count)
        self.kafka.next_fate = fate
        self.publisher.publish(env)  # returned: answered 200 ("delivered" or "spooled")
        self.kafka.next_fate = None  # not produced (behind the backlog): no fate used
        self.answered[key].append(value)
        self.key_of[value] = key

    @precondition(lambda self: bool(self.kafka.held))
    @rule(ok=st.booleans())
    def late_report(self, ok: bool) -> None:
        self.kafka.release(ok)

    @rule(up=st.booleans())
    def broker(self, up: bool) -> None:
        self.kafka.broker_up = up

    @rule()
    def forward(self) -> None:
        self._step()

    @rule()
    def restart(self) -> None:
        """Graceful stop (held reports come with the flush) and a new process on the same
        directory; its forwarder's first pass claims the old segment, as the thread does
        right at start."""
        self.publisher.close()
        self.publisher = self._start()
        self._step()

    @invariant()
    def each_event_once_and_in_arrival_order_per_key(self) -> None:
        seen = Counter(self.kafka.delivered)
        assert not [v for v, n in seen.items() if n > 1], "an event reached Kafka twice"
        for key, answered in self.answered.items():
            got = [v for v in self.kafka.delivered if self.key_of.get(v) == key]
            assert got == answered[: len(got)], f"{key!r}: Kafka order {got} vs {answered}"

    def teardown(self) -> None:
        try:
            self.kafka.broker_up = True
            while self.kafka.held:
                self.kafka.release(True)
            outcomes = [self._step() for _ in range(3)]
            while outcomes[-1] != "idle" and len(outcomes) < 100:
                outcomes.append(self._step())
            assert outcomes[-1] == "idle", f"the spool does not drain: {outcomes}"
            self.publisher.close()
            answered = Counter(v for values in self.answered.values() for v in values)
            assert Counter(self.kafka.delivered) == answered, "Kafka holds other than the 200s once"
            self.each_event_once_and_in_arrival_order_per_key()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


SpoolStates.TestCase.settings = settings(
    max_examples=int(os.environ.get("GROUPWATCH_SPOOL_STATE_EXAMPLES", "60")),
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_every_200_reaches_kafka_once_in_arrival_order_per_key = SpoolStates.TestCase
