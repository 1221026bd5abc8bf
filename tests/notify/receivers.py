"""Real HTTP receivers for the notify tests: one ThreadingHTTPServer per channel type,
recording every request and answering from a script (500s, 429 + Retry-After, slow
answers, refusals by body content) before settling on the channel's success answer."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# One scripted answer: a status, (status, headers), (status, headers, body), or "slow"
# (answer 200 after SLOW_S, when the client has timed out).
Answer = int | tuple[int, dict[str, str]] | tuple[int, dict[str, str], bytes] | str
SLOW_S = 2.5


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    at: float

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def key(self) -> str:
        return self.headers.get("Idempotency-Key", "")

    @property
    def text(self) -> str:
        """The message text of a WeCom (markdown.content) or Slack (text) request."""
        data = self.json()
        if "markdown" in data:
            return str(data["markdown"]["content"])
        return str(data.get("text", ""))


@dataclass
class Receiver:
    """``kind``: "wecom" (answers {"errcode": 0}), "slack" ("ok"), "webhook" (204)."""

    kind: str
    script: list[Answer] = field(default_factory=list)
    refuse: Callable[[bytes], bool] = lambda _body: False
    delay: float = 0.0  # every answer waits this long (a slow but working receiver)
    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    def start(self, port: int = 0) -> Receiver:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if outer.delay:
                    time.sleep(outer.delay)
                status, headers, payload = outer.answer(body)
                if status == -1:  # slow: answer only after the client gave up
                    time.sleep(SLOW_S)
                    status = 200
                    payload = outer.ok_body()
                with outer.lock:
                    outer.requests.append(
                        Request(
                            self.path, dict(self.headers.items()), body, status, time.monotonic()
                        )
                    )
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def ok_body(self) -> bytes:
        if self.kind == "wecom":
            return b'{"errcode":0,"errmsg":"ok"}'
        return b"ok" if self.kind == "slack" else b""

    def answer(self, body: bytes) -> tuple[int, dict[str, str], bytes]:
        if self.refuse(body):
            return 400, {}, b"invalid_payload"
        with self.lock:
            step = self.script.pop(0) if self.script else None
        if step is None:
            return (204 if self.kind == "webhook" else 200), {}, self.ok_body()
        if step == "slow":
            return -1, {}, b""
        if isinstance(step, tuple):
            return step[0], step[1], step[2] if len(step) == 3 else b"busy"
        return int(step), {}, b"error"

    def accepted(self) -> list[Request]:
        with self.lock:
            return [r for r in self.requests if 200 <= r.status < 300]

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def wait_until(predicate: Callable[[], bool], timeout: float, what: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what()
        time.sleep(0.2)
