"""Fencing a worker that may no longer own its partitions: it writes nothing after that.

A worker whose group session expired (the broker heard no heartbeat for the session
timeout: the whole cluster or the worker paused longer than that) is no longer a member,
and its partitions may already be another worker's, restoring their state from the
changelog. Until its next heartbeat or commit reply says so, it could still apply a
fetched batch and write that partition's state and outputs: two writers of one
changelog partition, the new owner's state missing what the old one counted (the
cluster suite's short finals). The stream uses no Kafka transactions, so the broker
cannot refuse such writes; the worker refuses them itself.

A batch's outputs and state writes go out only while the worker holds a **lease** on the
generation it fetched the batch under: same generation and member id, no rejoin due, and
the last SyncGroup or heartbeat the broker answered was *sent* less than ``session -
heartbeat interval`` ago (the broker received it after it was sent and restarted the
member's session then, so it cannot have expired the member before ``sent + session``).
A lease that is only too old waits for the next heartbeat reply (a slow broker delays
the batch, it does not drop it); a generation gone drops the batch (``Fence.hold``
returns why): nothing of it is written or acknowledged, its partitions' in-memory states
are reloaded from the local store, and the records are read again by whoever owns them.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Any

from stream import faust_compat

POLL_S = 0.05  # while the lease waits for a heartbeat reply
MAX_WAIT_SESSIONS = 3  # no heartbeat reply for this many sessions: the batch is dropped


class Fence:
    """The lease of one worker's group membership (``hold`` before every write)."""

    def __init__(
        self,
        coordinator: Callable[[], Any | None],
        *,
        session_s: float,
        heartbeat_s: float,
        rebalance_s: float | None = None,
    ) -> None:
        """``coordinator``: the consumer's aiokafka group coordinator, None before it
        started (``faust_compat.group_coordinator``); ``rebalance_s``: the group's
        rebalance timeout (a member that has not rejoined by then is removed)."""
        if heartbeat_s >= session_s:
            raise ValueError("the heartbeat interval must be shorter than the session")
        self._find = coordinator
        # the broker keeps the member at least this long after an answered request's send
        self.member_s = session_s if rebalance_s is None else min(session_s, rebalance_s)
        self.lease_s = session_s - heartbeat_s
        self.max_wait_s = session_s * MAX_WAIT_SESSIONS
        self._renewed = -math.inf  # time.monotonic() the last answered request was sent
        self._coordinator: Any = None

    def renewed(self, sent: float) -> None:
        """A SyncGroup or heartbeat sent at ``sent`` was answered: still a member."""
        if sent > self._renewed:
            self._renewed = sent

    def watch(self) -> Any:
        """Watch the coordinator's replies (call before a join: its SyncGroup renews the
        lease); the coordinator, None before the consumer started."""
        if self._coordinator is None:
            coordinator = self._find()
            if coordinator is not None:
                faust_compat.watch_membership(coordinator, self.renewed)
                self._coordinator = coordinator
        return self._coordinator

    def lost(self, generation: int) -> str | None:
        """Why the worker no longer holds ``generation`` (None: it may, or may soon)."""
        coordinator = self.watch()
        if coordinator is None:
            return "the consumer is not started"
        now = faust_compat.membership(coordinator)
        if now.generation != generation or not now.member_id:
            return f"generation {generation} is over (now {now.generation})"
        if now.rejoining:
            return f"generation {generation} is ending (a rebalance is due)"
        return None

    def held(self, generation: int) -> bool:
        """Whether the worker is certainly still a member of ``generation`` now, so no
        other worker can own its partitions yet: the broker cannot have expired it before
        the last answered request's send time plus the session, and a rebalance forms the
        next generation only after this member rejoined (its revoke handler runs first) or
        its rebalance timeout passed. A rebalance that is only due still counts (unlike
        ``lost``)."""
        coordinator = self.watch()
        if coordinator is None:
            return False
        now = faust_compat.membership(coordinator)
        return now.generation == generation and bool(now.member_id) and self.age() < self.member_s

    def age(self) -> float:
        """Seconds since the last answered SyncGroup or heartbeat was sent."""
        return time.monotonic() - self._renewed

    async def hold(self, generation: int) -> str | None:
        """Wait until the lease on ``generation`` is current; None, or why it is lost."""
        waited = 0.0
        while True:
            reason = self.lost(generation)
            if reason is not None:
                return reason
            age = self.age()
            if age < self.lease_s:
                return None
            if waited >= self.max_wait_s:
                return f"no heartbeat reply for {age:.1f} s"
            await asyncio.sleep(POLL_S)
            waited += POLL_S
