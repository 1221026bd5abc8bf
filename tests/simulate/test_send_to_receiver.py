"""End to end over HTTP: `groupwatch simulate` against a stand-in receiver.

The receiver is a tiny Flask app (not the real ingress) that checks every signature and
recomputes windows, duplicates and lateness from what it accepted; the ledger must agree.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask, request

from groupwatch.cli import cli
from groupwatch.contracts.catalog import error_category
from groupwatch.contracts.keys import make_event_id

TOKENS = {"1400000001": "xxxxyyyy", "1400000002": None}
# A long grace (60 s) against a small clock step (150 ms): thread scheduling would have to
# hold one callback back for 400 others before an on-time event could look late.
WINDOW_MS, GRACE_MS = 60_000, 60_000
OK = {"ActionStatus": "OK", "ErrorInfo": "", "ErrorCode": 0}


def keep_alive_server(app: Flask) -> ThreadingHTTPServer:
    """An HTTP/1.1 keep-alive front for the Flask app (werkzeug's dev server always closes)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            response = app.test_client().post(
                self.path,
                data=body,
                content_type=self.headers.get("Content-Type"),
                environ_overrides={"REMOTE_PORT": self.client_address[1]},
            )
            payload = response.get_data()
            self.send_response(response.status_code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    return ThreadingHTTPServer(("127.0.0.1", 0), Handler)


class Receiver:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.accepted: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.refused: Counter[int] = Counter()
        self.connections: set[int] = set()
        self.app = Flask("receiver")
        self.app.add_url_rule("/callback", view_func=self.callback, methods=["POST"])

    def callback(self) -> tuple[dict[str, Any], int]:
        q = request.args.to_dict()
        with self.lock:
            self.connections.add(request.environ["REMOTE_PORT"])
        appid = q.get("SdkAppid", "")
        if appid not in TOKENS or q.get("contenttype") != "json":
            return self._refuse(403)
        token = TOKENS[appid]
        if token is not None:
            expected = hashlib.sha256((token + q.get("RequestTime", "")).encode()).hexdigest()
            if not hmac.compare_digest(expected, q.get("Sign", "")):
                return self._refuse(401)
            if abs(time.time() - int(q["RequestTime"])) > 60:
                return self._refuse(401)
        body = json.loads(request.get_data())
        if body["CallbackCommand"] != q["CallbackCommand"]:
            return self._refuse(400)
        if body["Random"] % 11 == 0:  # a deterministic share the receiver cannot store
            return self._refuse(503)
        with self.lock:
            self.accepted.append((q, body))
        return OK, 200

    def _refuse(self, status: int) -> tuple[dict[str, Any], int]:
        with self.lock:
            self.refused[status] += 1
        return {"ActionStatus": "FAIL", "ErrorCode": status, "ErrorInfo": "refused"}, status


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    rec = Receiver()
    server = keep_alive_server(rec.app)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield rec, f"http://127.0.0.1:{server.server_port}/callback"
    finally:
        server.shutdown()
        thread.join()


Ident = tuple[str, str, str, int]


def ident_of(q: dict[str, str], body: dict[str, Any]) -> Ident:
    return (q["SdkAppid"], body["GroupId"], body["From_Account"], body["Random"])


def recompute(accepted: list[tuple[dict[str, str], dict[str, Any]]], skip: set[Ident]) -> dict:
    """Windows as a stream would see them, per group: dedup, then late by the group's time.

    A group's events share a partition, so an event late by its own group's max event time
    is late on its partition too. ``skip``: events whose lateness the ledger cannot know.
    """
    seen: set[Ident] = set()
    group_time: dict[tuple[str, str, str], int] = {}
    failures: dict[tuple, list[int | set[str]]] = {}
    sends: Counter[tuple] = Counter()
    late: set[Ident] = set()
    for q, body in accepted:
        cmd = q["CallbackCommand"]
        if cmd not in ("Group.CallbackSendMsgException", "Group.CallbackAfterSendMsg"):
            continue
        ident = ident_of(q, body)
        if ident in seen:
            continue
        seen.add(ident)
        t = int(body["EventTime"])
        ws = t - t % WINDOW_MS
        gkey = (q["SdkAppid"], body["GroupId"], cmd)
        if ws + WINDOW_MS + GRACE_MS <= group_time.get(gkey, 0):
            late.add(ident)
            continue
        group_time[gkey] = max(group_time.get(gkey, 0), t)
        if ident in skip:
            continue
        if cmd == "Group.CallbackAfterSendMsg":
            sends[(ws, q["SdkAppid"], body["GroupId"])] += 1
        else:
            cell = failures.setdefault(
                (ws, q["SdkAppid"], body["GroupId"], body["ErrorCode"]), [0, set()]
            )
            cell[0] += 1  # type: ignore[operator]
            cell[1].add(body["From_Account"])  # type: ignore[union-attr]
    return {"failures": failures, "sends": sends, "late": late}


def test_simulate_ledger_equals_what_the_receiver_stored(
    receiver: tuple[Receiver, str], tmp_path: Path
) -> None:
    rec, url = receiver
    ledger_path = tmp_path / "ledger.json"
    result = CliRunner().invoke(
        cli,
        [
            "simulate",
            "--url",
            url,
            "--count",
            "1200",
            "--rate",
            "0",
            "--seed",
            "3",
            "--app",
            "1400000001:xxxxyyyy",
            "--app",
            "1400000002",
            "--groups",
            "40",
            "--dup-rate",
            "0.05",
            "--late-rate",
            "0.03",
            "--step-ms",
            "150",
            "--event-time-start",
            "2026-01-01T00:00:00Z",
            "--connections",
            "4",
            "--flush",
            "--window-seconds",
            "60",
            "--grace-seconds",
            "60",
            "--ledger",
            str(ledger_path),
            "--quiet",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    ledger = json.loads(ledger_path.read_text())
    totals = ledger["totals"]

    assert set(rec.refused) <= {503}, rec.refused  # every signature and app id was valid
    assert totals["non_ok"] == rec.refused[503] > 0
    assert len(rec.connections) <= 8  # keep-alive: a few connections, not one per request
    answered_ok = sum(totals.get(f"{kind}_ok", 0) for kind in ("exception", "send", "other"))
    assert answered_ok == len(rec.accepted)
    assert totals["duplicates_ok"] > 0 and totals["flush_events"] > 0
    assert ledger["meta"]["event_time_start_ms"] == 1_767_225_600_000

    by_event_id = {
        make_event_id(*ident_of(q, body), int(body["EventTime"])): ident_of(q, body)
        for q, body in rec.accepted
    }
    late_rows = ledger["late"]
    ambiguous = {by_event_id[r["event_id"]] for r in late_rows if r["ambiguous"]}
    got = recompute(rec.accepted, skip=ambiguous)

    # Every firm late event of the ledger is late by its own group's time; nothing else is.
    firm_late = {by_event_id[r["event_id"]] for r in late_rows if not r["ambiguous"]}
    assert len(firm_late) > 5 and firm_late <= got["late"]
    assert got["late"] <= firm_late | ambiguous

    assert {
        (r["window_start_ms"], r["sdkappid"], r["group_id"], r["error_code"]): (
            r["failures"],
            r["senders"],
            r["error_category"],
        )
        for r in ledger["failures"]
    } == {
        cell: (n, len(senders), error_category(cell[3]))
        for cell, (n, senders) in got["failures"].items()
    }
    assert {
        (r["window_start_ms"], r["sdkappid"], r["group_id"]): r["sends"] for r in ledger["sends"]
    } == dict(got["sends"])
    assert len({r["window_start_ms"] for r in ledger["failures"]}) >= 4
