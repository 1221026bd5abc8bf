"""Serve one benchmark target under the ingress's own gunicorn settings.

python bench/ingest/serve.py {bare|ingress|spool} --port P --workers W --threads T
"""

from __future__ import annotations

import argparse
import os

from wsgi_server import WsgiAppServer  # bench/ingest, the script's own folder

from groupwatch.contracts import load_settings
from ingest.server import IngressServer, prepare_metrics_dir


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["bare", "ingress", "spool"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--dead-port", type=int, default=1)
    args = parser.parse_args()
    overrides: dict[str, object] = {}
    if args.mode == "spool":  # no broker answers: every event goes to the spool
        overrides["kafka_bootstrap_servers"] = f"127.0.0.1:{args.dead_port}"
        overrides["publish_timeout_ms"] = int(os.environ.get("BENCH_PUBLISH_TIMEOUT_MS", "800"))
    settings = load_settings(**overrides)
    prepare_metrics_dir(settings, args.port)
    options = {"port": args.port, "workers": args.workers, "threads": args.threads}
    if args.mode == "bare":
        WsgiAppServer(settings, "bare_app:app", **options).run()
    else:
        IngressServer(settings, **options).run()


if __name__ == "__main__":
    main()
