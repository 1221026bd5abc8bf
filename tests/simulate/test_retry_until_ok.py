"""``--retry-for``: a callback answered 5xx is delivered again until it gets 200."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from click.testing import CliRunner

from groupwatch.cli import cli

OK = b'{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":0}'


def failing_server(fail_request_numbers: set[int]) -> tuple[ThreadingHTTPServer, list[bytes]]:
    """Answers 503 on the given request numbers, 200 otherwise; records the 200'd bodies."""
    answered: list[bytes] = []
    lock = threading.Lock()
    counter = [0]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with lock:
                counter[0] += 1
                failed = counter[0] in fail_request_numbers
                if not failed:
                    answered.append(body)
            self.send_response(503 if failed else 200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(OK)))
            self.end_headers()
            self.wfile.write(OK)

        def log_message(self, *args: object) -> None:
            pass

    return ThreadingHTTPServer(("127.0.0.1", 0), Handler), answered


def run(tmp_path: Path, port: int, retry_for: str) -> dict[str, object]:
    ledger_path = tmp_path / f"ledger-{retry_for}.json"
    result = CliRunner().invoke(
        cli,
        [
            "simulate",
            "--url",
            f"http://127.0.0.1:{port}/callback",
            "--app",
            "1400000001",
            "--count",
            "30",
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
            "--retry-for",
            retry_for,
            "--ledger",
            str(ledger_path),
        ],
    )
    assert result.exit_code == 0, result.output
    ledger: dict[str, object] = json.loads(ledger_path.read_text())
    return ledger


def test_503_is_retried_until_200_and_counted(tmp_path: Path) -> None:
    server, answered = failing_server({4, 5, 12})
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        ledger = run(tmp_path, server.server_port, "5")
    finally:
        server.shutdown()
    totals = ledger["totals"]
    assert isinstance(totals, dict)
    assert ledger["non_ok"] == []
    assert totals["attempt_failed_503"] == 3 and totals["retried_non_ok"] == 3
    assert len(answered) == 30 and totals["failures"] + totals["sends"] == 30


def test_without_retry_a_503_stays_non_ok(tmp_path: Path) -> None:
    server, answered = failing_server({4})
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        ledger = run(tmp_path, server.server_port, "0")
    finally:
        server.shutdown()
    non_ok = ledger["non_ok"]
    assert isinstance(non_ok, list) and [r["status"] for r in non_ok] == [503]
    assert len(answered) == 29
