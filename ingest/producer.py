"""This process's Kafka producer: its configuration, its poll thread, the client's logs.

Idempotent, acks=all, small linger, every record's fate decided well inside the 2 s
answer budget. The poll thread serves delivery reports and wakes the requests whose
report ran only once each ``poll()`` has served its whole batch (woken one by one
mid-batch, each request would fight the poll thread for the GIL).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from groupwatch.contracts import COMMAND_HEADER, Settings
from ingest.envelope import Envelope

log = logging.getLogger("ingest.publisher")

OnDelivery = Callable[[KafkaError | None, Message], None]


class KafkaProducer(Protocol):
    """What the ingress uses of ``confluent_kafka.Producer`` (tests pass a scripted one)."""

    def produce(
        self,
        topic: str,
        value: bytes,
        key: bytes | None,
        *,
        timestamp: int,
        headers: list[tuple[str, str | bytes | None]] | None,
        on_delivery: OnDelivery,
    ) -> None: ...
    def poll(self, timeout: float) -> int: ...
    def flush(self, timeout: float) -> int: ...
    def list_topics(self, *, timeout: float) -> Any: ...


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


class Outbox:
    """One producer with its poll thread; ``on_tick`` runs on that thread every ``tick_s``."""

    def __init__(self, producer: KafkaProducer, on_tick: Callable[[], None], tick_s: float) -> None:
        self.producer = producer
        self._on_tick = on_tick
        self._tick_s = tick_s
        self._running = threading.Event()
        self._poller: threading.Thread | None = None
        # Locks of requests whose delivery report ran, released once poll() has returned.
        self.reported: deque[threading.Lock] = deque()

    def start(self) -> None:
        self._running.set()
        self._poller = threading.Thread(target=self._poll, name="kafka-poll", daemon=True)
        self._poller.start()

    def stop(self) -> None:
        self._running.clear()
        if self._poller is not None:
            self._poller.join(2)

    def _poll(self) -> None:
        """Serve delivery reports; every ``tick_s`` run ``on_tick`` (not per report)."""
        next_tick = 0.0
        while self._running.is_set():
            self.producer.poll(0.1)
            self.wake_reported()
            now = time.monotonic()
            if now >= next_tick:
                next_tick = now + self._tick_s
                self._on_tick()

    def wake_reported(self) -> None:
        """Release every request whose report the last poll served."""
        reported = self.reported
        while reported:
            try:
                done = reported.popleft()
            except IndexError:
                return
            done.release()

    def produce(self, env: Envelope, on_delivery: OnDelivery) -> None:
        """Hand one record to the producer; raises ``BufferError`` / ``KafkaException``."""
        headers: list[tuple[str, str | bytes | None]] | None = (
            [(COMMAND_HEADER, env.command.encode())] if env.command else None
        )
        self.producer.produce(
            env.topic,
            value=env.value,
            key=env.key,
            timestamp=env.timestamp_ms,
            headers=headers,
            on_delivery=on_delivery,
        )

    def send(self, env: Envelope, on_result: Callable[[bool], None]) -> None:
        """The forwarder's send: produce, waiting out a full local queue (up to ~5 s)."""

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            on_result(err is None)

        for _ in range(50):
            try:
                self.produce(env, on_delivery)
                return
            except BufferError:
                self.producer.poll(0.1)
                self.wake_reported()
            except KafkaException:
                break
        on_result(False)

    def flush(self, timeout: float) -> int:
        """Wait for every record's report; the number still undecided."""
        remaining = self.producer.flush(timeout)
        self.wake_reported()
        return remaining

    def reachable(self, timeout: float) -> bool:
        try:
            self.producer.list_topics(timeout=timeout)
        except KafkaException:
            return False
        return True


def new_producer(config: dict[str, Any]) -> KafkaProducer:
    return Producer(config)
