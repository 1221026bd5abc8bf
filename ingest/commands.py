"""``groupwatch ingest``: serve the callback ingress."""

from __future__ import annotations

import click

from groupwatch.contracts import load_settings


@click.command("ingest")
@click.option("--host", default=None, help="Listen address [GROUPWATCH_INGEST_HOST].")
@click.option("--port", type=int, default=None, help="Listen port [GROUPWATCH_INGEST_PORT].")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Worker processes [GROUPWATCH_INGEST_WORKERS].",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="Request threads per worker [GROUPWATCH_INGEST_THREADS].",
)
@click.option(
    "--server",
    type=click.Choice(["granian", "gunicorn"]),
    default=None,
    help="WSGI server [GROUPWATCH_INGEST_SERVER, default granian].",
)
def ingest(
    host: str | None,
    port: int | None,
    workers: int | None,
    threads: int | None,
    server: str | None,
) -> None:
    """Serve Tencent Chat group callbacks: POST /callback -> Kafka (or the spool)."""
    import logging

    from ingest.auth import AuthConfigError, check_auth_settings
    from ingest.logs import configure
    from ingest.server import serve

    settings = load_settings()
    if not settings.sdkappids:
        raise click.UsageError("GROUPWATCH_SDKAPPIDS is empty: no SdkAppid would be accepted")
    try:
        unsigned = check_auth_settings(settings)
    except AuthConfigError as exc:
        raise click.ClickException(str(exc)) from None
    configure()
    if unsigned:
        logging.getLogger("ingest").warning(
            "callbacks of SdkAppid %s are accepted WITHOUT a Sign check "
            "(GROUPWATCH_UNSIGNED_SDKAPPIDS)",
            ", ".join(unsigned),
            extra={"unsigned_sdkappids": unsigned},
        )
    serve(settings, host=host, port=port, workers=workers, threads=threads, server=server)
