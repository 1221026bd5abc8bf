"""Drains the spool into Kafka, oldest segment first and in order within a segment.

While the spool holds events not yet handed to the producer, the publisher spools new
events behind them (the ledger's backlog); a pass that has handed everything over ends
it, so Kafka receives this process's events in the order they arrived. With ``Heads``
the forwarders of several processes merge their backlogs by arrival time (``Merge``).

A ``Put`` is forwarded only once its earlier attempt is decided: still in the producer
(``FLYING``) blocks the segment until the delivery report arrives; delivered late means
it is skipped; failed means it is sent again. Each forwarded record gets a ``Done`` frame,
so a restart resumes where the last run stopped. Segments of dead processes (their
``flock`` is free) are claimed and drained too, then deleted.

Calls go one way: the forwarder uses the spool writer, its ledger and the merge, and
hands records to ``send`` (the producer's); none of them calls the forwarder.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ingest.envelope import Envelope
from ingest.spool.frames import Done, Put, read_frames
from ingest.spool.ledger import InFlight
from ingest.spool.merge import Heads, Merge
from ingest.spool.segments import Segment
from ingest.spool.writer import Spool

log = logging.getLogger("ingest.forwarder")

# send(envelope, on_result) hands one record to the producer; on_result(ok) is called later.
Send = Callable[[Envelope, Callable[[bool], None]], None]

# Retry a failed batch after at most this long: after an outage every worker's forwarder
# resumes within about a second, so their backlogs reach Kafka close together.
MAX_BACKOFF_S = 1.0


class _Batch:
    """Waits for the delivery reports of one forwarded batch."""

    def __init__(self, size: int) -> None:
        self.results: dict[int, bool] = {}
        self._size = size
        self._cond = threading.Condition()

    def callback(self, seq: int) -> Callable[[bool], None]:
        def on_result(ok: bool) -> None:
            with self._cond:
                self.results[seq] = ok
                if len(self.results) >= self._size:
                    self._cond.notify_all()

        return on_result

    def wait(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.results) >= self._size, timeout)


class Forwarder(threading.Thread):
    """One per process; runs until ``stop()`` (or is stepped by ``step()``)."""

    def __init__(
        self,
        spool: Spool,
        send: Send,
        *,
        batch_size: int = 1000,
        orphan_scan_seconds: float = 2.0,
        heads: Heads | None = None,
    ) -> None:
        super().__init__(name="spool-forwarder", daemon=True)
        self._spool = spool
        self._ledger = spool.ledger
        self._send = send
        self._batch_size = batch_size
        self._orphan_scan = orphan_scan_seconds
        self._stopping = threading.Event()
        self._claimed: dict[Path, Segment] = {}
        self._last_scan = 0.0
        self._merge = Merge(heads)
        self.forwarded = 0

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self._spool.wakeup.set()
        if self.is_alive():
            self.join(timeout)
        else:
            self._release_claims()

    def run(self) -> None:
        backoff = 0.2
        while not self._stopping.is_set():
            try:
                outcome = self.step()
            except Exception:
                log.exception("spool forwarder pass failed")
                outcome = "failed"
            if outcome == "failed":
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                continue
            backoff = 0.2
            if outcome == "idle":
                self._spool.wakeup.wait(0.5)
                self._spool.wakeup.clear()
            elif outcome == "blocked":
                self._stopping.wait(0.05)
        self._release_claims()

    def step(self) -> str:
        """One pass over the claimed orphans, then this process's own segment:
        idle, progress, blocked or failed."""
        now = time.monotonic()
        if now - self._last_scan >= self._orphan_scan:
            self._last_scan = now
            self._claim_orphans()
        outcome = self._pass(self._merge.gate(now))
        self._merge.publish(s.head_ms for s in (self._spool.segment, *self._claimed.values()))
        return outcome

    def _pass(self, gate: int | None) -> str:
        for path, seg in list(self._claimed.items()):
            outcome = self._drain(seg, gate)
            if outcome == "idle":
                self._finish_orphan(path, seg)
                continue
            return outcome
        own = self._spool.segment
        outcome = self._drain(own, gate)
        if outcome == "idle":
            self._merge.caught_up()
            self._spool.rotate_if_drained(own)
        return outcome

    # --- orphans -------------------------------------------------------------------
    def _claim_orphans(self) -> None:
        for path in self._spool.orphans():
            if path in self._claimed:
                continue
            seg = self._spool.claim(path)
            if seg is None:
                continue
            puts: set[int] = set()
            for _, frame in read_frames(seg.fd, 0, seg.log.committed):
                if isinstance(frame, Done):
                    seg.done.add(frame.seq)
                else:
                    puts.add(frame.seq)
            pending = len(puts - seg.done)
            self._ledger.claimed(pending)
            self._claimed[path] = seg
            log.info(
                "claimed spool segment of a stopped process",
                extra={"segment": path.name, "pending": pending},
            )

    def _finish_orphan(self, path: Path, seg: Segment) -> None:
        with contextlib.suppress(OSError):
            path.unlink()
        seg.close()
        del self._claimed[path]
        log.info("spool segment drained", extra={"segment": path.name})

    def _release_claims(self) -> None:
        for seg in self._claimed.values():
            with contextlib.suppress(OSError):
                seg.log.flush()
            seg.close()
        self._claimed.clear()

    # --- draining ------------------------------------------------------------------
    def _drain(self, seg: Segment, gate: int | None = None) -> str:
        """Forward the next batch of ``seg`` spooled up to ``gate``: idle, progress,
        blocked or failed."""
        seg.log.flush()
        end = seg.log.committed
        seg.head_ms = None
        if seg.cursor >= end:
            if seg.own:
                self._caught_up(seg, end)
            return "idle"
        todo: list[tuple[int, Envelope]] = []
        stop_at = seg.cursor
        blocked = False
        held_at: int | None = None  # spool time of the Put the gate stopped at
        skipped = 0
        for pos, frame in read_frames(seg.fd, seg.cursor, end):
            if isinstance(frame, Done):
                seg.done.add(frame.seq)
            elif isinstance(frame, Put) and frame.seq not in seg.done:
                state = self._ledger.take(seg.path.name, frame.seq) if seg.own else None
                if state is InFlight.DELIVERED:
                    seg.done.add(frame.seq)
                    skipped += 1
                else:
                    if seg.head_ms is None:
                        seg.head_ms = frame.at_ms
                    if state is InFlight.FLYING:
                        blocked = True
                        break
                    if gate is not None and frame.at_ms > gate:
                        held_at = frame.at_ms  # another process holds older events first
                        break
                    todo.append((frame.seq, frame.env))
            stop_at = pos
            if len(todo) >= self._batch_size:
                break
        if skipped:
            self._ledger.drained(skipped)
        held = held_at is not None
        self._merge.held(held and not todo)
        handed_all = seg.own and not blocked and not held and stop_at == end
        if not todo:
            moved = stop_at != seg.cursor
            seg.cursor = stop_at
            if blocked or held:
                return "progress" if moved else "blocked"
            if handed_all:
                self._caught_up(seg, end)
            return "progress" if moved else "idle"
        # Hand-over ends the backlog only while the broker takes batches: a batch that
        # then failed would be re-sent after events produced directly meanwhile.
        early = end if handed_all and self._ledger.broker_ok else None
        if self._forward(seg, todo, early):
            seg.cursor = stop_at
            if held or handed_all:
                seg.head_ms = held_at  # the next one waiting (None: nothing waits)
            return "progress"
        return "failed"

    def _caught_up(self, seg: Segment, end: int) -> None:
        if self._spool.caught_up(seg, end):
            log.info("spool handed over to the producer; publishing directly again")

    def _forward(
        self, seg: Segment, todo: list[tuple[int, Envelope]], end: int | None = None
    ) -> bool:
        """Produce ``todo`` and wait for its reports; ``end``: this reaches the segment's end."""
        batch = _Batch(len(todo))
        for seq, env in todo:
            self._send(env, batch.callback(seq))
        if end is not None:
            self._caught_up(seg, end)
        while not batch.wait(1.0):
            if self._stopping.is_set() and not batch.wait(5.0):
                break
        delivered = [seq for seq, ok in batch.results.items() if ok]
        for seq in delivered:
            self._spool.mark_done(seg, seq)
        seg.log.flush()
        self._ledger.drained(len(delivered))
        self.forwarded += len(delivered)
        all_delivered = len(delivered) == len(todo)
        self._ledger.forwarded(all_delivered)
        return all_delivered
