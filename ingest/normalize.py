"""Callback body -> normalized record (``ExceptionEvent`` / ``SendEvent``).

Required fields missing or of the wrong type raise ``Rejected(400)`` naming the field.
Every typed field is range-checked against the contract's bounds
(``groupwatch.contracts.records``: ErrorCode int32, Random/MsgSeq uint32, EventTime
2000..2100 and at most ``MAX_FUTURE_MS`` ahead of the receive time, OnlineOnlyFlag 0/1,
string lengths, MsgBody elements): a value out of range is a 400 naming the field, so
every event this module returns passes ``records.decode`` downstream.
EventTime is accepted as an integer or a digit string (the spec's sample sends a string).
Optional fields of an unusable *type* (``Random: "x"``) are kept in ``extra``, not lost.
Unknown fields of an exception body are kept in ``extra``; message text and
CloudCustomData only with ``keep_message_content``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

import orjson

from groupwatch.contracts import (
    CMD_AFTER_SEND_MSG,
    CMD_SEND_MSG_EXCEPTION,
    ExceptionEvent,
    SendEvent,
    error_category,
    make_event_id,
)
from groupwatch.contracts.limits import EVENT_TIME_MAX_AHEAD_MS
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

_INT_STRING = re.compile(r"-?[0-9]{1,19}")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

# The broker refuses record timestamps too far ahead (Kafka 4: 1 h by default); such an
# event could never be stored, so it is rejected (and kept in the DLQ) instead.
MAX_FUTURE_MS: Final = EVENT_TIME_MAX_AHEAD_MS

EXCEPTION_FIELDS = frozenset(
    {
        "CallbackCommand",
        "GroupId",
        "Type",
        "From_Account",
        "Operator_Account",
        "Random",
        "OnlineOnlyFlag",
        "MsgBody",
        "CloudCustomData",
        "ErrorCode",
        "ErrorInfo",
        "EventTime",
    }
)

# Every ``field`` a rejection can name (the DLQ metric's label set; tests check it).
FIELDS: Final = frozenset(
    EXCEPTION_FIELDS
    | {"MsgSeq", "SdkAppid", "ClientIP", "OptPlatform", "Sign", "RequestTime", "body"}
)


@dataclass(frozen=True)
class CallbackContext:
    """What the query string and the clock say about one callback."""

    sdkappid: str
    command: str
    received_at_ms: int
    client_ip: str | None = None
    platform: str | None = None


def parse_body(raw: bytes) -> dict[str, Any]:
    """The JSON object of a callback body, or ``Rejected(400)`` for anything else."""
    if not raw.strip():
        raise Rejected(400, "body is empty; a JSON object is required", field="body", dlq=True)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Rejected(400, f"body is not valid JSON: {exc}", field="body", dlq=True) from None
    if not isinstance(body, dict):
        raise Rejected(400, "body must be a JSON object", field="body", dlq=True)
    return body


def _as_int(value: Any) -> int | None:
    """An integer, or a string of decimal digits, within int64; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        result = value
    elif isinstance(value, str) and _INT_STRING.fullmatch(value):
        result = int(value)
    else:
        return None
    return result if _INT64_MIN <= result <= _INT64_MAX else None


def _out_of_range(name: str, low: int, high: int) -> Rejected:
    return Rejected(
        400, f"{name} must be an integer between {low} and {high}", field=name, dlq=True
    )


def _too_long(name: str, limit: int, what: str = "characters") -> Rejected:
    return Rejected(400, f"{name} must be at most {limit} {what}", field=name, dlq=True)


def _required_str(body: dict[str, Any], name: str, limit: int) -> str:
    if name not in body or body[name] is None:
        raise Rejected(400, f"{name} is required", field=name, dlq=True)
    value = body[name]
    if not isinstance(value, str) or not value:
        raise Rejected(400, f"{name} must be a non-empty string", field=name, dlq=True)
    if len(value) > limit:
        raise _too_long(name, limit)
    return value


def _numeric(value: Any) -> bool:
    """A JSON number or digit string that is no usable int64 (a float, or beyond int64)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return True
    digits = value.removeprefix("-") if isinstance(value, str) else ""
    return digits.isascii() and digits.isdigit()


def _required_int(body: dict[str, Any], name: str, low: int, high: int) -> int:
    if name not in body or body[name] is None:
        raise Rejected(400, f"{name} is required", field=name, dlq=True)
    value = body[name]
    number = _as_int(value)
    if number is None:
        if _numeric(value) and not isinstance(value, float):
            raise _out_of_range(name, low, high)  # an integer beyond int64
        raise Rejected(
            400, f"{name} must be an integer or a string of digits", field=name, dlq=True
        )
    if not low <= number <= high:
        raise _out_of_range(name, low, high)
    return number


def _optional_int(
    body: dict[str, Any], name: str, low: int, high: int, extra: dict[str, Any] | None
) -> int | None:
    """An integer field that may be absent.

    A number that is no integer within bounds (a float too: JSON integers beyond 64 bits
    are parsed as floats) is a 400; a value of another type is kept in ``extra``.
    """
    value = body.get(name)
    if value is None:
        return None
    number = _as_int(value)
    if number is None:
        if _numeric(value):
            raise _out_of_range(name, low, high)
        if extra is not None:
            extra[name] = value
        return None
    if not low <= number <= high:
        raise _out_of_range(name, low, high)
    return number


def _optional_str(
    body: dict[str, Any], name: str, limit: int, extra: dict[str, Any] | None = None
) -> str | None:
    value = body.get(name)
    if isinstance(value, str):
        if len(value) > limit:
            raise _too_long(name, limit)
        return value
    if value is not None and extra is not None:
        extra[name] = value  # a type we cannot use, kept as it came
    return None


def _query_str(value: str | None, name: str, limit: int) -> str | None:
    if value is not None and len(value) > limit:
        raise _too_long(name, limit)
    return value


def _msg_types(body: dict[str, Any]) -> list[str]:
    elems = body.get("MsgBody")
    if not isinstance(elems, list):
        return []
    if len(elems) > MSG_BODY_MAX_ELEMENTS:
        raise _too_long("MsgBody", MSG_BODY_MAX_ELEMENTS, "elements")
    types = [
        e["MsgType"] for e in elems if isinstance(e, dict) and isinstance(e.get("MsgType"), str)
    ]
    for msg_type in types:
        if len(msg_type) > MSG_TYPE_MAX_CHARS:
            raise Rejected(
                400,
                f"MsgBody: a MsgType must be at most {MSG_TYPE_MAX_CHARS} characters",
                field="MsgBody",
                dlq=True,
            )
    return types


def _cloud_custom_data(body: dict[str, Any]) -> str | None:
    value = body.get("CloudCustomData")  # bounded by the body size cap only
    return value if isinstance(value, str) else None


def _online_only(body: dict[str, Any], extra: dict[str, Any]) -> bool | None:
    number = _optional_int(body, "OnlineOnlyFlag", 0, 1, extra)
    return None if number is None else number == 1


def _event_time(body: dict[str, Any], ctx: CallbackContext) -> int:
    """EventTime within the contract's range and at most ``MAX_FUTURE_MS`` ahead."""
    event_time_ms = _required_int(body, "EventTime", EPOCH_MS_MIN, EPOCH_MS_MAX)
    if event_time_ms > ctx.received_at_ms + MAX_FUTURE_MS:
        raise Rejected(
            400,
            "EventTime is more than 15 minutes in the future (milliseconds expected)",
            field="EventTime",
            dlq=True,
        )
    return event_time_ms


def _check_context(ctx: CallbackContext) -> None:
    if len(ctx.sdkappid) > SDKAPPID_MAX_CHARS:
        raise _too_long("SdkAppid", SDKAPPID_MAX_CHARS)
    _query_str(ctx.client_ip, "ClientIP", CLIENT_IP_MAX_CHARS)
    _query_str(ctx.platform, "OptPlatform", PLATFORM_MAX_CHARS)


def normalize_exception(
    body: dict[str, Any], ctx: CallbackContext, *, keep_message_content: bool = False
) -> ExceptionEvent:
    """A ``Group.CallbackSendMsgException`` body as an ``ExceptionEvent``."""
    _check_context(ctx)
    group_id = _required_str(body, "GroupId", GROUP_ID_MAX_CHARS)
    error_code = _required_int(body, "ErrorCode", ERROR_CODE_MIN, ERROR_CODE_MAX)
    event_time_ms = _event_time(body, ctx)
    extra = {k: v for k, v in body.items() if k not in EXCEPTION_FIELDS}
    # Known fields whose type we could not use are kept in ``extra``, not dropped.
    from_account = _optional_str(body, "From_Account", ACCOUNT_MAX_CHARS, extra)
    random = _optional_int(body, "Random", 0, UINT32_MAX, extra)
    msg_body = body.get("MsgBody") if keep_message_content else None
    return ExceptionEvent(
        event_id=make_event_id(ctx.sdkappid, group_id, from_account, random, event_time_ms),
        sdkappid=ctx.sdkappid,
        callback_command=CMD_SEND_MSG_EXCEPTION,
        group_id=group_id,
        group_type=_optional_str(body, "Type", GROUP_TYPE_MAX_CHARS, extra),
        from_account=from_account,
        operator_account=_optional_str(body, "Operator_Account", ACCOUNT_MAX_CHARS, extra),
        random=random,
        online_only=_online_only(body, extra),
        msg_types=_msg_types(body),
        error_code=error_code,
        error_info=_optional_str(body, "ErrorInfo", ERROR_INFO_MAX_CHARS, extra),
        error_category=error_category(error_code),
        event_time_ms=event_time_ms,
        received_at_ms=ctx.received_at_ms,
        client_ip=ctx.client_ip,
        platform=ctx.platform,
        extra=extra,
        msg_body=msg_body if isinstance(msg_body, list) else None,
        cloud_custom_data=_cloud_custom_data(body) if keep_message_content else None,
    )


def normalize_send(body: dict[str, Any], ctx: CallbackContext) -> SendEvent:
    """A ``Group.CallbackAfterSendMsg`` body as a ``SendEvent`` (no message content)."""
    _check_context(ctx)
    group_id = _required_str(body, "GroupId", GROUP_ID_MAX_CHARS)
    event_time_ms = _event_time(body, ctx)
    from_account = _optional_str(body, "From_Account", ACCOUNT_MAX_CHARS)
    random = _optional_int(body, "Random", 0, UINT32_MAX, None)
    return SendEvent(
        event_id=make_event_id(ctx.sdkappid, group_id, from_account, random, event_time_ms),
        sdkappid=ctx.sdkappid,
        callback_command=CMD_AFTER_SEND_MSG,
        group_id=group_id,
        group_type=_optional_str(body, "Type", GROUP_TYPE_MAX_CHARS),
        from_account=from_account,
        random=random,
        msg_seq=_optional_int(body, "MsgSeq", 0, UINT32_MAX, None),
        event_time_ms=event_time_ms,
        received_at_ms=ctx.received_at_ms,
    )
