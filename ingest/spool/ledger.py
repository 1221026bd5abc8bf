"""The durability state of one worker process, in one place.

*In-flight states.* A request's record inside the producer is an ``Attempt`` in one of
the ``InFlight`` states (diagram in docs/INGEST.md):

* ``WAITING``: produced; its request waits up to the publish timeout for the report.
* ``DELIVERED`` / ``FAILED``: the delivery report came. While the request still
  waits, it answers "delivered" or spools the event. After the timeout (from
  ``FLYING``) the forwarder skips the event's ``Put`` (a ``Done`` frame is written) or
  sends it.
* ``FLYING``: the wait timed out and the event is spooled (a ``Ticket``: its segment
  and seq) while the producer may still deliver it; the forwarder waits for its report.

A ``FLYING`` attempt is in the ledger until the forwarder ``take``s its decided state.
A record is thereby in Kafka once, through the producer or through the forwarder.

*Backlog.* While anything spooled is not yet handed to the producer, new events are
spooled behind it (``backlog``) so Kafka gets them in arrival order. It is set when an
attempt goes ``FLYING``, an event is spooled, a dead process's segment with pending
events is claimed, or a forwarded batch fails; it is cleared only by ``caught_up``.
``broker_ok`` says whether the last forwarded batch was delivered in full (and no
failed report was taken since): only then may the forwarder end the backlog as soon as
it has handed a batch over, before the batch's reports.
"""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass

from ingest.spool.segments import Segment


class InFlight(enum.Enum):
    WAITING = "waiting"
    FLYING = "flying"
    DELIVERED = "delivered"
    FAILED = "failed"


@dataclass(frozen=True)
class Ticket:
    """A place in this process's spool reserved for an event still in the producer."""

    segment: Segment
    seq: int
    attempt: Attempt

    @property
    def key(self) -> tuple[str, int]:
        return (self.segment.path.name, self.seq)


class Attempt:
    """One record inside the producer, from ``produce`` until its report is used."""

    __slots__ = ("done", "state", "ticket", "written")

    def __init__(self) -> None:
        # Released once the delivery report ran: a bare lock is the cheapest wait.
        self.done = threading.Lock()
        self.done.acquire()
        self.state = InFlight.WAITING
        self.ticket: Ticket | None = None
        # its Put frame is in the segment (set by the spool writer, under its lock): a
        # Done frame for it may only follow the Put, never precede it
        self.written = False


class Ledger:
    """In-flight attempts, the count of pending spooled events and the backlog."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flying: dict[tuple[str, int], Attempt] = {}
        self.pending_records = 0  # Puts of this process not yet known to be in Kafka
        self.backlog = False
        self.broker_ok = True

    # --- in-flight transitions ---------------------------------------------------------
    def reported(self, attempt: Attempt, delivered: bool) -> Ticket | None:
        """Its delivery report (poll thread): WAITING → DELIVERED | FAILED. A FLYING
        attempt's ticket is returned: the writer resolves it (``land``)."""
        with self._lock:
            if attempt.state is InFlight.WAITING:
                attempt.state = InFlight.DELIVERED if delivered else InFlight.FAILED
                return None
            return attempt.ticket

    def fly(self, ticket: Ticket) -> bool:
        """Its request stopped waiting and spools it: WAITING → FLYING; backlog on.
        False if the report came first (the attempt is decided)."""
        attempt = ticket.attempt
        with self._lock:
            if attempt.state is not InFlight.WAITING:
                return False
            attempt.state = InFlight.FLYING
            attempt.ticket = ticket
            self._flying[ticket.key] = attempt
            self.backlog = True
            return True

    def land(self, ticket: Ticket, delivered: bool) -> bool:
        """The report of a spooled attempt: FLYING → DELIVERED | FAILED. False if the
        spool refused the event meanwhile (``drop``)."""
        with self._lock:
            if self._flying.get(ticket.key) is not ticket.attempt:
                return False
            ticket.attempt.state = InFlight.DELIVERED if delivered else InFlight.FAILED
            return True

    def drop(self, ticket: Ticket) -> None:
        """The spool refused the event (full, write failed): forget the attempt."""
        with self._lock:
            self._flying.pop(ticket.key, None)

    def take(self, segment: str, seq: int) -> InFlight | None:
        """The state of a Put still in the producer (None: not in flight), forgetting
        it once decided. A FAILED one also means the broker is failing."""
        with self._lock:
            attempt = self._flying.get((segment, seq))
            if attempt is None:
                return None
            state = attempt.state
            if state is not InFlight.FLYING:
                del self._flying[(segment, seq)]
                if state is InFlight.FAILED:
                    self.broker_ok = False
            return state

    def holds(self, segment: str) -> bool:
        """Whether an attempt spooled in ``segment`` is still in the ledger."""
        with self._lock:
            return any(name == segment for name, _ in self._flying)

    # --- pending count and backlog -----------------------------------------------------
    def queue_behind(self) -> None:
        """An event is being spooled: backlog on."""
        with self._lock:
            self.backlog = True

    def spooled(self, count: int = 1) -> None:
        """A Put is about to be written (counted first: the forwarder may read and drain
        it before its writer returns); ``-1`` when the write failed."""
        with self._lock:
            self.pending_records += count

    def claimed(self, count: int) -> None:
        """A dead process's segment with ``count`` pending Puts is ours: backlog on."""
        with self._lock:
            self.pending_records += count
            if count:
                self.backlog = True

    def drained(self, count: int) -> None:
        """``count`` spooled Puts are in Kafka (forwarded, or delivered late)."""
        with self._lock:
            self.pending_records = max(0, self.pending_records - count)

    def forwarded(self, all_delivered: bool) -> None:
        """A forwarded batch's reports are in; a failed one keeps the backlog (its events
        are re-sent first, new ones queue behind them)."""
        with self._lock:
            self.broker_ok = all_delivered
            if not all_delivered:
                self.backlog = True

    def caught_up(self) -> bool:
        """Every spooled Put is in the producer: backlog off. True if it was on."""
        with self._lock:
            was, self.backlog = self.backlog, False
            return was
