"""The ingress's gunicorn settings serving another WSGI app (``"module:attr"``).

A benchmark's reference server (``bench/ingest/serve.py bare``): the same bind, workers,
threads and timeouts as ``ingest.server.IngressServer``, without the ingress's app and
its per-worker publisher.
"""

from __future__ import annotations

import importlib
from typing import Any

from groupwatch.contracts import Settings
from ingest.server import IngressServer


class WsgiAppServer(IngressServer):
    """``WsgiAppServer(settings, "module:attr", port=…).run()`` serves that app."""

    def __init__(self, settings: Settings, wsgi_app: str, **options: Any) -> None:
        self._wsgi_app = wsgi_app
        super().__init__(settings, **options)

    def load_config(self) -> None:
        super().load_config()
        # no publisher to start or close in a worker
        self.cfg.set("post_worker_init", lambda worker: None)
        self.cfg.set("worker_exit", lambda server, worker: None)

    def load(self) -> Any:
        module, _, attr = self._wsgi_app.partition(":")
        return getattr(importlib.import_module(module), attr)
