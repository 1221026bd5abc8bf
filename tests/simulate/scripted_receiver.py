"""A keep-alive HTTP receiver that misbehaves on chosen requests, and a quiet simulate run."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from groupwatch.cli import cli

OK = b'{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":0}'


@contextmanager
def scripted_receiver(
    *, drop: frozenset[int] = frozenset(), fail: frozenset[int] = frozenset()
) -> Iterator[tuple[int, list[bytes]]]:
    """Serve on a free port: request number n (from 1) is dropped unanswered if n in
    ``drop`` (connection closed, no status line), answered 503 if n in ``fail``, else 200.
    Yields (port, bodies answered 200)."""
    answered: list[bytes] = []
    lock = threading.Lock()
    counter = [0]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with lock:
                counter[0] += 1
                number = counter[0]
                if number not in drop and number not in fail:
                    answered.append(body)
            if number in drop:
                self.close_connection = True  # drop it: no status line, nothing
                return
            self.send_response(503 if number in fail else 200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(OK)))
            self.end_headers()
            self.wfile.write(OK)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_port, answered
    finally:
        server.shutdown()


def simulate(port: int, ledger_path: Path, count: int, *extra: str) -> dict[str, Any]:
    """`groupwatch simulate` of ``count`` plain callbacks over one connection; the ledger."""
    result = CliRunner().invoke(
        cli,
        [
            "simulate",
            "--url",
            f"http://127.0.0.1:{port}/callback",
            "--app",
            "1400000001",
            "--count",
            str(count),
            "--rate",
            "0",
            "--connections",
            "1",
            "--other-rate",
            "0",
            "--dup-rate",
            "0",
            "--late-rate",
            "0",
            "--no-storm",
            "--quiet",
            "--ledger",
            str(ledger_path),
            *extra,
        ],
    )
    assert result.exit_code == 0, result.output
    ledger: dict[str, Any] = json.loads(ledger_path.read_text())
    return ledger
