"""``groupwatch settings`` and ``groupwatch schemas``: the contracts, printed."""

from __future__ import annotations

import json

import click

from groupwatch.contracts import load_settings
from groupwatch.contracts.schema_files import SCHEMA_DIR, stale_files, write_all
from groupwatch.contracts.settings import Settings
from groupwatch.errors import clear_errors


def _env_name(name: str) -> str:
    if name == "kafka_bootstrap_servers":
        return "KAFKA_BOOTSTRAP_SERVERS"
    return f"GROUPWATCH_{name.upper()}"


@click.command("settings")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@clear_errors()
def settings_command(as_json: bool) -> None:
    """Print every setting's environment variable and effective value (tokens hidden)."""
    current = load_settings()
    rows = []
    for name, field in Settings.model_fields.items():
        value = getattr(current, name)
        if name == "callback_tokens":
            value = {appid: "***" for appid in value}
        elif not field.repr and value is not None:  # notify's URLs carry keys; its secret
            value = "***"
        rows.append((_env_name(name), value, field.description or ""))
    if as_json:
        click.echo(json.dumps({env: value for env, value, _ in rows}, default=str, indent=2))
        return
    for env, value, doc in rows:
        click.echo(f"{env}={value}    # {doc}")


@click.command()
@click.option("--write", is_flag=True, help="Regenerate the schema files from the models.")
def schemas(write: bool) -> None:
    """Check (or --write) the JSON Schema files of every topic's records."""
    if write:
        for path in write_all():
            click.echo(f"wrote {path}")
        return
    stale = stale_files()
    if stale:
        raise click.ClickException(
            "stale schema files (run `groupwatch schemas --write`): "
            + ", ".join(str(p) for p in stale)
        )
    click.echo(f"all schema files in {SCHEMA_DIR} match the record models")
