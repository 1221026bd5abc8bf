"""Callback requests as Tencent Cloud Chat sends them: query strings (signed or not), the
spec's sample body, numbered exception bodies, and a steady HTTP load of them."""

from __future__ import annotations

import time
from typing import Any

import orjson
import requests

from groupwatch.contracts import CMD_SEND_MSG_EXCEPTION
from ingest.auth import make_sign

APPID = "1400000001"
SIGNED_APPID = "1400000002"
TOKEN = "xxxxyyyy"
OK_REPLY = {"ActionStatus": "OK", "ErrorInfo": "", "ErrorCode": 0}

# The spec's sample request, made valid JSON (comments removed, missing comma added).
SPEC_SAMPLE: dict[str, Any] = {
    "CallbackCommand": "Group.CallbackSendMsgException",
    "GroupId": "@TGS#2J4SZEAEL",
    "Type": "Public",
    "From_Account": "jared",
    "Operator_Account": "admin",
    "Random": 123456,
    "OnlineOnlyFlag": 1,
    "MsgBody": [{"MsgType": "TIMTextElem", "MsgContent": {"Text": "red packet"}}],
    "CloudCustomData": "your cloud custom data",
    "ErrorCode": 10023,
    "ErrorInfo": "msg count exceeds limit,please retry later",
    "EventTime": "1670574414123",
}


def query(
    command: str = CMD_SEND_MSG_EXCEPTION, appid: str = APPID, **extra: str
) -> dict[str, str]:
    params = {
        "SdkAppid": appid,
        "CallbackCommand": command,
        "contenttype": "json",
        "ClientIP": "10.0.0.7",
        "OptPlatform": "iOS",
    }
    params.update(extra)
    return params


def signed_query(command: str = CMD_SEND_MSG_EXCEPTION, **extra: str) -> dict[str, str]:
    now = str(int(time.time()))
    return query(command, SIGNED_APPID, RequestTime=now, Sign=make_sign(TOKEN, now), **extra)


def exception_body(i: int, *, group: str = "@TGS#load", event_time: int | None = None) -> bytes:
    body = dict(SPEC_SAMPLE)
    body.update(
        GroupId=f"{group}{i % 7}",
        From_Account=f"user{i}",
        Random=i,
        EventTime=event_time if event_time is not None else int(time.time() * 1000),
    )
    return orjson.dumps(body)


class Load:
    """Steady POST load from a few threads (keep-alive sessions) until ``stop()``."""

    def __init__(self, url: str, *, threads: int = 4, first: int = 0, pause: float = 0.02) -> None:
        import threading

        self.url = url
        self.results: list[tuple[int, int, float]] = []  # (index, status or -1, seconds)
        self.answered_at: dict[int, float] = {}  # index -> monotonic time of its 200
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._next = first
        self._pause = pause
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for t in self._threads:
            t.start()

    def _take(self) -> int:
        with self._lock:
            self._next += 1
            return self._next

    def _run(self) -> None:
        session = requests.Session()
        while not self._stopping.is_set():
            i = self._take()
            started = time.monotonic()
            try:
                reply = session.post(
                    f"{self.url}/callback", params=query(), data=exception_body(i), timeout=10
                )
                status = reply.status_code
            except requests.RequestException:
                status = -1
                session = requests.Session()
            done = time.monotonic()
            with self._lock:
                self.results.append((i, status, done - started))
                if status == 200:
                    self.answered_at[i] = done
            self._stopping.wait(self._pause)

    def stop(self) -> None:
        self._stopping.set()
        for t in self._threads:
            t.join(15)

    def accepted(self) -> set[int]:
        return {i for i, status, _ in self.results if status == 200}


def event_id_of(i: int) -> str:
    from groupwatch.contracts import make_event_id

    return make_event_id(APPID, f"@TGS#load{i % 7}", f"user{i}", i, 0)
