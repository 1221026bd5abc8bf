"""Callback body -> normalized record (``ExceptionEvent`` / ``SendEvent``).

Required fields missing or of the wrong type raise ``Rejected(400)`` naming the field.
EventTime is accepted as an integer or a digit string (the spec's sample sends a string).
Unknown fields of an exception body are kept in ``extra``; message text and
CloudCustomData only with ``keep_message_content``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from groupwatch.contracts import (
    CMD_AFTER_SEND_MSG,
    CMD_SEND_MSG_EXCEPTION,
    ExceptionEvent,
    SendEvent,
    error_category,
    make_event_id,
)
from ingest.errors import Rejected

_INT_STRING = re.compile(r"-?[0-9]{1,19}")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

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


def _required_str(body: dict[str, Any], name: str) -> str:
    if name not in body or body[name] is None:
        raise Rejected(400, f"{name} is required", field=name, dlq=True)
    value = body[name]
    if not isinstance(value, str) or not value:
        raise Rejected(400, f"{name} must be a non-empty string", field=name, dlq=True)
    return value


def _required_int(body: dict[str, Any], name: str, *, non_negative: bool = False) -> int:
    if name not in body or body[name] is None:
        raise Rejected(400, f"{name} is required", field=name, dlq=True)
    value = _as_int(body[name])
    if value is None or (non_negative and value < 0):
        kind = "a non-negative integer" if non_negative else "an integer"
        raise Rejected(400, f"{name} must be {kind} or a string of digits", field=name, dlq=True)
    return value


def _optional_str(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    return value if isinstance(value, str) else None


def _msg_types(body: dict[str, Any]) -> list[str]:
    elems = body.get("MsgBody")
    if not isinstance(elems, list):
        return []
    return [
        e["MsgType"] for e in elems if isinstance(e, dict) and isinstance(e.get("MsgType"), str)
    ]


def _online_only(value: Any) -> bool | None:
    number = _as_int(value)
    return None if number is None else number != 0


def normalize_exception(
    body: dict[str, Any], ctx: CallbackContext, *, keep_message_content: bool = False
) -> ExceptionEvent:
    """A ``Group.CallbackSendMsgException`` body as an ``ExceptionEvent``."""
    group_id = _required_str(body, "GroupId")
    error_code = _required_int(body, "ErrorCode")
    event_time_ms = _required_int(body, "EventTime", non_negative=True)
    from_account = _optional_str(body, "From_Account")
    random = _as_int(body.get("Random"))
    extra = {k: v for k, v in body.items() if k not in EXCEPTION_FIELDS}
    # Known fields whose type we could not use are kept as they came, not dropped.
    for name in ("Random", "OnlineOnlyFlag"):
        if name in body and body[name] is not None and _as_int(body[name]) is None:
            extra[name] = body[name]
    msg_body = body.get("MsgBody") if keep_message_content else None
    return ExceptionEvent(
        event_id=make_event_id(ctx.sdkappid, group_id, from_account, random, event_time_ms),
        sdkappid=ctx.sdkappid,
        callback_command=CMD_SEND_MSG_EXCEPTION,
        group_id=group_id,
        group_type=_optional_str(body, "Type"),
        from_account=from_account,
        operator_account=_optional_str(body, "Operator_Account"),
        random=random,
        online_only=_online_only(body.get("OnlineOnlyFlag")),
        msg_types=_msg_types(body),
        error_code=error_code,
        error_info=_optional_str(body, "ErrorInfo"),
        error_category=error_category(error_code),
        event_time_ms=event_time_ms,
        received_at_ms=ctx.received_at_ms,
        client_ip=ctx.client_ip,
        platform=ctx.platform,
        extra=extra,
        msg_body=msg_body if isinstance(msg_body, list) else None,
        cloud_custom_data=(
            _optional_str(body, "CloudCustomData") if keep_message_content else None
        ),
    )


def normalize_send(body: dict[str, Any], ctx: CallbackContext) -> SendEvent:
    """A ``Group.CallbackAfterSendMsg`` body as a ``SendEvent`` (no message content)."""
    group_id = _required_str(body, "GroupId")
    event_time_ms = _required_int(body, "EventTime", non_negative=True)
    from_account = _optional_str(body, "From_Account")
    random = _as_int(body.get("Random"))
    return SendEvent(
        event_id=make_event_id(ctx.sdkappid, group_id, from_account, random, event_time_ms),
        sdkappid=ctx.sdkappid,
        callback_command=CMD_AFTER_SEND_MSG,
        group_id=group_id,
        group_type=_optional_str(body, "Type"),
        from_account=from_account,
        random=random,
        msg_seq=_as_int(body.get("MsgSeq")),
        event_time_ms=event_time_ms,
        received_at_ms=ctx.received_at_ms,
    )
