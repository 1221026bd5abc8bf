"""``groupwatch sink``, ``groupwatch query`` and ``groupwatch report``.

Heavy modules are imported inside the commands so ``groupwatch query`` starts quickly.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import click

from groupwatch.contracts import load_settings

FORMATS = ("table", "csv", "json")


CLIENT_NICENESS = 10


def _yield_cpu_to_the_pipeline() -> None:
    """Query clients run at lower CPU priority: ad-hoc SQL never slows the sink."""
    with suppress(AttributeError, OSError):
        os.nice(CLIENT_NICENESS)


@contextmanager
def _clear_errors() -> Iterator[None]:
    """Expected failures (refused SQL, busy file, bad settings) as one ``Error:`` line."""
    import duckdb
    from pydantic import ValidationError

    from analytics.db import DatabaseBusyError
    from analytics.guard import QueryRefused
    from analytics.migrations import SchemaTooNewError
    from analytics.served import QueryFailed, QueryTimeout

    kinds: tuple[type[BaseException], ...] = (
        QueryRefused,
        QueryTimeout,
        QueryFailed,
        DatabaseBusyError,
        SchemaTooNewError,
        FileNotFoundError,
        duckdb.Error,
        ValueError,
    )
    try:
        yield
    except ValidationError as exc:
        raise click.ClickException(f"invalid settings: {exc}") from exc
    except kinds as exc:
        raise click.ClickException(str(exc)) from exc


# The apply thread takes the GIL back from the fetch thread after every DuckDB call
# (register, the transaction's script, unregister). With Python's default switch interval
# (5 ms) each of those waited up to 5 ms (more on a busy host) for a busy fetch thread to
# let go: applying batches next to a thread building batches with msgspec took 85 us/row
# instead of 5 (bench/analytics/bench_apply_gil.py, docs/PERFORMANCE-analytics.md).
# While the sink runs, the interval is 0.2 ms.
SWITCH_INTERVAL_SECONDS = 0.0002


@contextmanager
def sink_process_tuning() -> Iterator[None]:
    """The process-wide settings ``groupwatch sink`` runs the sink loop under, restored after.

    Every record allocates several GC-tracked objects (Kafka message, struct, lists) that
    live until its batch is applied and never form cycles. With automatic collection the
    collector ran dozens of times per batch, re-scanning every live record each time (a
    quarter of the sink's CPU in the profile, see docs/PERFORMANCE-analytics.md). So
    automatic collection is off, objects alive at start (modules, settings) are frozen
    out of every later scan, and the loop collects between batches
    (``analytics.sink.GC_EVERY_SECONDS``); the switch interval is
    ``SWITCH_INTERVAL_SECONDS``. Only the command (and the benches that measure it) sets
    these: a ``Sink`` run in a test process leaves the interpreter as it found it.
    """
    gc_was_enabled = gc.isenabled()
    gc.freeze()
    gc.disable()
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
    try:
        yield
    finally:
        if gc_was_enabled:
            gc.enable()
        gc.unfreeze()
        sys.setswitchinterval(switch_interval)


@click.command()
@click.option("--log-level", default="INFO", show_default=True, help="Python log level.")
def sink(log_level: str) -> None:
    """Consume exceptions, sends, failure windows and alerts into DuckDB (exactly once).

    Also serves read-only SQL on GROUPWATCH_QUERY_HOST:GROUPWATCH_QUERY_PORT and publishes
    a snapshot file every GROUPWATCH_SNAPSHOT_INTERVAL_SECONDS.
    """
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    with _clear_errors():
        from analytics.sink import Sink
        from groupwatch.contracts.startup import BrokerNotReady

        worker = Sink(load_settings())
    worker.install_signal_handlers()
    try:
        with sink_process_tuning():
            worker.run()
    except BrokerNotReady as exc:
        raise click.ClickException(str(exc)) from exc
    except RuntimeError as exc:
        # e.g. a fatal consumer error: exit non-zero so a supervisor restarts the sink
        # (it resumes from the offsets stored in DuckDB)
        cause = f": {exc.__cause__}" if exc.__cause__ is not None else ""
        logging.getLogger("groupwatch.sink").error("sink stopped: %s%s", exc, cause)
        raise SystemExit(1) from exc


@click.command()
@click.argument("sql")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option("--timing", is_flag=True, help="Print the query's round trip time on stderr.")
def query(sql: str, fmt: str, timing: bool) -> None:
    """Run one read-only SELECT against the running sink (or the file when none runs)."""
    _yield_cpu_to_the_pipeline()
    with _clear_errors():
        from rich.console import Console

        from analytics.client import run_query
        from analytics.output import render

        started = time.perf_counter()
        answer = run_query(load_settings(), sql)
        elapsed_ms = (time.perf_counter() - started) * 1000
        render(answer.table, fmt, Console(soft_wrap=True), answer.truncated)
    if timing:
        click.echo(f"query: {elapsed_ms:.1f} ms via {answer.source}", err=True)


def _since_ms(value: str) -> int:
    units: dict[str, Callable[[float], float]] = {
        "s": lambda n: n,
        "m": lambda n: n * 60,
        "h": lambda n: n * 3600,
        "d": lambda n: n * 86400,
    }
    value = value.strip().lower()
    if len(value) >= 2 and value[-1] in units:
        try:
            number = float(value[:-1])
        except ValueError:
            number = -1
        if number > 0:
            return int(units[value[-1]](number) * 1000)
    raise click.BadParameter(f"{value!r}: use a duration like 90s, 15m, 1h or 2d")


@click.command()
@click.option("--since", default="1h", show_default=True, help="Window: 90s, 15m, 1h, 2d.")
@click.option("--app", default=None, help="Only this SdkAppid.")
@click.option("--top", default=10, show_default=True, type=int, help="Rows per top list.")
@click.option(
    "--chart",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write a chart: out.png, or out.html (the png embedded).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON instead.")
def report(since: str, app: str | None, top: int, chart: Path | None, as_json: bool) -> None:
    """Failures report: totals, per-minute trend, top groups, codes, categories, alerts."""
    _yield_cpu_to_the_pipeline()
    since_ms = _since_ms(since)
    with _clear_errors():
        import orjson
        from rich.console import Console

        from analytics.client import runner
        from analytics.report import ReportParams, build_report
        from analytics.report_view import print_report

        params = ReportParams(since_ms=since_ms, app=app, top=top)
        if chart is not None:
            from analytics.chart import check_chart_path

            check_chart_path(chart)
        result = build_report(runner(load_settings()), params)
        if as_json:
            click.echo(orjson.dumps(result.as_json(), default=str).decode())
        else:
            print_report(result, Console())
        if chart is not None:
            from analytics.chart import write_chart

            write_chart(result, chart)
            click.echo(f"chart written to {chart}", err=True)
