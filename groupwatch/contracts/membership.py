"""A group consumer's watchdog: subscribed, holding no partition while the cluster answers.

Used by the consumer-group stages on confluent-kafka (the sink, notify); it lives in the
contracts, like ``startup``, because stages import nothing from groupwatch but
``groupwatch.contracts``.

Three times a fault run left the sink alive and subscribed but holding no partition for
the rest of the run (docs/RELIABILITY.md, "the sink can stop consuming"): librdkafka's
group state did not recover from a broker restart or freeze in the middle of a join. Two
causes were found and fixed; the third left no log. This watchdog covers any such wedge:
once the consumer has held no partition for ``after_s`` (several session timeouts: longer
than any join waits for dead members and a rebalance), it asks the cluster for the
metadata of one of the consumer's topics, on the consumer's own connection, at most every
``after_s``. A cluster that does not answer (the broker is down or frozen) decides nothing:
the consumer keeps trying on its own. A cluster that answers while the consumer still has
nothing means the consumer is to be rebuilt (``stale`` True).

What it does not ask: the group coordinator's member list (``describe_consumer_groups``).
That was the first design; librdkafka's admin client aborted the whole process (an
assertion in ``rd_kafka_enq_once_del_source_return``) when such a request timed out against
a broker SIGKILLed in the fault suite. The price of asking only for metadata: a member
that legitimately holds nothing (more members in the group than partitions) is rebuilt
every ``after_s``, a rebalance each time; groupwatch runs one sink and one notify per group.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaException

log = logging.getLogger(__name__)

METADATA_TIMEOUT_S = 5.0


def cluster_answers(consumer: Consumer, topic: str, timeout: float = METADATA_TIMEOUT_S) -> bool:
    """Whether the cluster answers a metadata request for ``topic`` on ``consumer``'s own
    connections (librdkafka's cached metadata is not enough: a request goes out)."""
    try:
        metadata = consumer.list_topics(topic=topic, timeout=timeout)
    except KafkaException as exc:
        log.info("no metadata for %s (%s): the consumer's wedge undecided", topic, exc)
        return False
    found = metadata.topics.get(topic)
    return found is not None and found.error is None and bool(metadata.brokers)


class MembershipWatchdog:
    """``assigned`` / ``revoked`` from the rebalance callbacks, ``stale`` from the loop."""

    def __init__(
        self,
        topic: str,
        *,
        after_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.topic = topic
        self.after_s = after_s
        self._clock = clock
        self._idle_since: float | None = clock()  # subscribed, nothing assigned yet
        self._next_check = 0.0

    def assigned(self, partitions: int) -> None:
        if partitions:
            self._idle_since = None
        elif self._idle_since is None:
            self._idle_since = self._clock()

    def revoked(self) -> None:
        if self._idle_since is None:
            self._idle_since = self._clock()

    def restarted(self) -> None:
        """A new consumer subscribed: it gets ``after_s`` to join before any check."""
        self._idle_since = self._clock()
        self._next_check = 0.0

    def stale(self, consumer: Consumer) -> bool:
        """True when ``consumer`` held no partition for ``after_s`` while the cluster
        answers (a metadata request, at most every ``after_s``)."""
        now = self._clock()
        if self._idle_since is None or now - self._idle_since < self.after_s:
            return False
        if now < self._next_check:
            return False
        self._next_check = now + self.after_s
        if not cluster_answers(consumer, self.topic):
            return False
        log.warning(
            "the consumer (member %r) has held no partition for %.0f s while the cluster "
            "answers: rebuilding it",
            consumer.memberid(),
            now - self._idle_since,
        )
        return True
