"""A group consumer's watchdog: subscribed, holding no partition while the cluster answers.

Used by the consumer-group stages on confluent-kafka (the sink, notify); it lives in the
contracts, like ``startup``, because stages import nothing from groupwatch but
``groupwatch.contracts``.

Three times a fault run left the sink alive and subscribed but holding no partition for
the rest of the run (docs/RELIABILITY.md, "the sink can stop consuming"): librdkafka's
group state did not recover from a broker restart or freeze in the middle of a join. Two
causes were found and fixed; the third left no log. This watchdog covers any such wedge.
While the consumer holds no partition it sends, every ``check_s``, a metadata request for
one of its topics on the consumer's own connections. Time in which the cluster does not
answer (down, frozen) does not count: a join legitimately waits for the broker to return,
then for dead members' sessions and a rebalance (up to a minute in the fault suite after
a broker SIGKILL). Once the cluster has answered every check for ``after_s`` while the
consumer still holds nothing, the consumer is to be rebuilt (``stale`` True).

What it does not ask: the group coordinator's member list (``describe_consumer_groups``).
That was the first design; librdkafka's admin client aborted the whole process (an
assertion in ``rd_kafka_enq_once_del_source_return``) when such a request timed out against
a broker SIGKILLed in the fault suite. A member that legitimately holds nothing (more
notify processes than partitions, for standby) is told so by an empty assignment: the
rebalance callback runs with no partitions. That counts as membership, not as a wedge:
with the eager assignors these consumers use, leaving a generation always passes through
a revoke (or lost) callback, which starts the count again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaException

log = logging.getLogger(__name__)

METADATA_TIMEOUT_S = 5.0
CLOSE_WAIT_S = 15.0


def close_within(consumer: Consumer, seconds: float = CLOSE_WAIT_S) -> bool:
    """Close a consumer about to be replaced, waiting at most ``seconds`` (in a thread: a
    wedged one may block in close); False if it was left closing."""

    def close() -> None:
        try:
            consumer.close()
        except Exception as exc:  # a wedged or already failed consumer: nothing to keep
            log.info("old consumer close: %s", exc)

    closer = threading.Thread(target=close, name="consumer-close", daemon=True)
    closer.start()
    closer.join(seconds)
    if closer.is_alive():
        log.warning("the old consumer did not close in %.0f s; left to close", seconds)
        return False
    return True


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
        check_s: float = 10.0,
        metadata_timeout_s: float = METADATA_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.topic = topic
        self.metadata_timeout_s = metadata_timeout_s
        self.after_s = after_s
        self.check_s = check_s
        self._clock = clock
        self._idle = True  # subscribed, nothing assigned yet
        self._answering_since: float | None = None
        self._next_check = clock() + check_s

    def assigned(self, partitions: int) -> None:
        """The group assigned this member ``partitions`` (0: a member of the generation
        holding nothing, not wedged)."""
        self._idle = False

    def revoked(self) -> None:
        if not self._idle:
            self._idle = True
            self._answering_since = None
            self._next_check = self._clock() + self.check_s

    def restarted(self) -> None:
        """A new consumer subscribed: the count starts again."""
        self._idle = True
        self._answering_since = None
        self._next_check = self._clock() + self.check_s

    def stale(self, consumer: Consumer) -> bool:
        """True when ``consumer`` has held no partition while the cluster answered every
        check for ``after_s`` (a metadata request every ``check_s`` while idle)."""
        now = self._clock()
        if not self._idle or now < self._next_check:
            return False
        self._next_check = now + self.check_s
        if not cluster_answers(consumer, self.topic, self.metadata_timeout_s):
            self._answering_since = None
            return False
        if self._answering_since is None:
            self._answering_since = now
        if now - self._answering_since < self.after_s:
            return False
        log.warning(
            "the consumer (member %r) has held no partition for %.0f s while the cluster "
            "answered: rebuilding it",
            consumer.memberid(),
            now - self._answering_since,
        )
        return True
