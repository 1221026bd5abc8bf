"""Idempotent creation of every pipeline topic through confluent-kafka's AdminClient."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from groupwatch.contracts import Settings, TopicSpec, topic_specs
from groupwatch.contracts.replication import Replication, replication_for
from groupwatch.contracts.startup import (
    QUIET_CLIENT,
    cluster_brokers,
    is_transient,
    list_topics,
    until_ready,
    wait_for_leaders,
)

Outcome = Literal["created", "exists"]


class TopicMismatchError(RuntimeError):
    """An existing topic has a partition count other than the configured one."""


@dataclass(frozen=True)
class TopicResult:
    spec: TopicSpec
    outcome: Outcome


def admin_client(settings: Settings) -> AdminClient:
    return AdminClient({"bootstrap.servers": settings.bootstrap_servers, **QUIET_CLIENT})


def cluster_replication(
    settings: Settings, admin: AdminClient | None = None, timeout: float | None = None
) -> Replication:
    """The replication of new topics on the cluster ``settings`` point at
    (``ReplicationError`` when the configured factor or min ISR cannot work there)."""
    client = admin or admin_client(settings)
    return replication_for(settings, cluster_brokers(client, settings, timeout))


def create_topics(
    settings: Settings, timeout: float | None = None, replication: Replication | None = None
) -> list[TopicResult]:
    """Create the missing topics; leave existing ones as they are.

    Transient broker conditions (broker not up yet, no controller, timeouts) are retried
    for ``timeout`` seconds (default GROUPWATCH_STARTUP_TIMEOUT_SECONDS), then
    ``BrokerNotReady`` says so in one sentence. Returns once every new topic's partitions
    have a leader.

    The replication factor and min ISR come from the cluster's size (``replication_for``):
    ``ReplicationError`` refuses a factor larger than the cluster.

    Raises ``TopicMismatchError`` when an existing topic's partition count differs from
    ``GROUPWATCH_PARTITIONS``: keys would land on other partitions and Faust refuses to
    start (PartitionsMismatch), so this is reported instead of silently accepted.
    """
    admin = admin_client(settings)
    rep = replication or cluster_replication(settings, admin, timeout)
    specs = topic_specs(settings, rep)
    metadata = list_topics(admin, settings, timeout)
    existing = {name: len(meta.partitions) for name, meta in metadata.items()}

    mismatched = [
        f"{s.name} has {existing[s.name]} partitions, configured {s.partitions}"
        for s in specs
        if s.name in existing and existing[s.name] != s.partitions
    ]
    if mismatched:
        raise TopicMismatchError(
            "existing topics do not match GROUPWATCH_PARTITIONS: " + "; ".join(mismatched)
        )

    missing = [s for s in specs if s.name not in existing]
    outcomes: dict[str, Outcome] = {s.name: "exists" for s in specs if s.name in existing}

    sent: set[str] = set()  # asked for by an earlier attempt

    def create(t: float) -> None:
        # each attempt creates what is still missing; a topic an earlier attempt asked
        # for (its answer lost to a timeout) answers TOPIC_ALREADY_EXISTS: created here
        todo = [s for s in missing if s.name not in outcomes]
        futures = admin.create_topics(
            [
                NewTopic(s.name, s.partitions, s.replication_factor, config=dict(s.config))
                for s in todo
            ],
            operation_timeout=t,
            request_timeout=t,
        )
        transient: KafkaException | None = None
        for spec in todo:
            try:
                futures[spec.name].result()
                outcomes[spec.name] = "created"
            except KafkaException as exc:
                if exc.args and exc.args[0].name() == "TOPIC_ALREADY_EXISTS":
                    # ours from an earlier attempt, or another process's since the list
                    outcomes[spec.name] = "created" if spec.name in sent else "exists"
                elif is_transient(exc):
                    transient = exc
                else:
                    raise
        sent.update(s.name for s in todo)
        if transient is not None:
            raise transient

    if missing:
        until_ready(
            "creating " + ", ".join(s.name for s in missing),
            create,
            settings=settings,
            timeout=timeout,
        )
        wait_for_leaders(admin, [s.name for s in missing], settings, timeout)
    return [TopicResult(s, outcomes[s.name]) for s in specs]
