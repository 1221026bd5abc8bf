"""Notify's decisions and words without Kafka: messages, links, the cooldown, silences,
resolved notices, digests and rate limits, signatures, and one delivery against real
local HTTP receivers (retries, Retry-After, refusals)."""

from __future__ import annotations

import hashlib
import hmac
import threading
import time

import msgspec
import pytest

from groupwatch.contracts.keys import iso_utc
from groupwatch.contracts.records import Alert, ErrorCount, decode
from notify.channels import SIGNATURE_HEADER, Channel, RateLimiter
from notify.delivery import Outgoing, Policy, deliver, retry_after_seconds
from notify.message import SLACK, WECOM, group_url, render, render_digest
from notify.notice import Notice, alert_id
from notify.plan import Planner, Silences
from notify.state import NotifyState, StateFile
from tests.notify.receivers import Receiver
from tests.support import events
from tests.support.events import APP, BASE_MS
from tests.support.ports import free_port

W = 60_000


def alert(
    group: str,
    ws: int = BASE_MS,
    failures: int = 40,
    reason: str = "threshold",
    codes: tuple[int, ...] = (10023,),
    app: str = APP,
) -> Alert:
    a = events.alert(app, group, ws, failures, ws + W + 30_000)
    return msgspec.structs.replace(
        a,
        reason=reason,  # type: ignore[arg-type]
        baseline=4.0 if reason == "baseline" else None,
        group_sends=60,
        failure_ratio=failures / (failures + 60),
        top_error_codes=[
            ErrorCount(error_code=c, error_category="rate_limited", failures=failures // len(codes))
            for c in codes
        ],
    )


def final(group: str, ws: int, failures: int) -> object:
    return events.window(APP, group, 10023, ws, failures, final=True, updated_ms=ws + W)


def test_an_alert_message_says_what_a_person_needs() -> None:
    a = alert("g/1 #x", codes=(10023, 10006))
    text = render(WECOM, Notice("alert", alerts=(a,)), "http://dash:8780/")
    for needed in (
        "`g/1 #x`",
        f"`{APP}`",
        "10023 rate_limited",
        "message frequency exceeded the limit",
        "10006",
        "operation frequency limit",
        "40 in the window",
        "40.0%",
        "60 sent",
        "threshold: ≥ 20 failures",
        iso_utc(BASE_MS)[:10],
        " UTC",
        "(http://dash:8780/group/g%2F1%20%23x?app=1400000001&range=1h)",
    ):
        assert needed in text, (needed, text)
    assert text.startswith('## <font color="warning">')
    assert len(text.encode()) <= 4096
    # Slack: its own link syntax, & < > escaped
    slack = render(SLACK, Notice("alert", alerts=(alert("a<b>&c"),)), "http://d")
    assert "a&lt;b&gt;&amp;c" in slack and "<http://d/group/a%3Cb%3E%26c?app=" in slack


def test_the_group_link_format_is_fixed() -> None:
    assert group_url("http://127.0.0.1:8780", "1400000001", "@TGS#2C5SZEAEF") == (
        "http://127.0.0.1:8780/group/%40TGS%232C5SZEAEF?app=1400000001&range=1h"
    )


def test_no_link_without_a_dashboard_and_both_reasons_in_one_message() -> None:
    text = render(WECOM, Notice("alert", alerts=(alert("g"), alert("g", reason="baseline"))), None)
    assert "dashboard" not in text and "threshold: ≥ 20" in text and "baseline: ≥ 3 x" in text


def test_a_digest_keeps_every_group_within_4096_bytes_a_part() -> None:
    notices = [Notice("alert", alerts=(alert(f"group-{i:04d}-" + "x" * 30),)) for i in range(300)]
    parts = render_digest(WECOM, notices, "http://dash", "300 groups alerted.")
    assert len(parts) > 1
    assert all(len(p.encode()) <= 4096 for p in parts)
    joined = "\n".join(parts)
    assert all(f"group-{i:04d}-" in joined for i in range(300))


def test_cooldown_silences_merge_and_replay() -> None:
    state = NotifyState()
    silences = Silences(
        apps=frozenset({"1400000009"}), groups=frozenset({f"{APP}:quiet"}), codes=frozenset({10017})
    )
    p = Planner(state, cooldown_seconds=300, silences=silences)
    out = p.plan(
        [
            alert("g1"),
            alert("g1", reason="baseline"),  # merged into one notice
            alert("g1", ws=BASE_MS + W),  # within the cooldown
            alert("g1", ws=BASE_MS + 5 * W),  # cooldown over (300 s)
            alert("x", app="1400000009"),
            alert("quiet"),  # silenced app, group
            alert("muted", codes=(10017,)),  # every code silenced
            alert("mixed", codes=(10017, 10023)),  # one code not silenced: sent
        ]
    )
    assert [(n.group_id, len(n.alerts), n.window_start_ms) for n in out.notices] == [
        ("g1", 2, BASE_MS),
        ("g1", 1, BASE_MS + 5 * W),
        ("mixed", 1, BASE_MS),
    ]
    assert out.suppressed == {"cooldown": 1, "silence": 3}
    # the same records read again after a crash that saved the state: nothing twice
    again = p.plan([alert("g1", ws=BASE_MS + 5 * W), alert("mixed")])
    assert again.notices == [] and again.suppressed == {"already_sent": 2}


def test_resolved_when_a_later_window_is_under_the_threshold_or_empty(tmp_path) -> None:
    state = NotifyState()
    p = Planner(state, cooldown_seconds=0, silences=Silences())
    p.plan([alert("g1", failures=40), alert("g2", failures=30)])
    out = p.plan([final("g1", BASE_MS, 40), final("g1", BASE_MS + W, 25)])  # still over
    assert out.notices == []
    out = p.plan([final("g1", BASE_MS + 2 * W - 1, 3)])
    (n,) = out.notices
    assert n.kind == "resolved" and n.resolved is not None
    assert (n.group_id, n.resolved.failures, n.resolved.alert_failures) == ("g1", 3, 40)
    # g2 had no failures at all since: resolved once the finals are two windows past it
    out = p.plan([final("other", BASE_MS + 2 * W, 1)])
    assert [(x.group_id, x.kind, x.resolved.failures) for x in out.notices if x.resolved] == [
        ("g2", "resolved", 0)
    ]
    assert state.open == {}
    # the state survives a restart through the file
    sf = StateFile(tmp_path / "state.json")
    sf.save(state)
    assert sf.load() == state


def _channel(name: str, limit: int = 20, threshold: int = 10) -> Channel:
    return Channel(name, "http://127.0.0.1:1/x", RateLimiter(limit), None, threshold, "s3cret")


def test_many_groups_in_one_window_become_one_digest() -> None:
    notices = [Notice("alert", alerts=(alert(f"g{i}"),)) for i in range(12)]
    notices.append(Notice("alert", alerts=(alert("later", ws=BASE_MS + W),)))
    out = _channel("wecom").messages(notices)
    assert [m.kind for m in out] == ["alert", "digest"]
    digest = msgspec.json.decode(out[1].body)["markdown"]["content"]
    assert all(f"`g{i}`" in digest for i in range(12)) and "12 groups alerting" in digest


def test_beyond_the_rate_limit_the_rest_is_one_digest_never_dropped() -> None:
    ch = _channel("slack", limit=5, threshold=100)
    notices = [Notice("alert", alerts=(alert(f"g{i}", ws=BASE_MS + i * W),)) for i in range(9)]
    out = ch.messages(notices)
    assert [m.kind for m in out] == ["alert"] * 4 + ["digest"]
    text = msgspec.json.decode(out[-1].body)["text"]
    assert all(f"`g{i}`" in text for i in range(4, 9))
    assert set(out[-1].alert_keys) == {n.key for n in notices[4:]}


def test_the_webhook_gets_each_record_signed_with_its_stable_key() -> None:
    a, b = alert("g1"), alert("g1", reason="baseline")
    out = _channel("webhook").messages([Notice("alert", alerts=(a, b))])
    assert [m.key for m in out] == [alert_id(a), alert_id(b)]
    for m, rec in zip(out, (a, b), strict=True):
        assert decode(m.body, Alert) == rec
        expected = hmac.new(b"s3cret", m.body, hashlib.sha256).hexdigest()
        assert m.headers[SIGNATURE_HEADER] == f"sha256={expected}"
        assert m.headers["Idempotency-Key"] == m.key
    # a re-delivery of the same record (decoded again) has the same key
    assert alert_id(decode(out[0].body, Alert)) == out[0].key


def test_retry_after_is_read_as_seconds_or_a_date() -> None:
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


def _out(url: str) -> Outgoing:
    return Outgoing("webhook", "alert", url, b"{}", {"Idempotency-Key": "k"}, "k", ("k",))


POLICY = Policy(timeout=1.0, initial=0.05, max_backoff=2.0, max_total=20.0)


def test_a_receiver_answering_500_429_and_slowly_gets_it_in_the_end() -> None:
    import requests

    r = Receiver("webhook", script=[500, (429, {"Retry-After": "1"}), "slow", 503]).start()
    try:
        started = time.monotonic()
        retries: list[str] = []
        result = deliver(
            requests.Session(),
            _out(r.url),
            POLICY,
            threading.Event(),
            lambda e: retries.append(e.reason),
        )
        assert result.delivered and result.attempts == 5
        assert retries == ["HTTP 500", "HTTP 429", "timed out after 1 s", "HTTP 503"]
        assert time.monotonic() - started >= 1.0 + 1.0  # Retry-After and the slow answer
    finally:
        r.stop()


def test_a_4xx_is_not_retried_and_an_outage_is_given_up_on_at_the_limit() -> None:
    import requests

    r = Receiver("webhook", refuse=lambda _b: True).start()
    try:
        result = deliver(requests.Session(), _out(r.url), POLICY, threading.Event())
        assert (result.delivered, result.attempts, result.status) == (False, 1, 400)
        assert result.reason.startswith("HTTP 400")
    finally:
        r.stop()
    down = f"http://127.0.0.1:{free_port()}/x"
    short = Policy(timeout=0.5, initial=0.05, max_backoff=0.2, max_total=1.0)
    result = deliver(requests.Session(), _out(down), short, threading.Event())
    assert not result.delivered and result.attempts > 2 and "gave up" in result.reason


@pytest.mark.parametrize("errcode, delivered", [(45009, True), (93000, False)])
def test_wecom_answers_200_with_an_errcode(errcode: int, delivered: bool) -> None:
    """45009 (frequency limit) is retried; any other non-zero errcode is a refusal."""
    import dataclasses

    import requests

    answer = f'{{"errcode":{errcode},"errmsg":"x"}}'.encode()
    r = Receiver("wecom", script=[(200, {}, answer)]).start()
    try:
        out = dataclasses.replace(_out(r.url), payload_check="wecom")
        result = deliver(requests.Session(), out, POLICY, threading.Event())
        assert result.delivered is delivered
        assert result.attempts == (2 if delivered else 1)
    finally:
        r.stop()
