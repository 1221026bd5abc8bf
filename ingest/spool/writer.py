"""This process's spool: its own segment, the size cap, rotation, and the ledger.

Request threads ``reserve`` a place for an event still in the producer and ``put``
events (fsynced by group commit); the poll thread ``resolve``s reserved ones when their
report comes; the forwarder reads the segment, marks forwarded Puts ``Done``, rotates
the drained segment and claims dead processes' segments. Every durability state change
goes through ``ledger`` (``ingest.spool.ledger``).
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

from ingest.envelope import Envelope
from ingest.spool import segments
from ingest.spool.frames import Done, Put, encode_frame
from ingest.spool.ledger import Attempt, InFlight, Ledger, Ticket
from ingest.spool.log import SpoolError
from ingest.spool.segments import Segment


class Spool:
    """This process's spool writer plus the bookkeeping the forwarder reads."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.ledger = Ledger()
        self._lock = threading.Lock()  # the segment (rotation) and its seqs; before ledger's
        self._segment: Segment | None = None
        self._others_bytes = 0
        self._others_checked = 0.0
        self.wakeup = threading.Event()

    @property
    def backlog(self) -> bool:
        return self.ledger.backlog

    @property
    def pending_records(self) -> int:
        return self.ledger.pending_records

    # --- writer side -------------------------------------------------------------
    def open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        with self._lock:
            self._segment = segments.create(self.directory)

    @property
    def segment(self) -> Segment:
        if self._segment is None:
            raise RuntimeError("spool is not open")
        return self._segment

    def total_bytes(self) -> int:
        """Bytes on disk in the spool directory (other files rescanned every second)."""
        now = time.monotonic()
        if now - self._others_checked > 1.0:
            own = self._segment.path if self._segment else None
            self._others_bytes = segments.others_bytes(self.directory, own)
            self._others_checked = now
        own_bytes = self._segment.log.committed if self._segment else 0
        return self._others_bytes + own_bytes

    def is_full(self, extra: int = 0) -> bool:
        return self.total_bytes() + extra > self.max_bytes

    def reserve(self, attempt: Attempt | None = None) -> Ticket | None:
        """A seq for an event whose delivery report may still come: its attempt goes
        FLYING. None if the report came first (nothing to spool for it)."""
        with self._lock:
            seg = self.segment
            ticket = Ticket(seg, seg.next_seq, attempt or Attempt())
            if not self.ledger.fly(ticket):
                return None
            seg.next_seq += 1
            seg.writers += 1
            return ticket

    def put(self, env: Envelope, ticket: Ticket | None = None) -> None:
        """Append an event and fsync it (group commit); raises ``SpoolError``."""
        if ticket is None:
            with self._lock:
                seg = self.segment
                seq = seg.next_seq
                seg.next_seq += 1
                seg.writers += 1
                self.ledger.queue_behind()
        else:
            seg, seq = ticket.segment, ticket.seq
        self.ledger.spooled()
        try:
            seg.log.append(encode_frame(Put(seq, env, time.time_ns() // 1_000_000)))
        except SpoolError:
            self.ledger.spooled(-1)
            with self._lock:
                seg.writers -= 1
                if ticket is not None:
                    self.ledger.drop(ticket)
            raise
        with self._lock:
            seg.writers -= 1
            if ticket is not None:
                self._written(ticket)
        self.wakeup.set()

    def _written(self, ticket: Ticket) -> None:
        """Its Put is in the segment; a late "delivered" report that came before it left
        the Done frame to be written now, after the Put (under ``_lock``)."""
        attempt = ticket.attempt
        attempt.written = True
        if attempt.state is InFlight.DELIVERED:
            ticket.segment.log.append(encode_frame(Done(ticket.seq)), durable=False)

    def cancel(self, ticket: Ticket) -> None:
        """Give a reserved seq back without writing it (the spool refused the event)."""
        with self._lock:
            self.ledger.drop(ticket)
            ticket.segment.writers -= 1

    def resolve(self, ticket: Ticket, delivered: bool) -> None:
        """The delivery report of a spooled in-flight event arrived (poll thread)."""
        with self._lock:  # rotation checks under this lock: the segment stays open
            if not self.ledger.land(ticket, delivered):
                return  # cancelled: the event was refused, nothing was spooled
            if delivered and ticket.attempt.written:
                # Only buffered here (no I/O); written with the next commit. A Put not
                # written yet gets its Done after it (``_written``): a Done read before
                # its Put would hide the Put from the forwarder, which then never counted
                # it drained (the pending gauge stuck at 1) nor forgot its attempt.
                ticket.segment.log.append(encode_frame(Done(ticket.seq)), durable=False)
        self.wakeup.set()

    # --- forwarder side ----------------------------------------------------------
    def mark_done(self, seg: Segment, seq: int) -> None:
        seg.done.add(seq)
        seg.log.append(encode_frame(Done(seq)), durable=False)

    def caught_up(self, seg: Segment, end: int) -> bool:
        """Every Put of this process's segment up to ``end`` is in the producer: produce
        new events directly again, unless more was committed meanwhile. True if it changed.

        A Put still between its write and its commit is forwarded on the next pass, a few
        milliseconds behind events produced directly from now on.
        """
        with self._lock:
            if not self.ledger.backlog or seg is not self._segment or seg.log.committed != end:
                return False
            return self.ledger.caught_up()

    def rotate_if_drained(self, seg: Segment) -> bool:
        """Replace this process's drained segment with a fresh one and delete it."""
        with self._lock:
            if seg is not self._segment or seg.writers or seg.log.committed == 0:
                return False
            if not seg.log.idle() or seg.cursor != seg.log.committed:
                return False
            if self.ledger.holds(seg.path.name):
                return False
            self._segment = segments.create(self.directory)
        with contextlib.suppress(OSError):
            seg.path.unlink()
        seg.close()
        return True

    def orphans(self) -> list[Path]:
        """Segment files of other processes, oldest first (live ones fail to lock later)."""
        return segments.others(self.directory, self._segment.path if self._segment else None)

    def claim(self, path: Path) -> Segment | None:
        return segments.claim(path)

    def close(self) -> None:
        with self._lock:
            seg, self._segment = self._segment, None
        if seg is not None:
            with contextlib.suppress(SpoolError):
                seg.log.flush()
            drained = seg.cursor == seg.log.committed and not self.ledger.holds(seg.path.name)
            if drained:
                with contextlib.suppress(OSError):
                    seg.path.unlink()
            seg.close()
