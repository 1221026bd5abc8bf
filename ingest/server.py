"""The production WSGI server: granian (default) or gunicorn gthread; a publisher per worker.

Either way the app is loaded in each worker process after the fork, the worker's
publisher starts right away (so the spool of a previous run drains without waiting for
traffic) and is closed when the worker exits after SIGTERM (producer flushed, forwarder
stopped). granian: ``ingest.wsgi`` at import plus a multiprocessing finalizer; gunicorn:
``post_worker_init`` and ``worker_exit``. The choice is measured in
docs/PERFORMANCE-ingest.md.
"""

from __future__ import annotations

import os
from typing import Any

from gunicorn.app.base import BaseApplication

from groupwatch.contracts import Settings


def prepare_metrics_dir(settings: Settings, port: int) -> str:
    """A fresh PROMETHEUS_MULTIPROC_DIR; must run before ``ingest.metrics`` is imported.

    Unless the environment names one, it is ``<state_dir>/ingest-metrics/<port>``: a fixed
    place, emptied at each start, so a SIGKILLed server leaves nothing behind in /tmp and
    two servers on one state dir (different ports) keep their own files.
    """
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        path = str(settings.state_dir / "ingest-metrics" / str(port))
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    os.makedirs(path, exist_ok=True)
    for name in os.listdir(path):
        if name.endswith(".db"):
            os.unlink(os.path.join(path, name))
    return path


def _post_worker_init(worker: Any) -> None:
    worker.wsgi.extensions["groupwatch.publisher"].start()


def _worker_exit(server: Any, worker: Any) -> None:
    app = getattr(worker, "wsgi", None)
    if app is not None:
        app.extensions["groupwatch.publisher"].close()


def _child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


class IngressServer(BaseApplication):
    """``IngressServer(settings, host, port, workers).run()`` serves until SIGTERM/SIGINT."""

    def __init__(
        self,
        settings: Settings,
        *,
        host: str | None = None,
        port: int | None = None,
        workers: int | None = None,
        threads: int | None = None,
    ) -> None:
        self._settings = settings
        self._options: dict[str, Any] = {
            "bind": f"{host or settings.ingest_host}:{port or settings.ingest_port}",
            "workers": workers or settings.ingest_workers,
            "threads": threads or settings.ingest_threads,
            "worker_class": "gthread",
            "keepalive": settings.ingest_keepalive_seconds,
            "timeout": 30,
            "graceful_timeout": 15,
            "backlog": 2048,
            "worker_connections": 10000,
            "accesslog": None,
            "errorlog": "-",
            "loglevel": "warning",
            "proc_name": "groupwatch-ingest",
            "post_worker_init": _post_worker_init,
            "worker_exit": _worker_exit,
            "child_exit": _child_exit,
        }
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from ingest.app import create_app
        from ingest.logs import configure

        configure()
        return create_app(self._settings)


# granian's own log lines as JSON too (same formatter as the app's).
GRANIAN_LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "ingest.logs.JsonFormatter"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "stream": "ext://sys.stderr",
        }
    },
    "loggers": {
        "_granian": {"handlers": ["console"], "level": "WARNING", "propagate": False},
        "granian.access": {"handlers": ["console"], "level": "WARNING", "propagate": False},
    },
}


def serve_granian(
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    workers: int | None = None,
    threads: int | None = None,
) -> None:
    """Serve ``ingest.wsgi:app`` with granian until SIGTERM/SIGINT."""
    from granian.constants import Interfaces
    from granian.log import LogLevels
    from granian.server import Server

    Server(
        "ingest.wsgi:app",
        address=host or settings.ingest_host,
        port=port or settings.ingest_port,
        interface=Interfaces.WSGI,
        workers=workers or settings.ingest_workers,
        blocking_threads=threads or settings.ingest_threads,
        backlog=2048,
        log_level=LogLevels.warning,
        log_dictconfig=GRANIAN_LOGGING,
        respawn_failed_workers=True,
        workers_kill_timeout=30,
    ).serve()


def serve(
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    workers: int | None = None,
    threads: int | None = None,
    server: str | None = None,
) -> None:
    """Run the configured server (``GROUPWATCH_INGEST_SERVER`` unless ``server`` given)."""
    prepare_metrics_dir(settings, port or settings.ingest_port)
    if (server or settings.ingest_server) == "granian":
        serve_granian(settings, host=host, port=port, workers=workers, threads=threads)
    else:
        IngressServer(settings, host=host, port=port, workers=workers, threads=threads).run()
