"""A consumer's membership watchdog: subscribed, idle and forgotten by its group.

Used by the consumer-group stages on confluent-kafka (the sink, notify); it lives in the
contracts, like ``startup``, because stages import nothing from groupwatch but
``groupwatch.contracts``.

Three times a fault run left the sink alive and subscribed but holding no partition, for
the rest of the run, while the group coordinator listed no member (docs/RELIABILITY.md,
"the sink idle after a broker fault"): librdkafka's group state did not recover from a
broker restart or freeze in the middle of a join. Two causes were found and fixed; the
third left no log. This watchdog covers any such wedge: once the consumer has held no
partition for ``after_s``, it asks the coordinator (at most every ``after_s``) whether the
consumer's member id is in its group. A consumer the group lists (a standby next to
another sink of the same group, or one in a rebalance) is left alone; one it does not list
is to be rebuilt (``stale`` True). A coordinator that does not answer (the broker is down)
decides nothing: the consumer keeps trying on its own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaException
from confluent_kafka.admin import AdminClient

log = logging.getLogger(__name__)

ADMIN_TIMEOUT_S = 5.0


def group_members(admin: AdminClient, group_id: str, timeout: float) -> set[str] | None:
    """Member ids the coordinator lists for ``group_id``; None if it did not answer."""
    try:
        futures = admin.describe_consumer_groups([group_id], request_timeout=timeout)
        description = futures[group_id].result(timeout=timeout)
    except (KafkaException, TimeoutError) as exc:
        log.info("group %s not described (%s): membership undecided", group_id, exc)
        return None
    return {member.member_id for member in description.members}


class MembershipWatchdog:
    """``assigned`` / ``revoked`` from the rebalance callbacks, ``stale`` from the loop."""

    def __init__(
        self,
        bootstrap_servers: str,
        group_id: str,
        *,
        after_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.group_id = group_id
        self.after_s = after_s
        self._clock = clock
        self._idle_since: float | None = clock()  # subscribed, nothing assigned yet
        self._next_check = 0.0
        self._admin: AdminClient | None = None

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

    def idle_for(self) -> float:
        return 0.0 if self._idle_since is None else self._clock() - self._idle_since

    def stale(self, consumer: Consumer) -> bool:
        """True when ``consumer`` held no partition for ``after_s`` and its group does not
        list it as a member (a broker call, at most every ``after_s``)."""
        now = self._clock()
        if self._idle_since is None or now - self._idle_since < self.after_s:
            return False
        if now < self._next_check:
            return False
        self._next_check = now + self.after_s
        members = self.members()
        if members is None:
            return False
        member_id = consumer.memberid()
        if member_id and member_id in members:
            return False
        log.warning(
            "the consumer (member %r) has held no partition for %.0f s and group %s lists %s",
            member_id,
            now - self._idle_since,
            self.group_id,
            sorted(members) or "no member",
        )
        return True

    def members(self) -> set[str] | None:
        if self._admin is None:
            self._admin = AdminClient({"bootstrap.servers": self.bootstrap_servers})
        return group_members(self._admin, self.group_id, ADMIN_TIMEOUT_S)
