"""``groupwatch notify``."""

from __future__ import annotations

import logging
import signal

import click
from pydantic import ValidationError

from groupwatch.contracts import load_settings
from groupwatch.contracts.startup import BrokerNotReady


@click.command()
@click.option(
    "--port",
    type=int,
    default=None,
    help="/metrics and /healthz port (default GROUPWATCH_NOTIFY_PORT).",
)
def notify(port: int | None) -> None:
    """Deliver the alerts of <prefix>.alerts to WeCom, Slack and/or a JSON webhook.

    Channels: GROUPWATCH_NOTIFY_WECOM_URL, GROUPWATCH_NOTIFY_SLACK_URL,
    GROUPWATCH_NOTIFY_WEBHOOK_URL (at least one). Offsets are committed only after
    delivery; undeliverable messages go to <prefix>.notify-failures.
    """
    from notify.service import Notifier

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        settings = load_settings(**({} if port is None else {"notify_port": port}))
        notifier = Notifier(settings)
    except ValidationError as exc:
        raise click.ClickException(f"invalid settings: {exc}") from exc
    except (ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    signal.signal(signal.SIGTERM, notifier.stop)
    signal.signal(signal.SIGINT, notifier.stop)
    try:
        notifier.run()
    except (BrokerNotReady, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
