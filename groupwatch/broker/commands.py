"""``groupwatch kafka start|stop|status``: the local development broker."""

from __future__ import annotations

import click

from groupwatch.broker.jars import JarResolutionError
from groupwatch.broker.prerequisites import PrerequisiteMissing
from groupwatch.broker.server import BrokerError, LocalKafka
from groupwatch.contracts import load_settings
from groupwatch.errors import clear_errors

_ERRORS = (BrokerError, PrerequisiteMissing, JarResolutionError)


@click.group()
def kafka() -> None:
    """Run a local Kafka broker (KRaft) from Maven Central jars; GROUPWATCH_KAFKA_BROKERS=3
    runs a 3-node cluster (each node broker + controller, a 3-voter quorum).

    With KAFKA_BOOTSTRAP_SERVERS set, nothing local is started: that cluster is used.
    """


@kafka.command()
@clear_errors(*_ERRORS)
def start() -> None:
    """Start the broker (resolving its jars with Maven on first use) and wait until ready."""
    click.echo(LocalKafka(load_settings()).start().message)


@kafka.command()
@clear_errors(*_ERRORS)
def stop() -> None:
    """Stop the broker (SIGTERM, then wait; SIGKILL only if it does not exit)."""
    click.echo(LocalKafka(load_settings()).stop().message)


@kafka.command()
@clear_errors(*_ERRORS)
def status() -> None:
    """Say whether the broker runs (a cluster: the bootstrap list and each node's pid);
    exit status 3 when it (or any node) does not."""
    result = LocalKafka(load_settings()).status()
    click.echo(result.message)
    if not result.running:
        raise SystemExit(3)
