"""Durable publishing: 200 only after the broker acked the record or the spool fsynced it.

One confluent-kafka producer per process, created lazily in the process that uses it
(so after a pre-fork server forks), with a poll thread for delivery reports. A request
waits for its own report up to ``publish_timeout_ms``; past that, or on a failure or a
full local queue, the record is spooled. A record spooled while still inside the
producer is tracked: if its report later says delivered, the forwarder skips it, so it
is in Kafka once, not twice.

Once anything is spooled, new events are spooled behind it without waiting for acks
(``Spool.backlog``) until the forwarder has handed the whole spool to the producer. So
Kafka receives each process's events in the order they arrived, and events held in the
spool through a broker outage are not overtaken by newer ones: the stream counts them in
their windows instead of finding them late.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Literal

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from groupwatch.contracts import COMMAND_HEADER, Settings
from ingest import metrics
from ingest.errors import SpoolFull
from ingest.forwarder import Forwarder
from ingest.heads import Heads
from ingest.logs import RateLimitedLog
from ingest.spool import Envelope, Spool, SpoolError, Ticket

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


def producer_config(settings: Settings) -> dict[str, Any]:
    """Idempotent, acks=all, small linger; reports decided well inside the 2 s budget."""
    return {
        "bootstrap.servers": settings.bootstrap_servers,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 2,
        "message.timeout.ms": min(settings.publish_timeout_ms + 500, 1900),
        "request.timeout.ms": min(settings.publish_timeout_ms + 500, 1900),
        "socket.connection.setup.timeout.ms": 1000,
        "socket.nagle.disable": True,
        "reconnect.backoff.ms": 100,
        "reconnect.backoff.max.ms": 1000,
        "queue.buffering.max.messages": 200_000,
        "compression.type": "none",
        "client.id": f"groupwatch-ingest-{os.getpid()}",
        "error_cb": _log_client_error,
        "logger": _kafka_log,
        "log.connection.close": False,
    }


_ERROR_LOG_INTERVAL_S = 10.0


class _RateLimit(logging.Filter):
    """Lets one librdkafka log line per facility through every 10 s (outages are loud)."""

    def __init__(self) -> None:
        super().__init__()
        self._last: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        now = time.monotonic()
        args = record.args
        key = str(args[0] if isinstance(args, tuple) and args else record.msg)
        if now - self._last.get(key, -1e9) < _ERROR_LOG_INTERVAL_S:
            return False
        self._last[key] = now
        return True


_kafka_log = logging.getLogger("ingest.kafka")
_kafka_log.addFilter(_RateLimit())
_error_log_times: dict[str, float] = {}


def _log_client_error(err: KafkaError) -> None:
    """Client errors (broker down, ...) logged at most once per 10 s per kind."""
    now = time.monotonic()
    kind = str(err.name())
    if not err.fatal() and now - _error_log_times.get(kind, -1e9) < _ERROR_LOG_INTERVAL_S:
        return
    _error_log_times[kind] = now
    level = logging.ERROR if err.fatal() else logging.WARNING
    log.log(level, "kafka client error", extra={"kafka_error": err.str(), "code": kind})


class _Pending:
    """One request's record inside the producer."""

    __slots__ = ("decided", "delivered", "done", "ticket")

    def __init__(self) -> None:
        # Held until the delivery report arrives: a bare lock is the cheapest wait.
        self.done = threading.Lock()
        self.done.acquire()
        self.decided = False
        self.delivered = False
        self.ticket: Ticket | None = None


class Publisher:
    """Per-process producer + spool + forwarder, started on first use in each process."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._timeout = settings.publish_timeout_ms / 1000
        self._pid: int | None = None
        self._start_lock = threading.Lock()
        self._lock = threading.Lock()
        self._producer: Producer | None = None
        self._spool: Spool | None = None
        self._forwarder: Forwarder | None = None
        self._heads: Heads | None = None
        self._poller: threading.Thread | None = None
        self._running = threading.Event()
        # Requests whose delivery report ran, woken only once the poll call has returned.
        self._reported: deque[_Pending] = deque()

    # --- lifecycle -----------------------------------------------------------------
    def start(self) -> None:
        """Create this process's producer, spool segment, poll thread and forwarder."""
        with self._start_lock:
            if self._pid == os.getpid():
                return
            self._producer = Producer(producer_config(self._settings))
            self._spool = Spool(self._settings.spool_path, self._settings.spool_max_bytes)
            self._spool.open()
            self._running.set()
            self._poller = threading.Thread(target=self._poll, name="kafka-poll", daemon=True)
            self._poller.start()
            self._heads = Heads(self._settings.spool_path)
            self._forwarder = Forwarder(self._spool, self._send_forwarded, heads=self._heads)
            self._forwarder.start()
            self._pid = os.getpid()
            log.info("publisher started", extra={"spool_dir": str(self._settings.spool_path)})

    def _ensure(self) -> tuple[Producer, Spool]:
        if self._pid != _this_pid:
            self.start()
        assert self._producer is not None and self._spool is not None
        return self._producer, self._spool

    def close(self, timeout: float = 10.0) -> None:
        """Graceful stop: forwarder, then producer flush, then the spool."""
        if self._pid != os.getpid():
            return
        if self._forwarder is not None:
            self._forwarder.stop(timeout)
        if self._producer is not None:
            remaining = self._producer.flush(timeout)
            self._wake_reported()
            if remaining:
                log.warning("producer closed with undelivered records", extra={"count": remaining})
        self._running.clear()
        if self._poller is not None:
            self._poller.join(2)
        self._flush_metrics()
        if self._spool is not None:
            self._spool.close()
        if self._heads is not None:
            self._heads.close()
        self._pid = None
        log.info("publisher closed")

    def _poll(self) -> None:
        """Serve delivery reports; every FLUSH_INTERVAL_S fold the metrics (not per report)."""
        next_flush = 0.0
        while self._running.is_set():
            producer = self._producer
            if producer is not None:
                producer.poll(0.1)
                self._wake_reported()
            now = time.monotonic()
            if now >= next_flush:
                next_flush = now + metrics.FLUSH_INTERVAL_S
                self._flush_metrics()

    def _wake_reported(self) -> None:
        """Release every request whose report the last poll served (see ``publish``)."""
        reported = self._reported
        while reported:
            try:
                pending = reported.popleft()
            except IndexError:
                return
            pending.done.release()

    def _flush_metrics(self) -> None:
        metrics.flush()
        if self._spool is not None:
            metrics.SPOOL_RECORDS.set(self._spool.pending_records)

    # --- producing -----------------------------------------------------------------
    def _produce(self, producer: Producer, env: Envelope, on_delivery: Callable[..., None]) -> None:
        headers: list[tuple[str, str | bytes | None]] | None = (
            [(COMMAND_HEADER, env.command.encode())] if env.command else None
        )
        producer.produce(
            env.topic,
            value=env.value,
            key=env.key,
            timestamp=env.timestamp_ms,
            headers=headers,
            on_delivery=on_delivery,
        )

    def _spooling_starts(self, why: str) -> None:
        log.warning("%s; spooling until the spool is handed to the producer", why)

    def publish(self, env: Envelope) -> Outcome:
        """Store one record durably. Raises ``SpoolFull`` (503) when nothing can keep it."""
        producer, spool = self._ensure()
        started = time.perf_counter()
        if spool.backlog:  # behind spooled events: keep the arrival order
            return self._finish(spool, env, None, started)
        pending = _Pending()

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            ok = err is None
            with self._lock:
                pending.decided, pending.delivered = True, ok
                ticket = pending.ticket
            if ticket is not None:
                spool.resolve(ticket, ok)
            # Not released here: confluent-kafka takes and drops the GIL around every
            # report, so a request woken mid-batch would fight the poll thread for the
            # GIL. The poll loop wakes the whole batch once poll() has returned.
            self._reported.append(pending)

        try:
            self._produce(producer, env, on_delivery)
        except (BufferError, KafkaException) as exc:
            if not spool.backlog:
                self._spooling_starts(f"produce refused ({exc})")
            return self._finish(spool, env, None, started)
        pending.done.acquire(timeout=self._timeout)
        ticket: Ticket | None = None
        with self._lock:
            delivered = pending.decided and pending.delivered
            starts_backlog = not delivered and not spool.backlog
            if not pending.decided:
                # Still inside the producer: spool it, and let the report decide later.
                ticket = pending.ticket = spool.reserve()
        if delivered:
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

    def _send_forwarded(self, env: Envelope, on_result: Callable[[bool], None]) -> None:
        producer = self._producer
        assert producer is not None

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            on_result(err is None)

        for _ in range(50):
            try:
                self._produce(producer, env, on_delivery)
                return
            except BufferError:
                producer.poll(0.1)
                self._wake_reported()
            except KafkaException:
                break
        on_result(False)

    # --- health --------------------------------------------------------------------
    def broker_reachable(self, timeout: float = 0.5) -> bool:
        producer, _ = self._ensure()
        try:
            producer.list_topics(timeout=timeout)
        except KafkaException:
            return False
        return True

    def spool_writable(self) -> bool:
        _, spool = self._ensure()
        # room for one more event of the largest accepted size
        room = self._settings.max_body_bytes
        return os.access(spool.directory, os.W_OK) and not spool.is_full(room)

    def stats(self) -> dict[str, int]:
        _, spool = self._ensure()
        with contextlib.suppress(OSError):
            metrics.SPOOL_BYTES.set(spool.total_bytes())
        return {
            "spool_records": spool.pending_records,
            "forwarded": self._forwarder.forwarded if self._forwarder else 0,
        }
