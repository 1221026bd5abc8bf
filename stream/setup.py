"""Checks and preparation before a worker starts: input topics, ticks topic, local dir."""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path
from typing import IO

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from groupwatch.contracts import Settings, Topics
from groupwatch.contracts.records import EventKind
from groupwatch.contracts.replication import replication_for
from groupwatch.contracts.startup import (
    QUIET_CLIENT,
    cluster_brokers,
    list_topics,
    until_ready,
    wait_for_leaders,
)


class StreamSetupError(RuntimeError):
    """The worker cannot start (missing topics, partition mismatch, busy dir)."""


def ticks_topic(settings: Settings) -> str:
    """Internal topic carrying wall-clock ticks to every partition (updates, idle close)."""
    return f"{settings.stream_app_id}-ticks"


def resolved_replication(settings: Settings) -> Settings:
    """``settings`` with the replication factor and min ISR the cluster's size gives
    (``replication_for``): the worker's changelog and ticks topics are created with them."""
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers, **QUIET_CLIENT})
    rep = replication_for(settings, cluster_brokers(admin, settings))
    return settings.model_copy(
        update={"replication_factor": rep.factor, "min_insync_replicas": rep.min_isr}
    )


def check_topics(settings: Settings, timeout: float = 20.0) -> None:
    """Input topics must exist with GROUPWATCH_PARTITIONS; create the ticks topic."""
    topics = Topics.from_settings(settings)
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers, **QUIET_CLIENT})
    meta = list_topics(admin, settings)
    wanted = [
        topics.exceptions,
        topics.sends,
        topics.failure_windows,
        topics.late_events,
        topics.alerts,
        topics.dlq,
    ]
    missing = [t for t in wanted if t not in meta]
    if missing:
        raise StreamSetupError(
            f"missing topics {', '.join(missing)}: run `groupwatch topics create` first"
        )
    for name in (topics.exceptions, topics.sends):
        n = len(meta[name].partitions)
        if n != settings.partitions:
            raise StreamSetupError(
                f"{name} has {n} partitions but GROUPWATCH_PARTITIONS={settings.partitions}"
            )
    ticks = ticks_topic(settings)
    if ticks in meta:
        if len(meta[ticks].partitions) != settings.partitions:
            raise StreamSetupError(f"{ticks} exists with another partition count")
        return
    config = {"retention.ms": "3600000"}
    if settings.min_insync_replicas is not None:
        config["min.insync.replicas"] = str(settings.min_insync_replicas)
    spec = NewTopic(ticks, settings.partitions, settings.replication_factor or 1, config=config)

    def create(t: float) -> None:
        try:
            admin.create_topics([spec], operation_timeout=t, request_timeout=t)[ticks].result()
        except KafkaException as exc:
            if exc.args and exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise

    until_ready(f"creating {ticks}", create, settings=settings)
    wait_for_leaders(admin, [ticks], settings)


def topics_seen(settings: Settings, timeout: float = 10.0) -> dict[int, dict[EventKind, bool]]:
    """Per partition: whether the exceptions / sends topic-partition ever held a record.

    A topic-partition that holds records makes the close watermark wait for it, from the
    first event on, so the result does not depend on which topic is fetched first.
    """
    topics = Topics.from_settings(settings)
    consumer = Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": f"{settings.stream_app_id}-probe",
            **QUIET_CLIENT,
        }
    )

    def end_offset(tp: TopicPartition) -> int:
        return until_ready(
            f"reading the end offset of {tp.topic}[{tp.partition}]",
            lambda t: consumer.get_watermark_offsets(tp, t)[1],
            settings=settings,
        )

    try:
        seen: dict[int, dict[EventKind, bool]] = {}
        for p in range(settings.partitions):
            flags: dict[EventKind, bool] = {}
            for kind, name in (
                (EventKind.EXCEPTION, topics.exceptions),
                (EventKind.SEND, topics.sends),
            ):
                high = end_offset(TopicPartition(name, p))
                flags[kind] = high > 0
            seen[p] = flags
        return seen
    finally:
        consumer.close()


def prepare_dir(worker_dir: Path) -> IO[str]:
    """Lock the worker dir and empty its table store (rebuilt from the changelog).

    A SIGKILL can leave RocksDB ahead of the changelog; restoring a mix of both could
    break the per-key offsets' consistency, so the local store is only a cache.
    """
    worker_dir.mkdir(parents=True, exist_ok=True)
    lock = open(worker_dir / ".lock", "w")  # noqa: SIM115 - held for the process lifetime
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        lock.close()
        raise StreamSetupError(
            f"{worker_dir} is used by another worker: pass --worker-dir"
        ) from exc
    for entry in worker_dir.iterdir():
        if entry.name == ".lock":
            continue
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            os.unlink(entry)
    return lock
