"""Durable publishing: 200 only after the broker acked the record or the spool fsynced it.

One producer per process (``ingest.producer``), created lazily in the process that uses
it (so after a pre-fork server forks). A request waits for its own report up to
``publish_timeout_ms``; past that, or on a failure or a full local queue, the record is
spooled. A record spooled while still inside the producer goes ``FLYING`` in the
spool's ledger: if its report later says delivered, the forwarder skips it, so it is in
Kafka once, not twice.

Once anything is spooled, new events are spooled behind it without waiting for acks
(the ledger's backlog) until the forwarder has handed the whole spool to the producer.
So Kafka receives each process's events in the order they arrived, and events held in
the spool through a broker outage are not overtaken by newer ones: the stream counts
them in their windows instead of finding them late.

Calls go one way: the publisher drives the producer, the spool writer (and its ledger)
and the forwarder; the forwarder hands records to the producer's ``send``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

from confluent_kafka import KafkaError, KafkaException, Message

from groupwatch.contracts import Settings
from ingest import metrics
from ingest.envelope import Envelope
from ingest.errors import SpoolFull
from ingest.logs import RateLimitedLog
from ingest.producer import KafkaProducer, Outbox, new_producer, producer_config
from ingest.spool.forwarder import Forwarder
from ingest.spool.ledger import Attempt, InFlight, Ledger, Ticket
from ingest.spool.log import SpoolError
from ingest.spool.merge import Heads
from ingest.spool.writer import Spool

log = logging.getLogger("ingest.publisher")
# One line per 503 would cost without bound while the spool is full: rate-limited.
_full_log = RateLimitedLog(log, "answering 503")

Outcome = Literal["delivered", "spooled"]

# getpid() is a system call; the hot path compares against this copy, reset after fork.
_this_pid = os.getpid()


def _after_fork() -> None:
    global _this_pid
    _this_pid = os.getpid()


os.register_at_fork(after_in_child=_after_fork)

_DELIVERED, _WAITING = InFlight.DELIVERED, InFlight.WAITING


class Publisher:
    """Per-process producer + spool + forwarder, started on first use in each process.

    ``make_producer`` builds the producer from its configuration (a test passes a
    scripted one); with ``forward_thread=False`` the forwarder is not started as a
    thread and its owner steps it (``forwarder.step()``).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        make_producer: Callable[[dict[str, Any]], KafkaProducer] = new_producer,
        forward_thread: bool = True,
    ) -> None:
        self._settings = settings
        self._timeout = settings.publish_timeout_ms / 1000
        self._make_producer = make_producer
        self._forward_thread = forward_thread
        self._pid: int | None = None
        self._start_lock = threading.Lock()
        self._outbox: Outbox | None = None
        self._spool: Spool | None = None
        self._ledger: Ledger | None = None
        self.forwarder: Forwarder | None = None
        self._heads: Heads | None = None

    # --- lifecycle -----------------------------------------------------------------
    def start(self) -> None:
        """Create this process's producer, spool segment, poll thread and forwarder."""
        with self._start_lock:
            if self._pid == os.getpid():
                return
            producer = self._make_producer(producer_config(self._settings))
            self._outbox = Outbox(producer, self._flush_metrics, metrics.FLUSH_INTERVAL_S)
            self._spool = Spool(self._settings.spool_path, self._settings.spool_max_bytes)
            self._spool.open()
            self._ledger = self._spool.ledger
            self._outbox.start()
            self._heads = Heads(self._settings.spool_path)
            self.forwarder = Forwarder(self._spool, self._outbox.send, heads=self._heads)
            if self._forward_thread:
                self.forwarder.start()
            self._pid = os.getpid()
            log.info("publisher started", extra={"spool_dir": str(self._settings.spool_path)})

    def _ensure(self) -> tuple[Outbox, Spool, Ledger]:
        if self._pid != _this_pid:
            self.start()
        assert self._outbox is not None and self._spool is not None and self._ledger is not None
        return self._outbox, self._spool, self._ledger

    def close(self, timeout: float = 10.0) -> None:
        """Graceful stop: forwarder, then producer flush, then the spool."""
        if self._pid != os.getpid():
            return
        if self.forwarder is not None:
            self.forwarder.stop(timeout)
        if self._outbox is not None:
            remaining = self._outbox.flush(timeout)
            if remaining:
                log.warning("producer closed with undelivered records", extra={"count": remaining})
            self._outbox.stop()
        self._flush_metrics()
        if self._spool is not None:
            self._spool.close()
        if self._heads is not None:
            self._heads.close()
        self._pid = None
        log.info("publisher closed")

    def _flush_metrics(self) -> None:
        metrics.flush()
        if self._spool is not None:
            metrics.SPOOL_RECORDS.set(self._spool.pending_records)

    # --- publishing ----------------------------------------------------------------
    def _spooling_starts(self, why: str) -> None:
        log.warning("%s; spooling until the spool is handed to the producer", why)

    def publish(self, env: Envelope) -> Outcome:
        """Store one record durably. Raises ``SpoolFull`` (503) when nothing can keep it."""
        outbox, spool, ledger = self._ensure()
        started = time.perf_counter()
        if ledger.backlog:  # behind spooled events: keep the arrival order
            return self._finish(spool, env, None, started)
        attempt = Attempt()
        reported = outbox.reported

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            ok = err is None
            ticket = ledger.reported(attempt, ok)
            if ticket is not None:
                spool.resolve(ticket, ok)
            # Not released here: confluent-kafka takes and drops the GIL around every
            # report, so a request woken mid-batch would fight the poll thread for the
            # GIL. The poll loop wakes the whole batch once poll() has returned.
            reported.append(attempt.done)

        try:
            outbox.produce(env, on_delivery)
        except (BufferError, KafkaException) as exc:
            if not ledger.backlog:
                self._spooling_starts(f"produce refused ({exc})")
            return self._finish(spool, env, None, started)
        attempt.done.acquire(timeout=self._timeout)
        ticket: Ticket | None = None
        starts_backlog = not ledger.backlog
        if attempt.state is _WAITING:
            # Still inside the producer: spool it, and let the report decide later.
            ticket = spool.reserve(attempt)
        if attempt.state is _DELIVERED:  # in time, or just before the reservation
            metrics.observe_publish("delivered", time.perf_counter() - started)
            return "delivered"
        if starts_backlog:  # logged outside the lock the delivery reports take
            why = "broker did not ack in time" if ticket is not None else "delivery failed"
            self._spooling_starts(why)
        return self._finish(spool, env, ticket, started)

    def _finish(
        self, spool: Spool, env: Envelope, ticket: Ticket | None, started: float
    ) -> Outcome:
        outcome = self._spool_put(spool, env, ticket)
        metrics.observe_publish(outcome, time.perf_counter() - started)
        return outcome

    def _spool_put(self, spool: Spool, env: Envelope, ticket: Ticket | None) -> Outcome:
        size = len(env.value) + 64
        if spool.is_full(size):
            if ticket is not None:
                spool.cancel(ticket)
            metrics.SPOOL_FULL.inc()
            _full_log.log(
                logging.ERROR,
                "spool is full: answering 503, event not stored",
                spool_bytes=spool.total_bytes(),
                spool_max_bytes=spool.max_bytes,
            )
            raise SpoolFull("spool is full")
        try:
            spool.put(env, ticket)
        except SpoolError as exc:
            metrics.SPOOL_FULL.inc()
            _full_log.log(logging.ERROR, "spool write failed: answering 503", error=str(exc))
            raise SpoolFull(str(exc)) from exc
        metrics.SPOOL_BYTES.set(spool.total_bytes())
        return "spooled"

    # --- health --------------------------------------------------------------------
    def broker_reachable(self, timeout: float = 0.5) -> bool:
        outbox, _, _ = self._ensure()
        return outbox.reachable(timeout)

    def spool_writable(self) -> bool:
        _, spool, _ = self._ensure()
        # room for one more event of the largest accepted size
        room = self._settings.max_body_bytes
        return os.access(spool.directory, os.W_OK) and not spool.is_full(room)

    def stats(self) -> dict[str, int]:
        _, spool, _ = self._ensure()
        with contextlib.suppress(OSError):
            metrics.SPOOL_BYTES.set(spool.total_bytes())
        return {
            "spool_records": spool.pending_records,
            "forwarded": self.forwarder.forwarded if self.forwarder else 0,
        }
