"""Unit tests of body parsing and normalization."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from groupwatch.contracts import ExceptionEvent, SendEvent, decode, encode, make_event_id
from groupwatch.contracts.records import (
    ACCOUNT_MAX_CHARS,
    CLIENT_IP_MAX_CHARS,
    EPOCH_MS_MAX,
    EPOCH_MS_MIN,
    ERROR_CODE_MAX,
    ERROR_CODE_MIN,
    ERROR_INFO_MAX_CHARS,
    GROUP_ID_MAX_CHARS,
    GROUP_TYPE_MAX_CHARS,
    MSG_BODY_MAX_ELEMENTS,
    MSG_TYPE_MAX_CHARS,
    PLATFORM_MAX_CHARS,
    SDKAPPID_MAX_CHARS,
    UINT32_MAX,
)
from ingest.errors import Rejected
from ingest.normalize import (
    FIELDS,
    MAX_FUTURE_MS,
    CallbackContext,
    normalize_exception,
    normalize_send,
    parse_body,
)
from tests.support.callbacks import SPEC_SAMPLE

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
    assert event.extra == {"Random": "x", "OnlineOnlyFlag": "yes", "Type": 3}


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
    data = {"GroupId": "g", "EventTime": EPOCH_MS_MIN}
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


# --- the contract at the door: every typed field range-checked ---------------------

FAR_CTX = CallbackContext(
    sdkappid="1400000001", command="Group.CallbackSendMsgException", received_at_ms=EPOCH_MS_MAX
)
ELEM = {"MsgType": "TIMTextElem", "MsgContent": {"Text": "x"}}

# (changes, field): one value just past each bound.
OUT_OF_RANGE: list[tuple[dict[str, Any], str]] = [
    ({"ErrorCode": ERROR_CODE_MAX + 1}, "ErrorCode"),
    ({"ErrorCode": 2**40}, "ErrorCode"),
    ({"ErrorCode": str(ERROR_CODE_MIN - 1)}, "ErrorCode"),
    ({"ErrorCode": 2**64}, "ErrorCode"),
    ({"ErrorCode": "9" * 30}, "ErrorCode"),
    ({"Random": UINT32_MAX + 1}, "Random"),
    ({"Random": -1}, "Random"),
    ({"Random": str(UINT32_MAX + 1)}, "Random"),
    ({"Random": 2**64 + 1}, "Random"),
    ({"Random": 1.8446744073709552e19}, "Random"),  # how orjson reads 2**64 + 1
    ({"Random": 1.5}, "Random"),
    ({"Random": "9" * 30}, "Random"),
    ({"EventTime": EPOCH_MS_MIN - 1}, "EventTime"),
    ({"EventTime": str(EPOCH_MS_MAX + 1)}, "EventTime"),
    ({"EventTime": 0}, "EventTime"),
    ({"EventTime": 95_617_584_000_000}, "EventTime"),  # year 5000
    ({"OnlineOnlyFlag": 2}, "OnlineOnlyFlag"),
    ({"OnlineOnlyFlag": -1}, "OnlineOnlyFlag"),
    ({"OnlineOnlyFlag": "5"}, "OnlineOnlyFlag"),
    ({"OnlineOnlyFlag": 1.0}, "OnlineOnlyFlag"),
    ({"GroupId": "g" * (GROUP_ID_MAX_CHARS + 1)}, "GroupId"),
    ({"Type": "t" * (GROUP_TYPE_MAX_CHARS + 1)}, "Type"),
    ({"From_Account": "a" * (ACCOUNT_MAX_CHARS + 1)}, "From_Account"),
    ({"Operator_Account": "\u00e9" * (ACCOUNT_MAX_CHARS + 1)}, "Operator_Account"),
    ({"ErrorInfo": "e" * (ERROR_INFO_MAX_CHARS + 1)}, "ErrorInfo"),
    ({"MsgBody": [ELEM] * (MSG_BODY_MAX_ELEMENTS + 1)}, "MsgBody"),
    ({"MsgBody": [{"MsgType": "T" * (MSG_TYPE_MAX_CHARS + 1)}]}, "MsgBody"),
]

# (changes, attribute, value): each bound itself is accepted.
AT_BOUNDS: list[tuple[dict[str, Any], str, Any]] = [
    ({"ErrorCode": ERROR_CODE_MAX}, "error_code", ERROR_CODE_MAX),
    ({"ErrorCode": str(ERROR_CODE_MIN)}, "error_code", ERROR_CODE_MIN),
    ({"Random": UINT32_MAX}, "random", UINT32_MAX),
    ({"Random": 0}, "random", 0),
    ({"EventTime": EPOCH_MS_MIN}, "event_time_ms", EPOCH_MS_MIN),
    ({"EventTime": str(EPOCH_MS_MAX)}, "event_time_ms", EPOCH_MS_MAX),
    ({"OnlineOnlyFlag": 0}, "online_only", False),
    ({"OnlineOnlyFlag": "1"}, "online_only", True),
    ({"GroupId": "g" * GROUP_ID_MAX_CHARS}, "group_id", "g" * GROUP_ID_MAX_CHARS),
    ({"Type": "t" * GROUP_TYPE_MAX_CHARS}, "group_type", "t" * GROUP_TYPE_MAX_CHARS),
    ({"From_Account": "a" * ACCOUNT_MAX_CHARS}, "from_account", "a" * ACCOUNT_MAX_CHARS),
    ({"ErrorInfo": "e" * ERROR_INFO_MAX_CHARS}, "error_info", "e" * ERROR_INFO_MAX_CHARS),
    (
        {"MsgBody": [ELEM] * MSG_BODY_MAX_ELEMENTS},
        "msg_types",
        ["TIMTextElem"] * MSG_BODY_MAX_ELEMENTS,
    ),
]


@pytest.mark.parametrize(("changes", "field"), OUT_OF_RANGE)
def test_out_of_range_fields_are_rejected_naming_the_field(
    changes: dict[str, Any], field: str
) -> None:
    with pytest.raises(Rejected) as exc:
        normalize_exception(body(**changes), FAR_CTX)
    assert (exc.value.status, exc.value.field, exc.value.dlq) == (400, field, True)
    assert field in exc.value.reason
    assert exc.value.field in FIELDS


@pytest.mark.parametrize(("changes", "attribute", "value"), AT_BOUNDS)
def test_values_at_the_bounds_are_accepted_and_pass_the_contract(
    changes: dict[str, Any], attribute: str, value: Any
) -> None:
    event = normalize_exception(body(**changes), FAR_CTX, keep_message_content=True)
    assert getattr(event, attribute) == value
    assert decode(encode(event), ExceptionEvent) == event


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"MsgSeq": UINT32_MAX + 1}, "MsgSeq"),
        ({"MsgSeq": -1}, "MsgSeq"),
        ({"Random": UINT32_MAX + 1}, "Random"),
        ({"EventTime": EPOCH_MS_MIN - 1}, "EventTime"),
        ({"GroupId": "g" * (GROUP_ID_MAX_CHARS + 1)}, "GroupId"),
        ({"From_Account": "a" * (ACCOUNT_MAX_CHARS + 1)}, "From_Account"),
        ({"Type": "t" * (GROUP_TYPE_MAX_CHARS + 1)}, "Type"),
    ],
)
def test_send_fields_out_of_range_are_rejected(changes: dict[str, Any], field: str) -> None:
    data = {"GroupId": "g", "EventTime": EPOCH_MS_MIN, "MsgSeq": UINT32_MAX, **changes}
    with pytest.raises(Rejected) as exc:
        normalize_send(data, FAR_CTX)
    assert (exc.value.status, exc.value.field, exc.value.dlq) == (400, field, True)


def test_send_at_the_bounds_passes_the_contract() -> None:
    data = {"GroupId": "g", "EventTime": EPOCH_MS_MAX, "MsgSeq": UINT32_MAX, "Random": 0}
    send = normalize_send(data, FAR_CTX)
    assert (send.msg_seq, send.random) == (UINT32_MAX, 0)
    assert decode(encode(send), SendEvent) == send


def test_event_time_window_ahead_of_the_receive_time() -> None:
    ahead = CTX.received_at_ms + MAX_FUTURE_MS
    assert normalize_exception(body(EventTime=ahead), CTX).event_time_ms == ahead
    with pytest.raises(Rejected) as exc:
        normalize_exception(body(EventTime=ahead + 1), CTX)
    assert exc.value.field == "EventTime" and "future" in exc.value.reason


@pytest.mark.parametrize(
    ("ctx_change", "field"),
    [
        ({"sdkappid": "1" * (SDKAPPID_MAX_CHARS + 1)}, "SdkAppid"),
        ({"client_ip": "1" * (CLIENT_IP_MAX_CHARS + 1)}, "ClientIP"),
        ({"platform": "p" * (PLATFORM_MAX_CHARS + 1)}, "OptPlatform"),
    ],
)
def test_query_values_out_of_range_are_rejected(ctx_change: dict[str, Any], field: str) -> None:
    ctx = CallbackContext(**{**CTX.__dict__, **ctx_change})
    for normalize in (normalize_exception, normalize_send):
        with pytest.raises(Rejected) as exc:
            normalize(body(), ctx)
        assert (exc.value.status, exc.value.field) == (400, field)


STRING_LIMITS = {
    "GroupId": GROUP_ID_MAX_CHARS,
    "Type": GROUP_TYPE_MAX_CHARS,
    "From_Account": ACCOUNT_MAX_CHARS,
    "Operator_Account": ACCOUNT_MAX_CHARS,
    "ErrorInfo": ERROR_INFO_MAX_CHARS,
}
INT_BOUNDS = {
    "ErrorCode": (ERROR_CODE_MIN, ERROR_CODE_MAX),
    "Random": (0, UINT32_MAX),
    "MsgSeq": (0, UINT32_MAX),
    "EventTime": (EPOCH_MS_MIN, EPOCH_MS_MAX),
    "OnlineOnlyFlag": (0, 1),
}


def _around(bound: int) -> st.SearchStrategy[int]:
    return st.integers(min_value=bound - 2, max_value=bound + 2)


@st.composite
def near_a_bound(draw: st.DrawFn) -> tuple[str, Any]:
    """One field with a value at, just inside or just outside one of its bounds."""
    name = draw(st.sampled_from(sorted({*STRING_LIMITS, *INT_BOUNDS, "MsgBody"})))
    if name in STRING_LIMITS:
        return name, "x" * draw(_around(STRING_LIMITS[name]).filter(lambda n: n >= 0))
    if name == "MsgBody":
        n = draw(_around(MSG_BODY_MAX_ELEMENTS))
        kind = draw(_around(MSG_TYPE_MAX_CHARS))
        return name, [{"MsgType": "T" * kind}] + [ELEM] * (n - 1)
    number = draw(st.sampled_from(INT_BOUNDS[name]).flatmap(_around))
    return name, draw(st.sampled_from([number, str(number)]))


any_values = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.from_regex(r"-?[0-9]{1,22}", fullmatch=True)
    | st.text(max_size=10)
    | st.lists(st.fixed_dictionaries({"MsgType": st.text(max_size=5)}), max_size=3)
)


@settings(max_examples=1000, deadline=None)
@given(
    st.lists(near_a_bound(), min_size=1, max_size=3),
    st.dictionaries(
        st.sampled_from(sorted(FIELDS - {"SdkAppid", "ClientIP", "OptPlatform", "Sign"})),
        any_values,
        max_size=3,
    ),
)
def test_whatever_normalize_accepts_the_contract_accepts(
    bounded: list[tuple[str, Any]], others: dict[str, Any]
) -> None:
    """The ingress and ``records.decode`` (stream, sink) agree: no event passes one only."""
    changes = {**others, **dict(bounded)}
    for keep in (False, True):
        try:
            event = normalize_exception(body(**changes), FAR_CTX, keep_message_content=keep)
        except Rejected as exc:
            assert exc.status == 400 and exc.field in FIELDS
        else:
            assert decode(encode(event), ExceptionEvent) == event
    try:
        send = normalize_send({**SPEC_SAMPLE, "MsgSeq": 1, **changes}, FAR_CTX)
    except Rejected as exc:
        assert exc.status == 400 and exc.field in FIELDS
    else:
        assert decode(encode(send), SendEvent) == send
