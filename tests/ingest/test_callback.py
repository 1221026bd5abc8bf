"""The callback contract against the real broker (Flask test client, real producer)."""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

import orjson
import pytest
from flask.testing import FlaskClient

from groupwatch.contracts import (
    CMD_AFTER_SEND_MSG,
    CMD_SEND_MSG_EXCEPTION,
    COMMAND_HEADER,
    DlqRecord,
    ExceptionEvent,
    SendEvent,
    Settings,
    Topics,
    decode,
    make_event_id,
)
from tests.support.callbacks import (
    APPID,
    OK_REPLY,
    SIGNED_APPID,
    SPEC_SAMPLE,
    TOKEN,
    query,
    signed_query,
)
from tests.support.kafka import read_topic

pytestmark = pytest.mark.kafka


def post(client: FlaskClient, params: dict[str, str], body: Any, path: str = "/callback") -> Any:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return client.post(path, query_string=params, data=data, content_type="application/json")


@pytest.mark.parametrize("event_time", ["1670574414123", 1670574414123])
def test_spec_sample_is_published_with_key_timestamp_and_fields(
    client: FlaskClient, ingest_settings: Settings, event_time: object
) -> None:
    reply = post(client, query(), {**SPEC_SAMPLE, "EventTime": event_time})
    assert reply.status_code == 200
    assert reply.get_data() == b'{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":0}'
    topics = Topics.from_settings(ingest_settings)
    [record] = read_topic(ingest_settings, topics.exceptions, expect=1)
    assert record.key() == b"1400000001:@TGS#2J4SZEAEL"
    assert record.timestamp()[1] == 1670574414123
    assert dict(record.headers() or []) == {COMMAND_HEADER: CMD_SEND_MSG_EXCEPTION.encode()}
    event = decode(record.value(), ExceptionEvent)
    assert event.sdkappid == APPID
    assert event.group_id == "@TGS#2J4SZEAEL"
    assert event.group_type == "Public"
    assert event.from_account == "jared" and event.operator_account == "admin"
    assert event.random == 123456 and event.online_only is True
    assert event.msg_types == ["TIMTextElem"]
    assert event.error_code == 10023 and event.error_category == "rate_limited"
    assert event.error_info == "msg count exceeds limit,please retry later"
    assert event.event_time_ms == 1670574414123
    assert event.client_ip == "10.0.0.7" and event.platform == "iOS"
    assert abs(event.received_at_ms - time.time() * 1000) < 120_000
    assert event.event_id == make_event_id(APPID, "@TGS#2J4SZEAEL", "jared", 123456, 0)
    assert event.msg_body is None and event.cloud_custom_data is None
    assert b"red packet" not in record.value()
    assert read_topic(ingest_settings, topics.dlq) == []


def test_root_path_and_signed_app_are_accepted(
    client: FlaskClient, ingest_settings: Settings
) -> None:
    assert post(client, signed_query(), SPEC_SAMPLE, path="/").get_json() == OK_REPLY
    records = read_topic(
        ingest_settings, Topics.from_settings(ingest_settings).exceptions, expect=1
    )
    assert decode(records[0].value(), ExceptionEvent).sdkappid == "1400000002"


def test_sends_are_published_without_content(
    client: FlaskClient, ingest_settings: Settings
) -> None:
    body = {
        "CallbackCommand": CMD_AFTER_SEND_MSG,
        "GroupId": "@TGS#g",
        "Type": "Public",
        "From_Account": "a",
        "Random": 77,
        "MsgSeq": 5,
        "MsgTime": 1670574414,
        "MsgBody": [{"MsgType": "TIMTextElem", "MsgContent": {"Text": "private words"}}],
        "EventTime": 1670574414555,
    }
    assert post(client, query(CMD_AFTER_SEND_MSG), body).status_code == 200
    topics = Topics.from_settings(ingest_settings)
    [record] = read_topic(ingest_settings, topics.sends, expect=1)
    assert record.key() == b"1400000001:@TGS#g"
    assert record.timestamp()[1] == 1670574414555
    send = decode(record.value(), SendEvent)
    assert (send.group_id, send.random, send.msg_seq) == ("@TGS#g", 77, 5)
    assert b"private words" not in record.value()
    assert read_topic(ingest_settings, topics.exceptions) == []


def test_message_content_kept_when_enabled(
    make_client: Any, make_settings: Any, topics: Topics
) -> None:
    settings = make_settings(
        sdkappids=[APPID], unsigned_sdkappids=[APPID], keep_message_content=True
    )
    client = make_client(settings)
    assert post(client, query(), SPEC_SAMPLE).status_code == 200
    [record] = read_topic(settings, topics.exceptions, expect=1)
    event = decode(record.value(), ExceptionEvent)
    assert event.msg_body == SPEC_SAMPLE["MsgBody"]
    assert event.cloud_custom_data == "your cloud custom data"


@pytest.mark.parametrize(
    "command", ["Group.CallbackBeforeSendMsg", "Group.CallbackAfterCreateGroup", "Foo"]
)
def test_other_commands_get_ok_and_publish_nothing(
    client: FlaskClient, ingest_settings: Settings, command: str
) -> None:
    reply = post(client, query(command), b"this is not even json")
    assert reply.status_code == 200 and reply.get_json() == OK_REPLY
    # a marker record proves the topics were readable before we look for absence
    assert post(client, query(), SPEC_SAMPLE).status_code == 200
    topics = Topics.from_settings(ingest_settings)
    assert len(read_topic(ingest_settings, topics.exceptions, expect=1)) == 1
    assert read_topic(ingest_settings, topics.sends) == []
    assert read_topic(ingest_settings, topics.dlq) == []


def _body(marker: str, **changes: Any) -> bytes:
    data = {**SPEC_SAMPLE, "Marker": marker}
    for key, value in changes.items():
        if value is ...:
            data.pop(key)
        else:
            data[key] = value
    return json.dumps(data).encode()  # integers beyond 64 bits included


def _stale_signed() -> dict[str, str]:
    from ingest.auth import make_sign

    t = str(int(time.time()) - 3600)
    return query(appid="1400000002", RequestTime=t, Sign=make_sign(TOKEN, t))


# (name, method, query, body, status, word the message must contain, goes to the DLQ)
def rejection_matrix() -> list[tuple[str, str, dict[str, str], Any, int, str, bool]]:
    """Built when the test runs: signed rows carry a fresh RequestTime."""
    return [
        ("unknown app", "POST", query(appid="999"), None, 403, "SdkAppid", False),
        (
            "no SdkAppid",
            "POST",
            {"CallbackCommand": CMD_SEND_MSG_EXCEPTION},
            None,
            400,
            "SdkAppid",
            False,
        ),
        ("signed app, no Sign", "POST", query(appid="1400000002"), None, 401, "Sign", False),
        (
            "wrong Sign",
            "POST",
            {**signed_query(), "Sign": "0" * 64},
            None,
            401,
            "Sign",
            False,
        ),
        ("stale RequestTime", "POST", _stale_signed(), None, 401, "RequestTime", False),
        ("no CallbackCommand", "POST", {"SdkAppid": APPID}, None, 400, "CallbackCommand", True),
        ("GET", "GET", query(), None, 405, "method", False),
        ("PUT", "PUT", query(), None, 405, "method", False),
        ("too large", "POST", query(), b"{" + b" " * 70000 + b"}", 413, "65536", True),
        ("not JSON", "POST", query(), b"{'GroupId': 1}", 400, "JSON", True),
        ("not an object", "POST", query(), b"[1,2]", 400, "object", True),
        ("no GroupId", "POST", query(), "GroupId", 400, "GroupId", True),
        ("no ErrorCode", "POST", query(), "ErrorCode", 400, "ErrorCode", True),
        ("no EventTime", "POST", query(), "EventTime", 400, "EventTime", True),
        ("EventTime float", "POST", query(), ("EventTime", 1.5), 400, "EventTime", True),
        ("ErrorCode text", "POST", query(), ("ErrorCode", "x"), 400, "ErrorCode", True),
        ("GroupId number", "POST", query(), ("GroupId", 5), 400, "GroupId", True),
        ("future EventTime", "POST", query(), ("EventTime", 4102444800000), 400, "EventTime", True),
        ("send, no GroupId", "POST", query(CMD_AFTER_SEND_MSG), "GroupId", 400, "GroupId", True),
        (
            "send, no EventTime",
            "POST",
            query(CMD_AFTER_SEND_MSG),
            "EventTime",
            400,
            "EventTime",
            True,
        ),
    ]


def test_rejection_matrix(client: FlaskClient, ingest_settings: Settings) -> None:
    expected_dlq: dict[str, str] = {}
    for name, method, params, spec, status, word, dlq in rejection_matrix():
        marker = uuid.uuid4().hex
        if isinstance(spec, bytes):
            data = spec
        elif isinstance(spec, str):
            data = _body(marker, **{spec: ...})
        elif isinstance(spec, tuple):
            data = _body(marker, **{spec[0]: spec[1]})
        else:
            data = _body(marker)
        reply = client.open(
            "/callback",
            method=method,
            query_string=params,
            data=data,
            content_type="application/json",
        )
        assert reply.status_code == status, name
        payload = reply.get_json()
        assert payload["ActionStatus"] == "FAIL", name
        assert payload["ErrorCode"] == status != 0, name
        assert word.lower() in payload["ErrorInfo"].lower(), (name, payload)
        if dlq:
            expected_dlq[name] = marker if marker.encode() in data else data[:40].decode()
        else:
            expected_dlq.pop(name, None)
            expected_dlq[f"absent:{name}"] = marker
    wanted = sum(1 for key in expected_dlq if not key.startswith("absent:"))
    records = read_topic(ingest_settings, Topics.from_settings(ingest_settings).dlq, expect=wanted)
    dlq = [decode(r.value(), DlqRecord) for r in records]
    assert len(dlq) == wanted
    for key, needle in expected_dlq.items():
        hits = [d for d in dlq if needle in d.body]
        assert (len(hits) == 0) if key.startswith("absent:") else (len(hits) == 1), key
    for record, raw in zip(dlq, records, strict=True):
        assert "Sign" not in record.query
        assert TOKEN.encode() not in raw.value()
        assert record.reason and record.received_at_ms > 0
        assert len(record.body.encode()) <= ingest_settings.max_body_bytes
    too_large = [d for d in dlq if d.field == "body" and d.body_truncated]
    assert len(too_large) == 1
    assert {d.field for d in dlq} >= {"GroupId", "ErrorCode", "EventTime", "CallbackCommand"}


def test_health_ready_and_metrics(client: FlaskClient) -> None:
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.get_json()["broker"] is True
    post(client, query(), SPEC_SAMPLE)
    post(client, query(appid="999"), SPEC_SAMPLE)
    post(client, query("Group.CallbackBeforeSendMsg"), SPEC_SAMPLE)
    text = client.get("/metrics").get_data(as_text=True)
    for name in (
        'groupwatch_ingest_requests_total{command="Group.CallbackSendMsgException",status="200"}',
        "groupwatch_ingest_publish_seconds_bucket",
        "groupwatch_ingest_spool_records",
        "groupwatch_ingest_spool_bytes",
        'groupwatch_ingest_auth_rejected_total{field="SdkAppid",status="403"}',
        'groupwatch_ingest_ignored_total{command="Group.CallbackBeforeSendMsg"}',
    ):
        assert name in text, name


def _out_of_range_cases() -> list[tuple[str, dict[str, str], dict[str, Any], str]]:
    """(name, query, body changes, field): one value past each bound of the contract."""
    from groupwatch.contracts.records import (
        CLIENT_IP_MAX_CHARS,
        EPOCH_MS_MIN,
        GROUP_ID_MAX_CHARS,
        PLATFORM_MAX_CHARS,
        UINT32_MAX,
    )
    from tests.ingest.test_normalize import OUT_OF_RANGE

    cases = [
        (f"{field} {i}", query(), changes, field) for i, (changes, field) in enumerate(OUT_OF_RANGE)
    ]
    send = query(CMD_AFTER_SEND_MSG)
    cases += [
        ("send MsgSeq", send, {"MsgSeq": UINT32_MAX + 1}, "MsgSeq"),
        ("send Random", send, {"Random": -1}, "Random"),
        ("send EventTime", send, {"EventTime": EPOCH_MS_MIN - 1}, "EventTime"),
        ("send GroupId", send, {"GroupId": "g" * (GROUP_ID_MAX_CHARS + 1)}, "GroupId"),
        ("ClientIP", query(ClientIP="1" * (CLIENT_IP_MAX_CHARS + 1)), {}, "ClientIP"),
        ("OptPlatform", query(OptPlatform="p" * (PLATFORM_MAX_CHARS + 1)), {}, "OptPlatform"),
    ]
    return cases


def test_out_of_range_fields_are_400_naming_the_field_and_kept_in_the_dlq(
    client: FlaskClient, ingest_settings: Settings
) -> None:
    topics = Topics.from_settings(ingest_settings)
    markers: dict[str, str] = {}
    for name, params, changes, field in _out_of_range_cases():
        marker = uuid.uuid4().hex
        markers[marker] = field
        reply = post(client, params, _body(marker, **changes))
        assert reply.status_code == 400, name
        payload = reply.get_json()
        assert payload["ActionStatus"] == "FAIL" and payload["ErrorCode"] == 400, name
        assert field in payload["ErrorInfo"], (name, payload)
    records = read_topic(ingest_settings, topics.dlq, expect=len(markers))
    dlq = [decode(r.value(), DlqRecord) for r in records]
    found = {m: d.field for d in dlq for m in markers if m in d.body}
    assert found == markers  # one DLQ record per rejection, naming the same field
    assert all(d.stage == "ingest" and d.reason for d in dlq)
    assert read_topic(ingest_settings, topics.exceptions) == []
    assert read_topic(ingest_settings, topics.sends) == []
    text = client.get("/metrics").get_data(as_text=True)
    assert 'groupwatch_ingest_dlq_total{field="Random"}' in text


def test_values_at_the_bounds_are_accepted_and_stored(
    client: FlaskClient, ingest_settings: Settings
) -> None:
    from groupwatch.contracts.records import EPOCH_MS_MAX, UINT32_MAX
    from tests.ingest.test_normalize import AT_BOUNDS

    expected = []
    for changes, attribute, value in AT_BOUNDS:
        if changes.get("EventTime") in (EPOCH_MS_MAX, str(EPOCH_MS_MAX)):
            continue  # beyond the 15-minute future window of the ingress
        assert post(client, query(), {**SPEC_SAMPLE, **changes}).status_code == 200, changes
        expected.append((attribute, value))
    sent = len(expected)
    send = {"GroupId": "g", "EventTime": SPEC_SAMPLE["EventTime"], "MsgSeq": UINT32_MAX}
    assert post(client, query(CMD_AFTER_SEND_MSG), send).status_code == 200
    topics = Topics.from_settings(ingest_settings)
    events = [
        decode(r.value(), ExceptionEvent)
        for r in read_topic(ingest_settings, topics.exceptions, expect=sent)
    ]
    assert len(events) == sent
    for attribute, value in expected:
        assert any(getattr(e, attribute) == value for e in events), attribute
    [stored] = read_topic(ingest_settings, topics.sends, expect=1)
    assert decode(stored.value(), SendEvent).msg_seq == UINT32_MAX
    assert read_topic(ingest_settings, topics.dlq) == []


def test_allowed_app_without_token_and_not_opted_in_is_refused(
    make_client: Any, make_settings: Any, topics: Topics
) -> None:
    # APPID has no token and is not in GROUPWATCH_UNSIGNED_SDKAPPIDS
    settings = make_settings(sdkappids=[APPID, SIGNED_APPID], callback_tokens={SIGNED_APPID: TOKEN})
    client = make_client(settings)
    reply = post(client, query(), SPEC_SAMPLE)
    assert reply.status_code == 401 and "token" in reply.get_json()["ErrorInfo"]
    assert post(client, signed_query(), SPEC_SAMPLE).status_code == 200  # a marker
    [record] = read_topic(settings, topics.exceptions, expect=1)
    assert decode(record.value(), ExceptionEvent).sdkappid == SIGNED_APPID


def test_unknown_command_names_share_one_metric_label(client: FlaskClient) -> None:
    names = [f"Custom.Command{uuid.uuid4().hex}" for _ in range(5)]
    for name in names:
        assert post(client, query(name), b"").status_code == 200
    text = client.get("/metrics").get_data(as_text=True)
    assert 'groupwatch_ingest_ignored_total{command="other"}' in text
    assert not any(name in text for name in names)


def test_reject_log_lines_are_truncated_and_rate_limited(
    client: FlaskClient, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ingest import app as app_module
    from ingest.logs import RateLimitedLog

    frozen = RateLimitedLog(app_module.log, "callback rejected", per_second=5, clock=lambda: 0.0)
    monkeypatch.setattr(app_module, "reject_log", frozen)
    huge = "9" * 5000
    with caplog.at_level(logging.INFO, logger="ingest.app"):
        for _ in range(30):
            assert post(client, query(appid=huge), SPEC_SAMPLE).status_code == 403
        frozen.flush()
    lines = [r for r in caplog.records if r.getMessage() == "callback rejected"]
    assert len(lines) == 5
    assert all(len(r.sdkappid) < 260 for r in lines)  # type: ignore[attr-defined]
    assert [getattr(r, "suppressed", None) for r in caplog.records][-1] == 25
