"""Replication defaults by cluster size, the refusals and the warning (no broker needed)."""

from __future__ import annotations

import pytest

from groupwatch.contracts import Settings, topic_specs
from groupwatch.contracts.replication import ReplicationError, replication_for


@pytest.mark.parametrize(
    ("brokers", "factor", "min_isr"), [(1, 1, None), (2, 1, None), (3, 3, 2), (5, 3, 2)]
)
def test_defaults_follow_the_cluster_size(brokers: int, factor: int, min_isr: int | None) -> None:
    rep = replication_for(Settings(), brokers)
    assert (rep.factor, rep.min_isr) == (factor, min_isr)
    specs = topic_specs(Settings(), rep)
    assert {s.replication_factor for s in specs} == {factor}
    assert {s.config.get("min.insync.replicas") for s in specs} == {
        None if min_isr is None else str(min_isr)
    }


def test_one_broker_keeps_the_old_topic_configs() -> None:
    specs = topic_specs(Settings())
    assert all(s.replication_factor == 1 for s in specs)
    assert all("min.insync.replicas" not in s.config for s in specs)


def test_explicit_settings_win_and_impossible_ones_are_refused() -> None:
    rep = replication_for(Settings(replication_factor=2, min_insync_replicas=2), 3)
    assert (rep.factor, rep.min_isr) == (2, 2) and rep.warning is None
    with pytest.raises(ReplicationError, match="larger than the cluster \\(3 brokers\\)"):
        replication_for(Settings(replication_factor=4), 3)
    with pytest.raises(ReplicationError, match="larger than the cluster \\(1 broker\\)"):
        replication_for(Settings(replication_factor=3), 1)
    with pytest.raises(ReplicationError, match="no acks=all write could succeed"):
        replication_for(Settings(min_insync_replicas=4), 3)


def test_min_isr_one_on_a_cluster_is_warned_about() -> None:
    assert "min.insync.replicas is 1" in (
        replication_for(Settings(min_insync_replicas=1), 3).warning or ""
    )
    assert "replication factor 1" in (
        replication_for(Settings(replication_factor=1), 3).warning or ""
    )
    assert replication_for(Settings(), 1).warning is None
    assert replication_for(Settings(), 3).warning is None


def test_cluster_ports_are_consecutive_and_never_overlap() -> None:
    s = Settings(kafka_brokers=3)
    assert s.kafka_broker_ports == [9092, 9093, 9094]
    assert s.kafka_controller_ports == [9095, 9096, 9097]
    assert s.bootstrap_servers == "127.0.0.1:9092,127.0.0.1:9093,127.0.0.1:9094"
    apart = Settings(kafka_brokers=3, kafka_port=19300, kafka_controller_port=19310)
    assert apart.kafka_controller_ports == [19310, 19311, 19312]
    one = Settings()
    assert (one.kafka_controller_ports, one.bootstrap_servers) == ([9093], "127.0.0.1:9092")
