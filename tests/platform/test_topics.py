"""`groupwatch topics create` makes every pipeline topic once, with the right configs."""

from __future__ import annotations

import os
import subprocess

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from groupwatch.admin.topics import TopicMismatchError, create_topics
from groupwatch.contracts import Settings, topic_specs
from tests.support.processes import run_groupwatch

pytestmark = pytest.mark.kafka


def run_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=settings.bootstrap_servers,
        GROUPWATCH_TOPIC_PREFIX=settings.topic_prefix,
        GROUPWATCH_PARTITIONS=str(settings.partitions),
    )
    return run_groupwatch(env, *args, timeout=120)


def test_create_twice_is_a_noop_the_second_time(settings: Settings) -> None:
    first = run_cli(settings, "topics", "create")
    assert first.returncode == 0, first.stderr
    names = [s.name for s in topic_specs(settings)]
    assert [line.split()[:2] for line in first.stdout.splitlines()] == [
        ["created", n] for n in names
    ]
    second = run_cli(settings, "topics", "create")
    assert second.returncode == 0, second.stderr
    assert [line.split()[:2] for line in second.stdout.splitlines()] == [
        ["exists", n] for n in names
    ]

    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
    meta = admin.list_topics(timeout=10).topics
    for spec in topic_specs(settings):
        assert len(meta[spec.name].partitions) == settings.partitions
    windows = topic_specs(settings)[3]
    resource = ConfigResource(ConfigResource.Type.TOPIC, windows.name)
    config = admin.describe_configs([resource])[resource].result(10)
    assert config["cleanup.policy"].value == "compact,delete"


def test_partition_mismatch_is_reported(make_settings) -> None:  # type: ignore[no-untyped-def]
    create_topics(make_settings(partitions=2))
    with pytest.raises(TopicMismatchError, match="has 2 partitions, configured 4"):
        create_topics(make_settings(partitions=4))
    result = run_cli(make_settings(partitions=4), "topics", "create")
    assert result.returncode == 1
    assert "do not match GROUPWATCH_PARTITIONS" in result.stderr
