"""Through the real WSGI server process (granian and gunicorn, two workers each)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
import requests

from groupwatch.contracts import ExceptionEvent, Settings, Topics, decode
from tests.support.callbacks import OK_REPLY, SPEC_SAMPLE, query, signed_query
from tests.support.ingest import ServerProcess
from tests.support.kafka import read_topic
from tests.support.metrics import metric

pytestmark = pytest.mark.kafka


def _accepted_count(http: requests.Session, url: str, want: float, within: float) -> float:
    """The summed 200-count of exception callbacks in /metrics, polled until ``want``."""
    deadline = time.monotonic() + within
    count = 0.0
    while True:
        text = http.get(f"{url}/metrics", timeout=5).text
        count = metric(
            text,
            "groupwatch_ingest_requests_total",
            command="Group.CallbackSendMsgException",
            status="200",
        )
        if count >= want or time.monotonic() > deadline:
            return count
        time.sleep(0.1)


@pytest.mark.parametrize("server_kind", ["granian", "gunicorn"])
def test_real_server_publishes_serves_metrics_and_stops_cleanly(
    make_settings: Callable[..., Settings], topics: Topics, tmp_path: Path, server_kind: str
) -> None:
    settings = make_settings()
    server = ServerProcess(
        settings, {"GROUPWATCH_INGEST_SERVER": server_kind}, tmp_path / "ingress.log"
    )
    try:
        with requests.Session() as http:  # keep-alive, like the Chat backend
            for i in range(10):
                body = orjson.dumps({**SPEC_SAMPLE, "Random": i})
                params = signed_query() if i % 2 else query()
                reply = http.post(f"{server.url}/callback", params=params, data=body, timeout=5)
                assert reply.status_code == 200 and reply.json() == OK_REPLY
            before = http.post(
                f"{server.url}/callback",
                params=query("Group.CallbackBeforeSendMsg"),
                data=b"{}",
                timeout=5,
            )
            assert before.json() == OK_REPLY
            bad = http.post(f"{server.url}/callback", params=query(), data=b"{", timeout=5)
            assert bad.status_code == 400 and "JSON" in bad.json()["ErrorInfo"]
            assert http.get(f"{server.url}/callback", timeout=5).status_code == 405
            assert http.get(f"{server.url}/readyz", timeout=5).json()["broker"] is True
            # Request metrics reach the shared files within the 0.2 s flush period of
            # each worker's poll thread (docs/INGEST.md), so wait for that, no longer.
            assert _accepted_count(http, server.url, want=10.0, within=5.0) == 10.0
    finally:
        code = server.stop()
    assert code == 0
    records = read_topic(settings, Topics.from_settings(settings).exceptions, expect=10)
    assert sorted(decode(r.value(), ExceptionEvent).random or 0 for r in records) == list(range(10))
    assert len(read_topic(settings, Topics.from_settings(settings).dlq, expect=1)) == 1
    assert not [p for p in settings.spool_path.glob("*.spool") if p.stat().st_size]
