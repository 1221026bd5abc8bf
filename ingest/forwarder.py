"""Drains the spool into Kafka, oldest segment first and in order within a segment.

A ``Put`` is forwarded only once its earlier attempt is decided: still in the producer
(``FLYING``) blocks the segment until the delivery report arrives; delivered late means
it is skipped; failed means it is sent again. Each forwarded record gets a ``Done`` frame,
so a restart resumes where the last run stopped. Segments of dead processes (their
``flock`` is free) are claimed and drained too, then deleted.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ingest.spool import DELIVERED, FLYING, Done, Envelope, Put, Segment, Spool, read_frames

log = logging.getLogger("ingest.forwarder")

# send(envelope, on_result) hands one record to the producer; on_result(ok) is called later.
Send = Callable[[Envelope, Callable[[bool], None]], None]


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
    """One per process; runs until ``stop()``."""

    def __init__(
        self,
        spool: Spool,
        send: Send,
        *,
        batch_size: int = 1000,
        orphan_scan_seconds: float = 2.0,
    ) -> None:
        super().__init__(name="spool-forwarder", daemon=True)
        self._spool = spool
        self._send = send
        self._batch_size = batch_size
        self._orphan_scan = orphan_scan_seconds
        self._stopping = threading.Event()
        self._claimed: dict[Path, Segment] = {}
        self._last_scan = 0.0
        self.forwarded = 0

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self._spool.wakeup.set()
        if self.is_alive():
            self.join(timeout)

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
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.2
            if outcome == "idle":
                self._spool.wakeup.wait(0.5)
                self._spool.wakeup.clear()
            elif outcome == "blocked":
                self._stopping.wait(0.05)
        self._release_claims()

    def step(self) -> str:
        """One pass over the claimed orphans, then this process's own segment."""
        now = time.monotonic()
        if now - self._last_scan >= self._orphan_scan:
            self._last_scan = now
            self._claim_orphans()
        for path, seg in list(self._claimed.items()):
            outcome = self._drain(seg)
            if outcome == "idle":
                self._finish_orphan(path, seg)
                continue
            return outcome
        own = self._spool.segment
        outcome = self._drain(own)
        if outcome == "idle":
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
            self._spool.add_pending(pending)
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
    def _drain(self, seg: Segment) -> str:
        """Forward the next batch of ``seg``: idle, progress, blocked or failed."""
        seg.log.flush()
        end = seg.log.committed
        if seg.cursor >= end:
            return "idle"
        todo: list[tuple[int, Envelope]] = []
        stop_at = seg.cursor
        blocked = False
        skipped = 0
        for pos, frame in read_frames(seg.fd, seg.cursor, end):
            if isinstance(frame, Done):
                seg.done.add(frame.seq)
            elif isinstance(frame, Put) and frame.seq not in seg.done:
                state = self._spool.take_inflight(seg, frame.seq) if seg.own else None
                if state == FLYING:
                    blocked = True
                    break
                if state == DELIVERED:
                    seg.done.add(frame.seq)
                    skipped += 1
                else:
                    todo.append((frame.seq, frame.env))
            stop_at = pos
            if len(todo) >= self._batch_size:
                break
        if skipped:
            self._spool.record_drained(skipped)
        if not todo:
            moved = stop_at != seg.cursor
            seg.cursor = stop_at
            if blocked:
                return "progress" if moved else "blocked"
            return "progress" if moved else "idle"
        ok = self._forward(seg, todo)
        if ok:
            seg.cursor = stop_at
            return "progress"
        return "failed"

    def _forward(self, seg: Segment, todo: list[tuple[int, Envelope]]) -> bool:
        batch = _Batch(len(todo))
        for seq, env in todo:
            self._send(env, batch.callback(seq))
        while not batch.wait(1.0):
            if self._stopping.is_set() and not batch.wait(5.0):
                break
        delivered = [seq for seq, ok in batch.results.items() if ok]
        for seq in delivered:
            self._spool.mark_done(seg, seq)
        seg.log.flush()
        self._spool.record_drained(len(delivered))
        self.forwarded += len(delivered)
        return len(delivered) == len(todo)
