"""Unit tests of body parsing and normalization."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from ingest_helpers import SPEC_SAMPLE

from groupwatch.contracts import ExceptionEvent, SendEvent, decode, encode, make_event_id
from ingest.errors import Rejected
from ingest.normalize import CallbackContext, normalize_exception, normalize_send, parse_body

CTX = CallbackContext(
    sdkappid="1400000001",
    command="Group.CallbackSendMsgException",
    received_at_ms=1670574415000,
    client_ip="10.0.0.7",
    platform="iOS",
)


def body(**changes: Any) -> dict[str, Any]:
    result = dict(SPEC_SAMPLE)
    for key, value in changes.items():
        if value is ...:
            result.pop(key, None)
        else:
            result[key] = value
    return result


@pytest.mark.parametrize("event_time", ["1670574414123", 1670574414123])
def test_spec_sample_normalizes(event_time: object) -> None:
    event = normalize_exception(body(EventTime=event_time), CTX)
    assert event.event_time_ms == 1670574414123
    assert event.group_id == "@TGS#2J4SZEAEL"
    assert event.group_type == "Public"
    assert event.from_account == "jared"
    assert event.operator_account == "admin"
    assert event.random == 123456
    assert event.online_only is True
    assert event.msg_types == ["TIMTextElem"]
    assert event.error_code == 10023
    assert event.error_category == "rate_limited"
    assert event.error_info == "msg count exceeds limit,please retry later"
    assert event.client_ip == "10.0.0.7" and event.platform == "iOS"
    assert event.received_at_ms == CTX.received_at_ms
    assert event.event_id == make_event_id("1400000001", "@TGS#2J4SZEAEL", "jared", 123456, 0)
    # privacy by default
    assert event.msg_body is None and event.cloud_custom_data is None
    assert "red packet" not in encode(event).decode()
    assert decode(encode(event), ExceptionEvent) == event


def test_message_content_only_when_enabled() -> None:
    event = normalize_exception(body(), CTX, keep_message_content=True)
    assert event.msg_body == SPEC_SAMPLE["MsgBody"]
    assert event.cloud_custom_data == "your cloud custom data"


def test_unknown_fields_are_kept_in_extra() -> None:
    event = normalize_exception(body(NewField={"a": 1}, Other=[1, 2]), CTX)
    assert event.extra == {"NewField": {"a": 1}, "Other": [1, 2]}


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"GroupId": ...}, "GroupId"),
        ({"GroupId": ""}, "GroupId"),
        ({"GroupId": 12}, "GroupId"),
        ({"ErrorCode": ...}, "ErrorCode"),
        ({"ErrorCode": "abc"}, "ErrorCode"),
        ({"ErrorCode": 1.5}, "ErrorCode"),
        ({"ErrorCode": True}, "ErrorCode"),
        ({"EventTime": ...}, "EventTime"),
        ({"EventTime": None}, "EventTime"),
        ({"EventTime": "12a"}, "EventTime"),
        ({"EventTime": 1.5e12}, "EventTime"),
        ({"EventTime": -1}, "EventTime"),
        ({"EventTime": "\u0661\u0662"}, "EventTime"),
        ({"EventTime": 2**70}, "EventTime"),
    ],
)
def test_required_field_errors_name_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(Rejected) as exc:
        normalize_exception(body(**changes), CTX)
    assert exc.value.status == 400
    assert exc.value.field == field
    assert field in exc.value.reason
    assert exc.value.dlq


def test_unusable_optional_fields_do_not_reject() -> None:
    event = normalize_exception(
        body(Random="x", OnlineOnlyFlag="yes", Type=3, MsgBody="nope", From_Account=None), CTX
    )
    assert event.random is None and event.online_only is None and event.group_type is None
    assert event.msg_types == [] and event.from_account is None
    assert event.extra == {"Random": "x", "OnlineOnlyFlag": "yes"}


def test_event_id_is_deterministic_and_distinguishes_random() -> None:
    a = normalize_exception(body(), CTX)
    b = normalize_exception(body(ErrorCode=10017), CTX)
    c = normalize_exception(body(Random=7), CTX)
    assert a.event_id == b.event_id != c.event_id


def test_send_event_has_no_content() -> None:
    send = normalize_send(
        {
            "GroupId": "@TGS#1",
            "Type": "Public",
            "From_Account": "a",
            "Random": 9,
            "MsgSeq": 42,
            "MsgBody": [{"MsgType": "TIMTextElem", "MsgContent": {"Text": "secret"}}],
            "CloudCustomData": "secret",
            "EventTime": "1670574414999",
        },
        CTX,
    )
    assert send.msg_seq == 42 and send.event_time_ms == 1670574414999
    assert "secret" not in encode(send).decode()
    assert decode(encode(send), SendEvent) == send


@pytest.mark.parametrize("missing", ["GroupId", "EventTime"])
def test_send_requires_group_and_time(missing: str) -> None:
    data = {"GroupId": "g", "EventTime": 1}
    del data[missing]
    with pytest.raises(Rejected) as exc:
        normalize_send(data, CTX)
    assert exc.value.field == missing


@pytest.mark.parametrize("raw", [b"", b"  ", b"{", b"[1]", b'"x"', b"\xff\xfe", b"null"])
def test_bodies_that_are_not_objects_are_rejected(raw: bytes) -> None:
    with pytest.raises(Rejected) as exc:
        parse_body(raw)
    assert exc.value.status == 400 and exc.value.field == "body"


def test_parse_body_accepts_object() -> None:
    assert parse_body(orjson.dumps(SPEC_SAMPLE)) == SPEC_SAMPLE
