"""``groupwatch simulate``: send realistic signed callbacks to an ingress URL, write a ledger."""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime
from pathlib import Path

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from groupwatch.contracts.settings import Settings, load_settings
from groupwatch.simulate.generator import Generator, Planned, SimConfig
from groupwatch.simulate.ledger import Ledger
from groupwatch.simulate.sender import Sender, SendOptions
from groupwatch.simulate.signing import App

_console = Console(stderr=True)


def parse_event_time(value: str) -> int:
    """Milliseconds since the epoch, or an ISO-8601 time (naive = UTC)."""
    text = value.strip()
    if text.isdigit():
        ms = int(text)
        return ms * 1000 if ms < 10**11 else ms  # seconds given: make them milliseconds
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(
            f"{value!r}: give epoch milliseconds or ISO-8601 like 2026-01-01T00:00:00Z"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def apps_from(specs: tuple[str, ...], settings: Settings) -> tuple[App, ...]:
    """``--app`` values, else GROUPWATCH_SDKAPPIDS with GROUPWATCH_CALLBACK_TOKENS."""
    try:
        if specs:
            return tuple(App.parse(s) for s in specs)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--app") from None
    apps = tuple(App(a, settings.callback_tokens.get(a)) for a in settings.sdkappids)
    if not apps:
        raise click.UsageError(
            "no app: pass --app appid[:token] or set GROUPWATCH_SDKAPPIDS "
            "(and GROUPWATCH_CALLBACK_TOKENS for signed callbacks)"
        )
    return apps


def default_url(settings: Settings) -> str:
    host = settings.ingest_host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"http://{host}:{settings.ingest_port}{settings.callback_path}"


@click.command("simulate")
@click.option("--url", help="Callback URL of the ingress [default: from GROUPWATCH_INGEST_*].")
@click.option(
    "--rate",
    type=float,
    default=200.0,
    show_default=True,
    help="Callbacks per second (0 = as fast as the ingress answers).",
)
@click.option("--count", type=click.IntRange(min=1), help="Send this many callbacks.")
@click.option(
    "--duration", type=click.FloatRange(min=0, min_open=True), help="Send for this many seconds."
)
@click.option("--seed", type=int, default=1, show_default=True, help="Seed of the plan.")
@click.option(
    "--app",
    "app_specs",
    multiple=True,
    metavar="APPID[:TOKEN]",
    help="An app to simulate (repeatable) [default: GROUPWATCH_SDKAPPIDS/TOKENS].",
)
@click.option(
    "--groups",
    type=click.IntRange(min=1),
    default=200,
    show_default=True,
    help="Number of groups (Zipf-like popularity).",
)
@click.option(
    "--dup-rate",
    type=click.FloatRange(0, 1),
    default=0.02,
    show_default=True,
    help="Share of callbacks that re-deliver an earlier event.",
)
@click.option(
    "--late-rate",
    type=click.FloatRange(0, 1),
    default=0.01,
    show_default=True,
    help="Share of callbacks that are late (their window already closed).",
)
@click.option(
    "--send-ratio",
    type=click.FloatRange(0, 1),
    default=0.6,
    show_default=True,
    help="Share of Group.CallbackAfterSendMsg among analysed callbacks.",
)
@click.option(
    "--other-rate",
    type=click.FloatRange(0, 1),
    default=0.02,
    show_default=True,
    help="Share of commands groupwatch ignores (Group.CallbackBeforeSendMsg).",
)
@click.option(
    "--storm/--no-storm",
    default=True,
    show_default=True,
    help="A 10023/10006 rate-limit storm in one group, a third of the way in.",
)
@click.option(
    "--event-time-start", help="Simulated clock start: epoch ms or ISO-8601 [default: now]."
)
@click.option(
    "--speed",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="Simulated seconds per wall second at the nominal --rate.",
)
@click.option(
    "--step-ms",
    type=click.FloatRange(min=0, min_open=True),
    help="Simulated ms per callback (overrides --speed).",
)
@click.option(
    "--connections",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Keep-alive connections (one thread each).",
)
@click.option(
    "--flush/--no-flush",
    default=False,
    show_default=True,
    help="At the end, send one send+exception per touched group ahead in event time, "
    "so every window of the run closes by event time when the run's event times are in "
    "the past; at live event times the stream's clock cap holds them back and the idle "
    "close (GROUPWATCH_IDLE_CLOSE_SECONDS) closes the last windows instead.",
)
@click.option(
    "--ledger",
    "ledger_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the ledger here (.json or .csv).",
)
@click.option(
    "--window-seconds",
    type=click.IntRange(min=1),
    help="Ledger window [default: GROUPWATCH_WINDOW_SECONDS].",
)
@click.option(
    "--grace-seconds",
    type=click.IntRange(min=0),
    help="Grace used for the late rule [default: GROUPWATCH_GRACE_SECONDS].",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=5.0,
    show_default=True,
    help="HTTP timeout per callback (s).",
)
@click.option(
    "--retry-for",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Re-deliver a callback not answered 200 for up to this many seconds (0 = never).",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def simulate(
    url: str | None,
    rate: float,
    count: int | None,
    duration: float | None,
    seed: int,
    app_specs: tuple[str, ...],
    groups: int,
    dup_rate: float,
    late_rate: float,
    send_ratio: float,
    other_rate: float,
    storm: bool,
    event_time_start: str | None,
    speed: float,
    step_ms: float | None,
    connections: int,
    flush: bool,
    ledger_path: Path | None,
    window_seconds: int | None,
    grace_seconds: int | None,
    timeout: float,
    retry_for: float,
    quiet: bool,
) -> None:
    """Send realistic, signed Chat callbacks to an ingress and write a ledger of them."""
    if count is None and duration is None:
        raise click.UsageError("give --count N or --duration SECONDS")
    if duration is not None and rate == 0 and count is None:
        raise click.UsageError("--duration needs --rate > 0 (or add --count)")
    settings = load_settings()
    apps = apps_from(app_specs, settings)
    window = window_seconds or settings.window_seconds
    grace = settings.grace_seconds if grace_seconds is None else grace_seconds
    start_ms = parse_event_time(event_time_start) if event_time_start else int(time.time() * 1000)
    nominal_rate = rate if rate > 0 else 200.0
    step = step_ms if step_ms is not None else 1000.0 * speed / nominal_rate
    planned_total = count if count is not None else int(rate * (duration or 0))
    try:
        config = SimConfig(
            apps=apps,
            event_time_start_ms=start_ms,
            step_ms=step,
            seed=seed,
            groups=groups,
            window_seconds=window,
            grace_seconds=grace,
            send_ratio=send_ratio,
            other_rate=other_rate,
            dup_rate=dup_rate,
            late_rate=late_rate,
            storm_start=planned_total // 3 if storm else None,
            storm_length=max(20, planned_total // 10),
        )
        options = SendOptions(
            url=url or default_url(settings),
            connections=connections,
            rate=rate,
            timeout_s=timeout,
            retry_for_s=retry_for,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if connections * step >= config.disorder_ms:
        _console.print(
            f"[yellow]warning:[/] {connections} connections x {step:.1f} ms/step may reorder "
            f"events by more than half the grace ({grace} s); on-time events could be late"
        )

    generator = Generator(config)
    ledger = Ledger(window, grace)
    ledger.meta.update(
        url=options.url,
        seed=seed,
        apps=[a.sdkappid for a in apps],
        signed_apps=[a.sdkappid for a in apps if a.token],
        groups=groups,
        event_time_start_ms=start_ms,
        step_ms=step,
        rate=rate,
        connections=connections,
        storm_group=f"{generator.storm_group.app.sdkappid}:{generator.storm_group.group_id}"
        if storm
        else None,
        late_rule=(
            "late event time <= reference event time - (window + grace + margin); the "
            "reference is an earlier event of the same app, group and kind, answered before "
            "the late one is sent, so the group's partition has passed the late window's close"
        ),
        started_at_ms=int(time.time() * 1000),
    )

    progress = Progress(
        TextColumn("[bold]simulate"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("ok {task.fields[ok]} / non-200 {task.fields[bad]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=_console,
        disable=quiet,
    )
    stats = {"ok": 0, "bad": 0}
    total = planned_total if count is not None else None

    with progress:
        task = progress.add_task("send", total=total, ok=0, bad=0)

        def on_done(_planned: Planned, status: int) -> None:
            stats["ok" if status == 200 else "bad"] += 1
            progress.update(task, advance=1, ok=stats["ok"], bad=stats["bad"])

        sender = Sender(options, ledger, on_done=on_done)
        deadline = time.monotonic() + duration if duration is not None else None
        plan = itertools.islice(generator, count) if count is not None else generator
        interrupted = False
        try:
            sender.run(plan, deadline=deadline)
            if flush:
                flush_events = generator.flush_events()
                if total is not None:
                    progress.update(task, total=total + len(flush_events))
                sender.run(flush_events)
                ledger.meta["flush_event_time_ms"] = generator.flush_time_ms
        except KeyboardInterrupt:
            interrupted = True
    ledger.meta.update(
        finished_at_ms=int(time.time() * 1000),
        max_event_time_ms=generator.max_event_time_ms,
        interrupted=interrupted,
    )
    data = ledger.to_dict()
    if ledger_path is not None:
        try:
            ledger_path.parent.mkdir(parents=True, exist_ok=True)
            ledger.write(ledger_path)
        except (ValueError, OSError) as exc:
            raise click.ClickException(str(exc)) from None
    _print_summary(data["totals"], ledger_path)
    if interrupted:
        raise SystemExit(130)
    if stats["ok"] == 0:
        raise click.ClickException(f"no callback was answered 200 by {options.url}")


def _print_summary(totals: dict[str, int], ledger_path: Path | None) -> None:
    table = Table(title="simulate: ledger totals", show_header=True)
    table.add_column("what")
    table.add_column("count", justify="right")
    for key, value in totals.items():
        table.add_row(key, str(value))
    _console.print(table)
    if ledger_path is not None:
        _console.print(f"ledger written to {ledger_path}")
