"""The cross-worker merge: the ingress processes' spool backlogs reach Kafka by arrival time.

Each worker process spools into its own segment and forwards it itself. After a broker
outage every worker holds a backlog covering the whole outage; forwarded one after the
other, the second worker's oldest events would reach Kafka behind the first worker's
newest ones, as late for the stream as the outage was long.

So each forwarder publishes its *head*, the arrival time of its oldest event not yet
forwarded, in ``<spool_dir>/heads/<process>``, and forwards only events that arrived no
later than the other processes' oldest head plus ``slack_ms``. The process holding the
oldest event may always forward it, so the merge always progresses. A head file not
rewritten for ``stale_s`` (a dead or stuck process) is ignored, then deleted. A process
held back for ``MAX_HOLD_S`` by a gate that has not moved (the older events are not being
forwarded: that process is alive but stuck) stops waiting and forwards its own until it
has caught up (``Merge``). A gate that moves is waited for however long it takes: a
forwarder slowed by load is still draining, and forwarding past it would put its events
behind newer ones by the outage's length, past the stream's grace.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger("ingest.forwarder")

# Waiting for other processes' older events ends after this long (one stuck process
# must not hold every other one's spool back): forwarding goes on out of merge order.
MAX_HOLD_S = 5.0

_WIDTH = 20  # a head is written in place, fixed width: "-" (no backlog) or milliseconds
_NONE = b"-".ljust(_WIDTH)


class Heads:
    """This process's head file and the gate the other heads put on forwarding."""

    def __init__(self, spool_dir: Path, *, slack_ms: int = 1000, stale_s: float = 10.0) -> None:
        self.directory = spool_dir / "heads"
        self.directory.mkdir(parents=True, exist_ok=True)
        self.slack_ms = slack_ms
        self.stale_s = stale_s
        self.name = f"{time.time_ns():020d}-{os.getpid()}"
        self._fd = os.open(self.directory / self.name, os.O_RDWR | os.O_CREAT, 0o600)
        self.publish(None)

    def publish(self, oldest_ms: int | None) -> None:
        """Write this process's head (None: nothing waits to be forwarded)."""
        data = _NONE if oldest_ms is None else str(oldest_ms).encode().ljust(_WIDTH)
        os.pwrite(self._fd, data, 0)  # also the heartbeat: the mtime moves

    def gate_ms(self) -> int | None:
        """Latest arrival time this process may forward now; None when nothing limits it."""
        low: int | None = None
        now = time.time()
        try:
            entries = list(os.scandir(self.directory))
        except FileNotFoundError:
            return None
        for entry in entries:
            if entry.name == self.name:
                continue
            try:
                age = now - entry.stat().st_mtime
                if age > self.stale_s:
                    if age > 6 * self.stale_s:
                        os.unlink(entry.path)  # a dead process's head
                    continue
                with open(entry.path, "rb") as fh:
                    raw = fh.read(_WIDTH).strip()
            except OSError:
                continue
            if not raw.isdigit():
                continue  # "-": no backlog there (or a torn write: ignore this once)
            head = int(raw)
            if low is None or head < low:
                low = head
        return None if low is None else low + self.slack_ms

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)
        with contextlib.suppress(OSError):
            os.unlink(self.directory / self.name)


class Merge:
    """The gate one forwarder's pass applies, and how long the gate has held it back."""

    def __init__(self, heads: Heads | None) -> None:
        self.heads = heads
        self._held_since: float | None = None  # waiting for other processes' older events
        self._last_gate: int | None = None  # the gate at the last pass
        self._unmerged = False  # waited MAX_HOLD_S: forward without the gate until caught up

    def gate(self, now: float) -> int | None:
        """Latest spool time to forward now, from the other processes' heads."""
        if self.heads is None or self._unmerged:
            return None
        gate = self.heads.gate_ms()
        if gate != self._last_gate:
            # the older events are moving (or gone): wait for them afresh
            self._last_gate = gate
            if self._held_since is not None:
                self._held_since = now
            return gate
        if gate is None or self._held_since is None or now - self._held_since < MAX_HOLD_S:
            return gate
        log.warning(
            "another ingress process has not forwarded its older spooled events for "
            f"{MAX_HOLD_S:.0f} s; forwarding this process's own without waiting for them"
        )
        self._held_since = None
        self._unmerged = True
        return None

    def held(self, blocked: bool) -> None:
        """A segment's pass ended: ``blocked`` if the gate stopped it with nothing to send."""
        if blocked:
            if self._held_since is None:
                self._held_since = time.monotonic()
        else:
            self._held_since = None

    def caught_up(self) -> None:
        """This process's own segment is drained: merge again from now on."""
        self._unmerged = False

    def publish(self, heads_ms: Iterable[int | None]) -> None:
        """This process's head: the oldest of its segments' heads."""
        if self.heads is not None:
            self.heads.publish(min((h for h in heads_ms if h is not None), default=None))
