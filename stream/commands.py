"""``groupwatch stream``: run a stream worker (several may share one consumer group)."""

from __future__ import annotations

import gc
import sys
from pathlib import Path

import click

from groupwatch.contracts.settings import load_settings

# The state holds many long-lived small objects (dedup histories, aggregates): fewer
# cyclic-GC passes over them (they were ~10 % of the profile with the defaults). Set by
# the command only, so a test running stream code in its own process keeps the defaults.
GC_THRESHOLDS = (100_000, 50, 1000)  # CPython's defaults are (700, 10, 10)
# The aiokafka consumer runs in Faust's consumer thread: every fetch request it writes and
# every result it hands over is a syscall after which it waits for the GIL, which the
# batch loop holds for up to the switch interval (CPython's default 5 ms). 1 ms lets it
# get back sooner: +10 % events/s and -5..10 % CPU per event in the peer bench
# (docs/PERFORMANCE-stream.md, "Issue 17, third round"). Set by the command only.
SWITCH_INTERVAL_S = 0.001


@click.command("stream")
@click.option(
    "--web-port", type=int, default=None, help="/metrics port [GROUPWATCH_STREAM_WEB_PORT]"
)
@click.option(
    "--worker-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Local table store of this worker [<stream dir>/worker-<web port>].",
)
@click.option(
    "--loglevel",
    default="warning",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
)
def stream(web_port: int | None, worker_dir: Path | None, loglevel: str) -> None:
    """Event-time failure windows, late events and alerts (a Faust worker)."""
    from groupwatch.contracts.startup import BrokerNotReady
    from stream.app import run
    from stream.setup import StreamSetupError

    settings = load_settings()
    port = web_port if web_port is not None else settings.stream_web_port
    directory = worker_dir or settings.stream_dir / f"worker-{port}"
    gc.set_threshold(*GC_THRESHOLDS)
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    try:
        run(settings, web_port=port, worker_dir=directory, loglevel=loglevel)
    except (StreamSetupError, BrokerNotReady) as exc:
        raise click.ClickException(str(exc)) from exc
