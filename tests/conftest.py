"""Session fixtures: a real Kafka broker (KRaft) for the whole run, unique topics per test.

Set KAFKA_BOOTSTRAP_SERVERS to run the suite against an existing broker instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from groupwatch.contracts import Settings, Topics
from tests.support.ports import free_port


@pytest.fixture(scope="session")
def kafka_bootstrap(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Bootstrap servers of a real broker: KAFKA_BOOTSTRAP_SERVERS, or one started here."""
    plugins = request.config.pluginmanager
    reporter = plugins.get_plugin("terminalreporter")
    capture = plugins.get_plugin("capturemanager")

    def say(line: str) -> None:  # shown in the test log even with output captured
        if reporter is not None and capture is not None:
            with capture.global_and_fixture_disabled():
                reporter.write_line(f"\n[groupwatch tests] {line}")

    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        say(f"using the Kafka broker at {external} (KAFKA_BOOTSTRAP_SERVERS)")
        yield external
        return
    from groupwatch.broker.server import LocalKafka

    state = tmp_path_factory.mktemp("kafka-session")
    settings = Settings(state_dir=state, kafka_port=free_port(), kafka_controller_port=free_port())
    broker = LocalKafka(settings)
    say(broker.start().message)
    try:
        yield settings.bootstrap_servers
    finally:
        say(broker.stop().message)


@pytest.fixture
def topic_prefix() -> str:
    """A prefix no other test uses, so every test gets its own topics."""
    return f"gwtest-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def make_settings(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> Callable[..., Settings]:
    """Settings bound to the test broker, unique topics and a private state dir."""

    def make(**overrides: object) -> Settings:
        values: dict[str, object] = {
            "kafka_bootstrap_servers": kafka_bootstrap,
            "topic_prefix": topic_prefix,
            "state_dir": tmp_path / "state",
            "duckdb_path": tmp_path / "data" / "groupwatch.duckdb",
            "snapshot_path": tmp_path / "data" / "groupwatch-snapshot.duckdb",
            "partitions": 3,
            # Test data carries old event times (the spec's sample is from 2022) and Kafka
            # timestamps are event times: time-based retention must not delete it mid-test.
            "retention_hours": 24 * 365 * 10,
        }
        values.update(overrides)
        return Settings(**values)  # type: ignore[arg-type]

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
def topics(settings: Settings) -> Topics:
    """Every pipeline topic created (for this test's prefix) on the real broker."""
    from groupwatch.admin.topics import create_topics

    create_topics(settings)
    return Topics.from_settings(settings)
