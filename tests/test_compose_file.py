"""docker-compose.yml as Compose reads it (YAML with merge keys): the default stack on one
broker, and the `cluster` profile on three nodes of the same image with the stages
bootstrapping from all three."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
CLUSTER_NODES = ("kafka-1", "kafka-2", "kafka-3")
CLUSTER_STAGES = ("topics-init-cluster", "ingest-cluster", "stream-cluster", "sink-cluster")


def services() -> dict[str, Any]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    assert "version" not in compose  # the Compose Specification: v1.29 and v2 alike
    return dict(compose["services"])


def test_default_stack_is_unchanged_and_has_no_profile() -> None:
    sv = services()
    default = {name for name, s in sv.items() if "profiles" not in s}
    assert {"kafka", "topics-init", "ingest", "stream", "sink"} <= default
    assert not default & {*CLUSTER_NODES, *CLUSTER_STAGES}
    assert sv["ingest"]["environment"]["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"


def test_cluster_profile_runs_three_nodes_of_the_same_image() -> None:
    sv = services()
    nodes = [sv[n] for n in CLUSTER_NODES]
    assert {n["image"] for n in nodes} == {sv["kafka"]["image"]}
    assert all(n["profiles"] == ["cluster"] for n in nodes)
    envs = [n["environment"] for n in nodes]
    assert [e["KAFKA_NODE_ID"] for e in envs] == [1, 2, 3]
    voters = {e["KAFKA_CONTROLLER_QUORUM_VOTERS"] for e in envs}
    assert voters == {"1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093"}
    assert len({e["CLUSTER_ID"] for e in envs}) == 1
    for e in envs:
        assert e["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == 3
        assert e["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == 2
        assert e["KAFKA_MIN_INSYNC_REPLICAS"] == 2
    hosts = [n["ports"][0].split(":")[1] for n in nodes]
    assert len(set(hosts)) == 3  # each node its own host port
    assert len({n["volumes"][0].split(":")[0] for n in nodes}) == 3


def test_cluster_stages_bootstrap_from_all_three_after_all_three_are_healthy() -> None:
    sv = services()
    for name in CLUSTER_STAGES:
        stage = sv[name]
        assert stage["profiles"] == ["cluster"], name
        env = stage["environment"]
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka-1:9092,kafka-2:9092,kafka-3:9092", name
        assert env["GROUPWATCH_SDKAPPIDS"].startswith("${GROUPWATCH_SDKAPPIDS:?"), name
        for node in CLUSTER_NODES:
            assert stage["depends_on"][node] == {"condition": "service_healthy"}, name
        assert "kafka" not in stage["depends_on"], name
    for name in CLUSTER_STAGES[1:]:
        done = sv[name]["depends_on"]["topics-init-cluster"]
        assert done == {"condition": "service_completed_successfully"}, name
    # no volume shared with the one-broker stack (a worker's state belongs to one cluster)
    single = {v.split(":")[0] for s in ("ingest", "stream", "sink") for v in sv[s]["volumes"]}
    cluster = {v.split(":")[0] for s in CLUSTER_STAGES[1:] for v in sv[s].get("volumes", [])}
    assert not single & cluster


def test_compose_sink_snapshots_as_often_as_up_for_the_dashboard() -> None:
    from groupwatch.up.commands import UP_SNAPSHOT_INTERVAL_SECONDS

    env = services()["sink"]["environment"]
    assert env["GROUPWATCH_SNAPSHOT_INTERVAL_SECONDS"] == (
        f"${{GROUPWATCH_SNAPSHOT_INTERVAL_SECONDS:-{UP_SNAPSHOT_INTERVAL_SECONDS}}}"
    )
