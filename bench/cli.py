"""``python -m bench NAME [OPTIONS]``: run one benchmark; ``--list``; ``table``."""

from __future__ import annotations

import click

from bench.analytics import report, served, sink
from bench.broker import startup
from bench.dashboard import requests as dashboard
from bench.e2e import freshness
from bench.ingest import ingress
from bench.stream import catchup, lag, peer
from bench.table import table

BENCHMARKS: tuple[click.Command, ...] = (
    ingress.command,
    catchup.command,
    lag.command,
    peer.command,
    sink.command,
    served.command,
    report.command,
    dashboard.command,
    startup.command,
    freshness.command,
)


class Group(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return [c.name for c in (*BENCHMARKS, table) if c.name]


@click.group(
    cls=Group, invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]}
)
@click.option("--list", "list_", is_flag=True, help="List the benchmarks, one line each.")
@click.pass_context
def main(ctx: click.Context, list_: bool) -> None:
    """groupwatch's benchmarks. Each writes bench/results/NAME.json; `table --write`
    regenerates the table in docs/PERFORMANCE.md from those files."""
    if list_:
        for c in BENCHMARKS:
            click.echo(f"{c.name:10} {c.get_short_help_str(100)}")
        ctx.exit()
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


for _command in (*BENCHMARKS, table):
    main.add_command(_command)
