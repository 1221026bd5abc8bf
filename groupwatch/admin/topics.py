"""Idempotent creation of every pipeline topic through confluent-kafka's AdminClient."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from groupwatch.contracts import Settings, TopicSpec, topic_specs

Outcome = Literal["created", "exists"]


class TopicMismatchError(RuntimeError):
    """An existing topic has a partition count other than the configured one."""


@dataclass(frozen=True)
class TopicResult:
    spec: TopicSpec
    outcome: Outcome


def admin_client(settings: Settings) -> AdminClient:
    return AdminClient({"bootstrap.servers": settings.bootstrap_servers})


def create_topics(settings: Settings, timeout: float = 30.0) -> list[TopicResult]:
    """Create the missing topics; leave existing ones as they are.

    Raises ``TopicMismatchError`` when an existing topic's partition count differs from
    ``GROUPWATCH_PARTITIONS``: keys would land on other partitions and Faust refuses to
    start (PartitionsMismatch), so this is reported instead of silently accepted.
    """
    admin = admin_client(settings)
    specs = topic_specs(settings)
    metadata = admin.list_topics(timeout=timeout)
    existing = {name: len(meta.partitions) for name, meta in metadata.topics.items()}

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
    results = [TopicResult(s, "exists") for s in specs if s.name in existing]
    if missing:
        futures = admin.create_topics(
            [
                NewTopic(s.name, s.partitions, s.replication_factor, config=dict(s.config))
                for s in missing
            ],
            operation_timeout=timeout,
            request_timeout=timeout,
        )
        for spec in missing:
            try:
                futures[spec.name].result()
                results.append(TopicResult(spec, "created"))
            except KafkaException as exc:
                # Another process created it between list and create: that is fine.
                if exc.args and exc.args[0].name() == "TOPIC_ALREADY_EXISTS":
                    results.append(TopicResult(spec, "exists"))
                else:
                    raise
    if missing:
        wait_for_leaders(admin, [s.name for s in missing], timeout)
    order = {s.name: i for i, s in enumerate(specs)}
    return sorted(results, key=lambda r: order[r.spec.name])


def wait_for_leaders(admin: AdminClient, names: list[str], timeout: float) -> None:
    """Block until every partition of ``names`` has a leader, so "created" means usable."""
    deadline = time.monotonic() + timeout
    pending = set(names)
    while pending:
        metadata = admin.list_topics(timeout=max(1.0, deadline - time.monotonic()))
        for name in list(pending):
            topic = metadata.topics.get(name)
            if (
                topic is not None
                and topic.error is None
                and topic.partitions
                and all(p.leader >= 0 and p.error is None for p in topic.partitions.values())
            ):
                pending.discard(name)
        if not pending:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"topics without a partition leader after {timeout:.0f} s: "
                + ", ".join(sorted(pending))
            )
        time.sleep(0.1)
