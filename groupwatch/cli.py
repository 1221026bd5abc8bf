"""The ``groupwatch`` command line: one group, a subcommand per stage or tool."""

from __future__ import annotations

import importlib

import click

from groupwatch import __version__

# (module, attribute) of every subcommand; each stage owns its own command module, and
# modules are imported only when this list is built, so a missing stage cannot break others.
SUBCOMMANDS: list[tuple[str, str]] = [
    ("groupwatch.broker.commands", "kafka"),
    ("groupwatch.admin.commands", "topics"),
    ("groupwatch.contracts.commands", "settings_command"),
    ("groupwatch.contracts.commands", "schemas"),
    ("groupwatch.simulate.commands", "simulate"),
    ("groupwatch.up.commands", "up"),
]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="groupwatch")
def cli() -> None:
    """groupwatch: failure analytics for Tencent Cloud Chat group-message callbacks."""


for _module, _attr in SUBCOMMANDS:
    cli.add_command(getattr(importlib.import_module(_module), _attr))


def main() -> None:
    cli(prog_name="groupwatch")
