"""A keep-alive connection the server drops without a response is retried once."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from click.testing import CliRunner

from groupwatch.cli import cli

OK = b'{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":0}'


def dropping_server(drop_request_numbers: set[int]) -> tuple[ThreadingHTTPServer, list[bytes]]:
    """HTTP/1.1 keep-alive server that closes the connection, unanswered, on given requests."""
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
            if number in drop_request_numbers:
                self.close_connection = True  # drop it: no status line, nothing
                return
            with lock:
                answered.append(body)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(OK)))
            self.end_headers()
            self.wfile.write(OK)

        def log_message(self, *args: object) -> None:
            pass

    return ThreadingHTTPServer(("127.0.0.1", 0), Handler), answered


def test_dropped_keepalive_request_is_sent_again_and_counted(tmp_path: Path) -> None:
    server, answered = dropping_server({5, 17})
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        ledger_path = tmp_path / "ledger.json"
        result = CliRunner().invoke(
            cli,
            [
                "simulate",
                "--url",
                f"http://127.0.0.1:{server.server_port}/callback",
                "--app",
                "1400000001",
                "--count",
                "40",
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
                "--seed",
                "3",
                "--quiet",
                "--ledger",
                str(ledger_path),
            ],
        )
        assert result.exit_code == 0, result.output
    finally:
        server.shutdown()
    ledger = json.loads(ledger_path.read_text())
    assert ledger["non_ok"] == []
    assert ledger["totals"]["retried_closed_connection"] == 2
    assert len(answered) == 40  # every callback answered exactly once, none lost
    total = ledger["totals"]["failures"] + ledger["totals"]["sends"]
    assert total == 40
