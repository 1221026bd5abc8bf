"""The ingress as a module-level WSGI app, loaded by granian inside each worker process.

Importing this module starts the worker's publisher (so a previous run's spool drains
at once) and registers its graceful close for when the worker exits after SIGTERM.
"""

from __future__ import annotations

import os
from multiprocessing import util

from groupwatch.contracts import load_settings
from ingest.app import create_app
from ingest.logs import configure
from ingest.publisher import Publisher


def _close_worker(publisher: Publisher) -> None:
    publisher.close()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid())


configure()
app = create_app(load_settings())
_publisher: Publisher = app.extensions["groupwatch.publisher"]
_publisher.start()
# multiprocessing runs its finalizers when a worker process returns (granian, SIGTERM).
util.Finalize(None, _close_worker, args=(_publisher,), exitpriority=10)
