"""``groupwatch dashboard``: the dashboard on GROUPWATCH_DASHBOARD_HOST:PORT until stopped."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

import click
from werkzeug.serving import make_server

from groupwatch.contracts import load_settings


@click.command()
@click.option("--log-level", default="INFO", show_default=True, help="Python log level.")
def dashboard(log_level: str) -> None:
    """Serve the web dashboard (overview, group, error-code and alert pages).

    It reads the sink's snapshot (GROUPWATCH_SNAPSHOT_PATH) read-only, reopened whenever
    the sink swaps a new one in (every GROUPWATCH_SNAPSHOT_INTERVAL_SECONDS), or the
    database file of a stopped stack; it never writes.
    """
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    from analytics.dashboard.app import create_app

    settings = load_settings()
    app = create_app(settings)
    host, port = settings.dashboard_host, settings.dashboard_port
    try:
        server = make_server(host, port, app, threaded=True)
    except OSError as exc:
        raise click.ClickException(
            f"the dashboard cannot listen on {host}:{port} ({exc.strerror}); "
            "set GROUPWATCH_DASHBOARD_PORT"
        ) from exc

    def stop(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    click.echo(f"dashboard: http://{host}:{server.server_port}/", err=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        app.extensions["groupwatch_source"].close()
