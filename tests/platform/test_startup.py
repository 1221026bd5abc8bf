"""Start-up waits (groupwatch/contracts/startup.py): which broker errors are transient, and
that the bounded retry really waits for a broker that comes up late, and gives up on one
that never does with one sentence."""

from __future__ import annotations

import os
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from groupwatch.contracts import Settings
from groupwatch.contracts.startup import (
    TRANSIENT_CODES,
    BrokerNotReady,
    NotReadyYet,
    is_transient,
    list_topics,
    until_ready,
    wait_for_leaders,
)
from tests.support.ports import free_port
from tests.support.processes import run_groupwatch

NAMED_TRANSIENT = [
    "NOT_LEADER_FOR_PARTITION",
    "LEADER_NOT_AVAILABLE",
    "UNKNOWN_TOPIC_OR_PART",
    "COORDINATOR_LOAD_IN_PROGRESS",
    "COORDINATOR_NOT_AVAILABLE",
    "NOT_COORDINATOR",
    "REQUEST_TIMED_OUT",
    "_TRANSPORT",
    "_TIMED_OUT",
    "_ALL_BROKERS_DOWN",
]
NOT_TRANSIENT = [
    "TOPIC_ALREADY_EXISTS",
    "INVALID_PARTITIONS",
    "INVALID_REPLICATION_FACTOR",
    "TOPIC_AUTHORIZATION_FAILED",
    "CLUSTER_AUTHORIZATION_FAILED",
    "POLICY_VIOLATION",
    "_INVALID_ARG",
    "_UNKNOWN_GROUP",
]


def _exc(code: int, **flags: bool) -> KafkaException:
    return KafkaException(KafkaError(code, **flags))


@pytest.mark.parametrize("name", NAMED_TRANSIENT)
def test_start_up_conditions_are_transient(name: str) -> None:
    code = getattr(KafkaError, name)
    assert code in TRANSIENT_CODES
    # librdkafka does not flag these retriable when they come back from a watermark query
    assert is_transient(_exc(code))


@pytest.mark.parametrize("name", NOT_TRANSIENT)
def test_configuration_and_authorization_errors_are_not(name: str) -> None:
    assert not is_transient(_exc(getattr(KafkaError, name)))


def test_retriable_flag_counts_and_fatal_never_does() -> None:
    assert is_transient(_exc(KafkaError.POLICY_VIOLATION, retriable=True))
    assert not is_transient(_exc(KafkaError._TRANSPORT, fatal=True))
    assert is_transient(NotReadyYet("no leader yet"))
    assert not is_transient(ValueError("bad value"))
    assert not is_transient(TimeoutError())
    assert not is_transient(KafkaException("not a KafkaError"))


def test_transient_errors_are_retried_until_the_call_succeeds() -> None:
    calls: list[float] = []

    def flaky(attempt_timeout: float) -> str:
        calls.append(attempt_timeout)
        if len(calls) < 4:
            raise _exc(KafkaError.NOT_LEADER_FOR_PARTITION)
        return "ok"

    settings = Settings(kafka_bootstrap_servers="127.0.0.1:1")
    assert until_ready("reading an end offset", flaky, settings=settings, timeout=30) == "ok"
    assert len(calls) == 4
    assert all(0 < t <= 30 for t in calls)


def test_other_errors_are_raised_at_once() -> None:
    calls = 0

    def broken(_t: float) -> None:
        nonlocal calls
        calls += 1
        raise _exc(KafkaError.TOPIC_AUTHORIZATION_FAILED)

    settings = Settings(kafka_bootstrap_servers="127.0.0.1:1")
    with pytest.raises(KafkaException):
        until_ready("listing topics", broken, settings=settings, timeout=30)
    assert calls == 1


@pytest.mark.wallclock
@pytest.mark.slow
def test_a_broker_that_never_comes_up_fails_in_one_sentence_after_the_timeout() -> None:
    port = free_port()  # nothing listens there
    settings = Settings(kafka_bootstrap_servers=f"127.0.0.1:{port}")
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers, "log_level": 0})
    started = time.monotonic()
    with pytest.raises(BrokerNotReady) as caught:
        list_topics(admin, settings, timeout=4)
    elapsed = time.monotonic() - started
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"Kafka at 127.0.0.1:{port} was not ready within 4 s")
    assert "GROUPWATCH_STARTUP_TIMEOUT_SECONDS" in message
    assert "reading the topic metadata" in message
    # bounded: the budget, plus at most one attempt's floor and one backoff step
    assert 3.5 <= elapsed < 4 + 15, elapsed


def _cli(env_extra: dict[str, str], *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    env.update(env_extra)
    return run_groupwatch(env, *args, timeout=timeout)


@pytest.mark.slow
@pytest.mark.parametrize("command", [["topics", "create"], ["stream"], ["sink"], ["up"]])
def test_commands_against_a_never_up_broker_say_one_sentence(
    command: list[str], tmp_path: Path
) -> None:
    port = free_port()
    done = _cli(
        {
            "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}",
            "GROUPWATCH_STARTUP_TIMEOUT_SECONDS": "3",
            "GROUPWATCH_STATE_DIR": str(tmp_path / "gw"),
            "GROUPWATCH_DUCKDB_PATH": str(tmp_path / "gw.duckdb"),
            "GROUPWATCH_SNAPSHOT_PATH": str(tmp_path / "gw-snap.duckdb"),
            "GROUPWATCH_QUERY_PORT": str(free_port()),
            "GROUPWATCH_STREAM_WEB_PORT": str(free_port()),
        },
        *command,
    )
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, done.stderr
    assert errors[0].startswith(
        f"Error: Kafka at 127.0.0.1:{port} was not ready within 3 s "
        "(GROUPWATCH_STARTUP_TIMEOUT_SECONDS) while "
    ), errors[0]


def _in_thread(func: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = func()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


@pytest.mark.kafka
def test_a_broker_started_after_the_client_began_retrying(tmp_path: Path) -> None:
    """The client starts first; the broker comes up seconds later; the call succeeds, and a
    topic created on the fresh broker has its end offsets read at once (the first `up`'s
    path, where NOT_LEADER_FOR_PARTITION came back)."""
    from groupwatch.broker.server import LocalKafka

    settings = Settings(
        state_dir=tmp_path / "gw",
        kafka_port=free_port(),
        kafka_controller_port=free_port(),
        startup_timeout_seconds=120,
    )
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers, "log_level": 0})
    thread, box = _in_thread(lambda: list_topics(admin, settings))
    time.sleep(3)
    assert thread.is_alive(), box  # still retrying: nothing listens yet
    broker = LocalKafka(settings)
    broker.start()
    try:
        thread.join(130)
        assert not thread.is_alive()
        assert "error" not in box, box.get("error")
        assert isinstance(box["value"], dict)

        names = [f"startup-{uuid.uuid4().hex[:8]}-{i}" for i in range(3)]
        futures = admin.create_topics([NewTopic(n, 3, 1) for n in names])
        for future in futures.values():
            future.result(30)
        consumer = Consumer(
            {"bootstrap.servers": settings.bootstrap_servers, "group.id": "startup-probe"}
        )
        try:
            for name in names:
                for p in range(3):
                    tp = TopicPartition(name, p)
                    low, high = until_ready(
                        f"reading the end offset of {name}[{p}]",
                        lambda t, tp=tp: consumer.get_watermark_offsets(tp, t),
                        settings=settings,
                    )
                    assert (low, high) == (0, 0)
        finally:
            consumer.close()
        wait_for_leaders(admin, names, settings)
    finally:
        broker.stop()
