"""``groupwatch topics create|list``: the pipeline topics."""

from __future__ import annotations

import click
from confluent_kafka import KafkaException

from groupwatch.admin.topics import (
    TopicMismatchError,
    admin_client,
    cluster_replication,
    create_topics,
)
from groupwatch.contracts import load_settings, topic_specs
from groupwatch.contracts.replication import ReplicationError
from groupwatch.contracts.startup import BrokerNotReady, list_topics
from groupwatch.errors import clear_errors


@click.group()
def topics() -> None:
    """Create and inspect the pipeline's Kafka topics."""


TIMEOUT_HELP = "Seconds to wait for Kafka [GROUPWATCH_STARTUP_TIMEOUT_SECONDS]."


@topics.command()
@click.option("--timeout", type=float, default=None, help=TIMEOUT_HELP)
@clear_errors(TopicMismatchError, BrokerNotReady, KafkaException, ReplicationError)
def create(timeout: float | None) -> None:
    """Create every missing topic with the configured partitions and replication (factor 3
    and min ISR 2 on a cluster of 3+ brokers unless set); existing ones stay."""
    settings = load_settings()
    rep = cluster_replication(settings, timeout=timeout)
    if rep.warning:
        click.echo(f"Warning: {rep.warning}", err=True)
    for result in create_topics(settings, timeout=timeout, replication=rep):
        spec = result.spec
        policy = spec.config.get("cleanup.policy", "delete")
        isr = spec.config.get("min.insync.replicas")
        replicas = f"replication={spec.replication_factor}" + (f", min ISR {isr}" if isr else "")
        click.echo(
            f"{result.outcome:8} {spec.name} (partitions={spec.partitions}, {replicas}, {policy})"
        )


@topics.command("list")
@click.option("--timeout", type=float, default=None, help=TIMEOUT_HELP)
@clear_errors(BrokerNotReady, KafkaException)
def list_(timeout: float | None) -> None:
    """Show each pipeline topic and whether it exists with how many partitions."""
    settings = load_settings()
    existing = list_topics(admin_client(settings), settings, timeout)
    for spec in topic_specs(settings):
        meta = existing.get(spec.name)
        state = f"{len(meta.partitions)} partitions" if meta else "missing"
        click.echo(f"{spec.name:40} {state:15} {spec.doc}")
