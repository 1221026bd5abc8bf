"""The ``groupwatch`` command line: one group, a subcommand per stage or tool.

Subcommands are imported lazily: ``groupwatch query`` loads the analytics client only,
not Faust or Flask, so short-lived commands start quickly.
"""

from __future__ import annotations

import importlib

import click

from groupwatch import __version__

# command name -> "module:attribute"; each stage owns its own command module.
SUBCOMMANDS: dict[str, str] = {
    "kafka": "groupwatch.broker.commands:kafka",
    "topics": "groupwatch.admin.commands:topics",
    "settings": "groupwatch.contracts.commands:settings_command",
    "schemas": "groupwatch.contracts.commands:schemas",
    "up": "groupwatch.up.commands:up",
    "simulate": "groupwatch.simulate.commands:simulate",
    "ingest": "ingest.commands:ingest",
    "stream": "stream.commands:stream",
    "sink": "analytics.commands:sink",
    "query": "analytics.commands:query",
    "report": "analytics.commands:report",
    "dashboard": "analytics.dashboard.commands:dashboard",
    "notify": "notify.commands:notify",
}


class LazyGroup(click.Group):
    """A click group that imports a subcommand's module only when it is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = SUBCOMMANDS.get(cmd_name)
        if target is None:
            return None
        module, _, attr = target.partition(":")
        command = getattr(importlib.import_module(module), attr)
        if not isinstance(command, click.Command):
            raise TypeError(f"{target} is not a click command")
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="groupwatch")
def cli() -> None:
    """groupwatch: failure analytics for Tencent Cloud Chat group-message callbacks."""


def main() -> None:
    cli(prog_name="groupwatch")
