"""``groupwatch up``: broker, topics, then every stage that exists, until Ctrl-C."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import sys
from pathlib import Path

import click

from groupwatch.admin.topics import TopicMismatchError, create_topics
from groupwatch.broker.jars import JarResolutionError
from groupwatch.broker.prerequisites import PrerequisiteMissing
from groupwatch.broker.server import BrokerError, LocalKafka
from groupwatch.contracts import Settings, Topics, load_settings
from groupwatch.contracts.startup import BrokerNotReady
from groupwatch.errors import clear_errors
from groupwatch.up.demo import DemoApp, ensure_demo_app, stage_environment
from groupwatch.up.supervisor import Component, Supervisor, groupwatch_argv

# Stage commands in start order; a stage runs only when its command is installed.
STAGES: list[tuple[str, list[str]]] = [
    ("ingest", ["ingest"]),
    ("stream", ["stream"]),
    ("sink", ["sink"]),
    ("dashboard", ["dashboard"]),
    ("notify", ["notify"]),
]

# Stages that run only when configured: notify needs at least one channel.
CONFIGURED = {"notify": lambda s: bool(s.notify_channels)}

# The dashboard reads the sink's snapshot: up publishes one every 5 s (the setting's
# default, 30 s, suits BI tools on a big database), unless the variable is set.
UP_SNAPSHOT_INTERVAL_SECONDS = "5"


def _available(
    cli_names: set[str], settings: Settings | None = None
) -> list[tuple[str, list[str]]]:
    return [
        (name, args)
        for name, args in STAGES
        if args[0] in cli_names
        and (settings is None or CONFIGURED.get(name, lambda _s: True)(settings))
    ]


def dashboard_url(settings: Settings, stages: list[str]) -> str | None:
    """The URL notify links to: the configured one, else the dashboard this stack runs."""
    if settings.notify_dashboard_url:
        return settings.notify_dashboard_url
    if "dashboard" not in stages:
        return None
    return f"http://{settings.dashboard_host}:{settings.dashboard_port}"


@click.command()
@click.pass_context
@clear_errors(
    BrokerError, PrerequisiteMissing, JarResolutionError, TopicMismatchError, BrokerNotReady
)
def up(ctx: click.Context) -> None:
    """Start the native stack in order and keep it running until Ctrl-C (SIGINT/SIGTERM).

    Order: local broker (unless KAFKA_BOOTSTRAP_SERVERS is set), topics, then the
    ingress, one stream worker, the sink, the dashboard and, when a channel is configured
    (GROUPWATCH_NOTIFY_*_URL), alert delivery — each stage that is installed. A stage
    that dies is reported at once and the whole stack is stopped in reverse order.
    """
    settings = load_settings()
    # The ingress would refuse to start; say so before anything starts, not in its log.
    # (With no apps configured, up allows its demo app, which has a token.)
    if (problem := settings.token_problem()) is not None:
        raise click.ClickException(problem)
    broker = LocalKafka(settings)
    started_broker = False
    status = broker.start()
    click.echo(f"kafka: {status.message}")
    started_broker = not status.external and "started" in status.message
    try:
        for result in create_topics(settings):
            click.echo(f"topics: {result.outcome} {result.spec.name}")
        parent = ctx.parent
        names = (
            set(parent.command.list_commands(parent))
            if parent and isinstance(parent.command, click.Group)
            else set()
        )
        demo = ensure_demo_app(settings)
        env = stage_environment(settings, demo, dict(os.environ))
        env.setdefault("GROUPWATCH_SNAPSHOT_INTERVAL_SECONDS", UP_SNAPSHOT_INTERVAL_SECONDS)
        supervisor = Supervisor(env, click.echo)
        signal.signal(signal.SIGINT, supervisor.request_stop)
        signal.signal(signal.SIGTERM, supervisor.request_stop)
        logs = settings.state_dir / "logs"
        stages = _available(names, settings)
        link = dashboard_url(settings, [name for name, _ in stages])
        if link:
            env["GROUPWATCH_NOTIFY_DASHBOARD_URL"] = link
        for name, args in stages:
            supervisor.start(Component(name, groupwatch_argv(*args), logs / f"{name}.log"))
        _print_banner(settings, demo, names)
        try:
            dead = supervisor.wait()
            if dead is not None:
                click.echo(
                    f"error: {dead.name} exited with code {dead.exit_code()}; see "
                    f"{dead.log_path}. Stopping the stack.",
                    err=True,
                )
        finally:
            supervisor.stop_all()
        if dead is not None:
            raise SystemExit(1)
    finally:
        if started_broker:
            click.echo(f"kafka: {broker.stop().message}")


def _program() -> str:
    """How to call groupwatch from this shell: bare when it is on PATH, else its path."""
    here = Path(sys.executable).parent / "groupwatch"
    found = shutil.which("groupwatch")
    if found and Path(found).resolve() == here.resolve():
        return "groupwatch"
    if here.exists():
        try:
            return str(here.relative_to(Path.cwd()))
        except ValueError:
            return str(here)
    return f"{sys.executable} -m groupwatch"


# Settings `query` and `report` read to find this stack's sink (or its file).
CLIENT_SETTINGS = ("query_host", "query_port", "duckdb_path")


def _client_env(settings: Settings) -> str:
    """``GROUPWATCH_X=value `` for each client setting this stack runs with other than its
    default, so the banner's query/report lines work as printed from another shell."""
    pairs = []
    for name in CLIENT_SETTINGS:
        value = getattr(settings, name)
        if value != Settings.model_fields[name].default:
            pairs.append(f"GROUPWATCH_{name.upper()}={shlex.quote(str(value))} ")
    return "".join(pairs)


def _print_banner(settings: Settings, demo: DemoApp, commands: set[str]) -> None:
    gw = _program()
    client = f"{_client_env(settings)}{gw}"
    bootstrap = settings.bootstrap_servers
    topics = Topics.from_settings(settings)
    url = f"http://{settings.ingest_host}:{settings.ingest_port}{settings.callback_path}"
    lines = ["", f"groupwatch is up. Kafka: {bootstrap}"]
    if "ingest" in commands:
        lines += [
            f"  callback URL for the Chat console:  {url}",
            f"  demo app: SdkAppid {demo.sdkappid}, callback token {demo.token}"
            f" ({'generated now, ' if demo.created else ''}kept in {demo.path})",
        ]
    if "simulate" in commands and "ingest" in commands:
        lines.append(
            f"  send simulated traffic:  {gw} simulate --url {url} "
            f"--app {demo.sdkappid}:{demo.token} --count 2000"
        )
    if "query" in commands:
        lines.append(
            f'  query trends:  {client} query "SELECT * FROM failure_trend_minute '
            'ORDER BY minute DESC LIMIT 20"'
        )
    if "report" in commands:
        lines.append(f"  report:  {client} report --since 1h")
    if "dashboard" in commands:
        app = settings.sdkappids[0] if settings.sdkappids else demo.sdkappid
        lines.append(
            f"  dashboard:  http://{settings.dashboard_host}:{settings.dashboard_port}/"
            f"?app={app}&range=1h"
        )
    if "notify" in commands:
        channels = settings.notify_channels
        lines.append(
            f"  alerts delivered to:  {', '.join(channels)} (groupwatch notify; failures on "
            f"{topics.notify_failures})"
            if channels
            else "  alert delivery off: set GROUPWATCH_NOTIFY_WECOM_URL, _SLACK_URL or "
            "_WEBHOOK_URL to run groupwatch notify"
        )
    lines += [
        f"  check the broker by hand:  kcat -b {bootstrap} -L",
        f"  subscribe to window aggregates:  kcat -b {bootstrap} -C -t {topics.failure_windows} -J",
        "Press Ctrl-C to stop everything.",
    ]
    for line in lines:
        click.echo(line)
