"""``groupwatch topics create|list``: the pipeline topics."""

from __future__ import annotations

import click
from confluent_kafka import KafkaException

from groupwatch.admin.topics import TopicMismatchError, admin_client, create_topics
from groupwatch.contracts import load_settings, topic_specs
from groupwatch.contracts.startup import BrokerNotReady, list_topics
from groupwatch.errors import clear_errors


@click.group()
def topics() -> None:
    """Create and inspect the pipeline's Kafka topics."""


TIMEOUT_HELP = "Seconds to wait for Kafka [GROUPWATCH_STARTUP_TIMEOUT_SECONDS]."


@topics.command()
@click.option("--timeout", type=float, default=None, help=TIMEOUT_HELP)
@clear_errors(TopicMismatchError, BrokerNotReady, KafkaException)
def create(timeout: float | None) -> None:
    """Create every missing topic with the configured partitions; existing ones stay."""
    settings = load_settings()
    for result in create_topics(settings, timeout=timeout):
        spec = result.spec
        policy = spec.config.get("cleanup.policy", "delete")
        click.echo(f"{result.outcome:8} {spec.name} (partitions={spec.partitions}, {policy})")


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
