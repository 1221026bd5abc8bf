"""Notify's Prometheus metrics and its /metrics + /healthz endpoint."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)


class NotifyMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.delivered = Counter(
            "groupwatch_notify_delivered",
            "Messages a receiver accepted, by channel and kind.",
            ["channel", "kind"],
            registry=r,
        )
        self.retried = Counter(
            "groupwatch_notify_retried",
            "Attempts that failed transiently and were retried.",
            ["channel"],
            registry=r,
        )
        self.failed = Counter(
            "groupwatch_notify_failed",
            "Messages not delivered (refused, or given up on): notify-failures records.",
            ["channel"],
            registry=r,
        )
        self.suppressed = Counter(
            "groupwatch_notify_suppressed",
            "Alerts not sent: silence, cooldown, or already_sent (read again after a crash).",
            ["why"],
            registry=r,
        )
        self.malformed = Counter(
            "groupwatch_notify_malformed",
            "Records that could not be read (notify-failures).",
            ["topic"],
            registry=r,
        )
        self.records = Counter(
            "groupwatch_notify_records", "Records read, by topic.", ["topic"], registry=r
        )
        self.latency = Histogram(
            "groupwatch_notify_delivery_seconds",
            "From reading the record to the receiver accepting the message (retries and "
            "rate-limit waits included).",
            ["channel"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900),
            registry=r,
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class MetricsServer:
    """/metrics and /healthz on a daemon thread."""

    def __init__(self, metrics: NotifyMetrics, host: str, port: int) -> None:
        outer = metrics

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] == "/metrics":
                    body, ctype, code = outer.exposition(), CONTENT_TYPE_LATEST, 200
                elif self.path.split("?", 1)[0] == "/healthz":
                    body, ctype, code = b"ok\n", "text/plain", 200
                else:
                    body, ctype, code = b"not found\n", "text/plain", 404
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, name="notify-metrics", daemon=True
        )

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
