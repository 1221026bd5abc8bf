"""Waiting out transient broker conditions at start: which errors, how long, one sentence.

Right after a broker starts or a topic is created, Kafka answers for a while with
conditions that pass by themselves: no leader yet (or not this broker), the group or
transaction coordinator still loading, topic metadata not yet propagated, the broker not
reachable yet, a request timing out. Every stage (and ``topics create``, ``up``) runs its
start-up calls through ``until_ready``: those conditions are retried with exponential
backoff (jittered, capped) for ``GROUPWATCH_STARTUP_TIMEOUT_SECONDS``; then the stage fails
with ``BrokerNotReady``, whose message is one sentence for the operator. Anything else
(a fatal or a configuration error) is raised at once.

It lives in the contracts because every stage imports it, and stages import nothing from
groupwatch but ``groupwatch.contracts``; it is the start-up contract between the stages
and the broker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import ClusterMetadata, TopicMetadata
from tenacity import (
    RetryCallState,
    RetryError,
    Retrying,
    retry_if_exception,
    stop_before_delay,
    wait_exponential_jitter,
)

from groupwatch.contracts.settings import Settings

T = TypeVar("T")
log = logging.getLogger("groupwatch.startup")

# first wait 0.1 s, doubling (plus up to 0.1 s jitter) to at most 2 s between attempts
BACKOFF_INITIAL_S = 0.1
BACKOFF_MAX_S = 2.0
BACKOFF_JITTER_S = 0.1
# one attempt's own timeout (a metadata request to a broker that is not up yet, ...)
ATTEMPT_TIMEOUT_S = 5.0
MIN_ATTEMPT_TIMEOUT_S = 0.5
WARN_EVERY_S = 10.0
# Clients used only at start: librdkafka's own log lines (a "Connect ... failed" every
# reconnect while the broker is not up) would bury the one sentence; what they say is in
# the retry's log lines and its final error.
QUIET_CLIENT: dict[str, int] = {"log_level": 2}

# Codes that pass by themselves while a broker or a new topic settles. librdkafka flags
# only some of them ``retriable()`` (a watermark query answered NOT_LEADER_FOR_PARTITION
# is not), so they are listed explicitly as well.
TRANSIENT_CODES: frozenset[int] = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,  # metadata not yet propagated
        KafkaError.REPLICA_NOT_AVAILABLE,
        KafkaError.UNKNOWN_LEADER_EPOCH,
        KafkaError.FENCED_LEADER_EPOCH,
        KafkaError.OFFSET_NOT_AVAILABLE,
        KafkaError.NOT_ENOUGH_REPLICAS,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.NOT_COORDINATOR,
        KafkaError.NOT_CONTROLLER,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError.NETWORK_EXCEPTION,
        KafkaError.BROKER_NOT_AVAILABLE,
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._TIMED_OUT,
        KafkaError._TIMED_OUT_QUEUE,
        KafkaError._RESOLVE,
        KafkaError._WAIT_COORD,
        KafkaError._UNKNOWN_PARTITION,
        KafkaError._UNKNOWN_TOPIC,
        KafkaError._NODE_UPDATE,
    }
)


class BrokerNotReady(RuntimeError):
    """Kafka stayed in a transient condition for the whole start-up timeout."""


class NotReadyYet(Exception):
    """Raised by a start-up check to ask for another attempt (e.g. "no leader yet")."""


def kafka_error(exc: BaseException) -> KafkaError | None:
    """The ``KafkaError`` a confluent-kafka exception carries, if any."""
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return exc.args[0]
    return None


def is_transient_error(err: KafkaError) -> bool:
    """A condition that passes by itself (never a fatal error)."""
    if err.fatal():
        return False
    return err.retriable() or err.code() in TRANSIENT_CODES


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is worth retrying at start: a transient ``KafkaException``, or
    ``NotReadyYet`` (raised by a caller's own readiness check)."""
    if isinstance(exc, NotReadyYet):
        return True
    err = kafka_error(exc)
    return err is not None and is_transient_error(err)


def _reason(exc: BaseException | None) -> str:
    if exc is None:
        return "no answer"
    err = kafka_error(exc)
    text = err.str() if err is not None else str(exc)
    return text.rstrip(".") or type(exc).__name__


def until_ready(
    what: str,
    call: Callable[[float], T],
    *,
    settings: Settings,
    timeout: float | None = None,
) -> T:
    """Run ``call(attempt_timeout)``, retrying transient broker conditions.

    ``what`` says what is attempted ("reading the end offset of X[0]") for the error
    sentence. ``timeout`` defaults to ``settings.startup_timeout_seconds``. Each attempt
    gets its own timeout, at most ``ATTEMPT_TIMEOUT_S`` and never past the deadline.
    """
    budget = settings.startup_timeout_seconds if timeout is None else timeout
    deadline = time.monotonic() + budget

    def attempt() -> T:
        remaining = deadline - time.monotonic()
        return call(max(MIN_ATTEMPT_TIMEOUT_S, min(ATTEMPT_TIMEOUT_S, remaining)))

    started = time.monotonic()
    warned = started

    def note(state: RetryCallState) -> None:
        # every attempt at INFO; a WARNING (shown by default) at most every WARN_EVERY_S
        nonlocal warned
        outcome = state.outcome
        exc = outcome.exception() if outcome is not None else None
        now = time.monotonic()
        level = logging.INFO
        if now - warned >= WARN_EVERY_S:
            level, warned = logging.WARNING, now
        log.log(
            level,
            "Kafka at %s not ready yet after %.0f s (%s, attempt %d): %s",
            settings.bootstrap_servers,
            now - started,
            what,
            state.attempt_number,
            _reason(exc),
        )

    retrying = Retrying(
        retry=retry_if_exception(is_transient),
        wait=wait_exponential_jitter(
            initial=BACKOFF_INITIAL_S, max=BACKOFF_MAX_S, jitter=BACKOFF_JITTER_S
        ),
        stop=stop_before_delay(budget),
        before_sleep=note,
        reraise=False,
    )
    try:
        return retrying(attempt)
    except RetryError as exc:
        last = exc.last_attempt.exception()
        raise BrokerNotReady(
            f"Kafka at {settings.bootstrap_servers} was not ready within {budget:.0f} s "
            f"(GROUPWATCH_STARTUP_TIMEOUT_SECONDS) while {what}: {_reason(last)}"
        ) from last


class _HasMetadata(Protocol):
    def list_topics(self, *args: Any, **kwargs: Any) -> ClusterMetadata: ...


def list_topics(
    client: _HasMetadata, settings: Settings, timeout: float | None = None
) -> dict[str, TopicMetadata]:
    """Every topic's metadata once the broker answers and no topic reports a transient error.

    A topic whose metadata says "leader not available" (just created) is waited for; a
    missing topic is simply absent from the result (the caller decides what that means).
    """

    def attempt(t: float) -> dict[str, TopicMetadata]:
        topics: dict[str, TopicMetadata] = client.list_topics(timeout=t).topics
        for name, meta in topics.items():
            err = meta.error
            if err is not None and is_transient_error(err):
                raise NotReadyYet(f"{name}: {err.str()}")
        return topics

    return until_ready("reading the topic metadata", attempt, settings=settings, timeout=timeout)


def wait_for_leaders(
    client: _HasMetadata, names: list[str], settings: Settings, timeout: float | None = None
) -> None:
    """Block until every partition of ``names`` has a leader, so "created" means usable."""

    def attempt(t: float) -> None:
        topics = client.list_topics(timeout=t).topics
        pending = []
        for name in names:
            topic = topics.get(name)
            if (
                topic is None
                or topic.error is not None
                or not topic.partitions
                or any(p.leader < 0 or p.error is not None for p in topic.partitions.values())
            ):
                pending.append(name)
        if pending:
            raise NotReadyYet("no partition leader yet for " + ", ".join(sorted(pending)))

    until_ready(
        "waiting for the partition leaders of " + ", ".join(names),
        attempt,
        settings=settings,
        timeout=timeout,
    )


def cluster_brokers(client: _HasMetadata, settings: Settings, timeout: float | None = None) -> int:
    """How many brokers the cluster has: those the metadata lists (live ones), and at least
    GROUPWATCH_KAFKA_BROKERS for the local cluster (a node restarting still counts)."""

    def attempt(t: float) -> int:
        brokers = len(client.list_topics(timeout=t).brokers)
        if brokers == 0:
            raise NotReadyYet("the metadata lists no broker")
        return brokers

    live = until_ready("counting the brokers", attempt, settings=settings, timeout=timeout)
    return live if settings.uses_external_kafka else max(live, settings.kafka_brokers)
