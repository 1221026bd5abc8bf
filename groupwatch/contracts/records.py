"""The records on every groupwatch topic: msgspec Structs, their codecs and JSON Schemas.

These classes are the wire contract. Every stage imports them; none redefines a field.
The JSON Schemas in ``schemas/`` are generated from them (``groupwatch schemas --write``)
and a test fails when the checked-in files drift from the code.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Final, Literal, TypeVar

import msgspec

from groupwatch.contracts import topics
from groupwatch.contracts.catalog import Category
from groupwatch.contracts.limits import (
    ACCOUNT_MAX_CHARS,
    CLIENT_IP_MAX_CHARS,
    COMMAND_MAX_CHARS,
    EPOCH_MS_MAX,
    EPOCH_MS_MIN,
    ERROR_CODE_MAX,
    ERROR_CODE_MIN,
    ERROR_INFO_MAX_CHARS,
    EVENT_ID_MAX_CHARS,
    GROUP_ID_MAX_CHARS,
    GROUP_TYPE_MAX_CHARS,
    MSG_BODY_MAX_ELEMENTS,
    MSG_TYPE_MAX_CHARS,
    PLATFORM_MAX_CHARS,
    SDKAPPID_MAX_CHARS,
    UINT32_MAX,
)

# Callback commands groupwatch analyses.
CMD_SEND_MSG_EXCEPTION: Final = "Group.CallbackSendMsgException"
CMD_AFTER_SEND_MSG: Final = "Group.CallbackAfterSendMsg"

# Kafka header carrying the callback command on raw-event records.
COMMAND_HEADER: Final = "callback_command"

# Constrained field types; the numbers are in groupwatch/contracts/limits.py.
ErrorCode = Annotated[int, msgspec.Meta(ge=ERROR_CODE_MIN, le=ERROR_CODE_MAX)]
Uint32 = Annotated[int, msgspec.Meta(ge=0, le=UINT32_MAX)]
EpochMs = Annotated[int, msgspec.Meta(ge=EPOCH_MS_MIN, le=EPOCH_MS_MAX)]
EventId = Annotated[str, msgspec.Meta(min_length=1, max_length=EVENT_ID_MAX_CHARS)]
SdkAppid = Annotated[str, msgspec.Meta(min_length=1, max_length=SDKAPPID_MAX_CHARS)]
Command = Annotated[str, msgspec.Meta(max_length=COMMAND_MAX_CHARS)]
GroupId = Annotated[str, msgspec.Meta(min_length=1, max_length=GROUP_ID_MAX_CHARS)]
GroupType = Annotated[str, msgspec.Meta(max_length=GROUP_TYPE_MAX_CHARS)]
Account = Annotated[str, msgspec.Meta(max_length=ACCOUNT_MAX_CHARS)]
MsgType = Annotated[str, msgspec.Meta(max_length=MSG_TYPE_MAX_CHARS)]
ErrorInfo = Annotated[str, msgspec.Meta(max_length=ERROR_INFO_MAX_CHARS)]
ClientIp = Annotated[str, msgspec.Meta(max_length=CLIENT_IP_MAX_CHARS)]
Platform = Annotated[str, msgspec.Meta(max_length=PLATFORM_MAX_CHARS)]
MsgTypes = Annotated[list[MsgType], msgspec.Meta(max_length=MSG_BODY_MAX_ELEMENTS)]
MsgBody = Annotated[list[Any], msgspec.Meta(max_length=MSG_BODY_MAX_ELEMENTS)]


class ExceptionEvent(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    """A normalized ``Group.CallbackSendMsgException`` (topic ``<prefix>.exceptions``)."""

    event_id: EventId
    sdkappid: SdkAppid
    callback_command: Command = CMD_SEND_MSG_EXCEPTION
    group_id: GroupId
    group_type: GroupType | None = None
    from_account: Account | None = None
    operator_account: Account | None = None
    random: Uint32 | None = None
    online_only: bool | None = None
    msg_types: MsgTypes = msgspec.field(default_factory=list)
    error_code: ErrorCode
    error_info: ErrorInfo | None = None
    error_category: Category
    event_time_ms: EpochMs
    received_at_ms: EpochMs
    client_ip: ClientIp | None = None
    platform: Platform | None = None
    # Body fields groupwatch does not know, kept as they came.
    extra: dict[str, Any] = msgspec.field(default_factory=dict)
    # Only with GROUPWATCH_KEEP_MESSAGE_CONTENT=1.
    msg_body: MsgBody | None = None
    cloud_custom_data: str | None = None


class SendEvent(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    """A normalized ``Group.CallbackAfterSendMsg`` (topic ``<prefix>.sends``).

    Only what the failure ratio and deduplication need: no message content.
    """

    event_id: EventId
    sdkappid: SdkAppid
    callback_command: Command = CMD_AFTER_SEND_MSG
    group_id: GroupId
    group_type: GroupType | None = None
    from_account: Account | None = None
    random: Uint32 | None = None
    msg_seq: Uint32 | None = None
    event_time_ms: EpochMs
    received_at_ms: EpochMs


class DlqRecord(msgspec.Struct, kw_only=True):
    """A payload a stage could not use (topic ``<prefix>.dlq``). Never carries Sign or tokens.

    ``stage`` says who rejected it: the ingress (a callback answered 4xx; ``query`` and
    ``body`` hold the request) or the stream (a record on an input topic it could not
    apply; ``source_*`` say where it was read and ``raw_base64`` keeps its exact bytes).
    """

    stage: Literal["ingest", "stream"] = "ingest"
    reason: str
    field: str | None = None
    sdkappid: str | None = None
    callback_command: str | None = None
    query: dict[str, str] = msgspec.field(default_factory=dict)
    body: str
    body_truncated: bool = False
    received_at_ms: int
    source_topic: str | None = None
    source_partition: int | None = None
    source_offset: int | None = None
    source_key: str | None = None
    raw_base64: str | None = None


class FailureWindow(msgspec.Struct, kw_only=True):
    """Full current state of one (app, group, error code, window) (``<prefix>.failure-windows``).

    Never a delta: the newest record of a key replaces every earlier one. ``final`` is
    true exactly once per key, when the window closes.
    """

    sdkappid: str
    group_id: str
    group_type: str | None = None
    error_code: int
    error_category: Category
    window_start: str
    window_end: str
    window_start_ms: int
    window_end_ms: int
    failures: int
    failures_per_minute: float
    senders: int
    first_event_time_ms: int
    last_event_time_ms: int
    group_failures: int
    group_sends: int | None = None
    failure_ratio: float | None = None
    final: bool
    updated_at: str
    updated_at_ms: int


class EventKind(StrEnum):
    """The input topic of an event: a late event's event_kind, the stream metrics' kind."""

    EXCEPTION = "exception"  # <prefix>.exceptions (Group.CallbackSendMsgException)
    SEND = "send"  # <prefix>.sends (Group.CallbackAfterSendMsg)


class LateEvent(msgspec.Struct, kw_only=True):
    """An event that arrived after its window closed (topic ``<prefix>.late-events``)."""

    reason: str
    source_topic: str
    event_kind: EventKind
    event_id: str
    sdkappid: str
    group_id: str
    event_time_ms: int
    window_start_ms: int
    window_end_ms: int
    stream_time_ms: int
    detected_at_ms: int
    event: dict[str, Any] = msgspec.field(default_factory=dict)


class ErrorCount(msgspec.Struct, kw_only=True):
    error_code: int
    error_category: Category
    failures: int


class Alert(msgspec.Struct, kw_only=True):
    """A failure spike of one group in one window (topic ``<prefix>.alerts``)."""

    sdkappid: str
    group_id: str
    group_type: str | None = None
    window_start: str
    window_end: str
    window_start_ms: int
    window_end_ms: int
    reason: Literal["threshold", "baseline"]
    failures: int
    threshold: int
    baseline: float | None = None
    baseline_factor: float
    top_error_codes: list[ErrorCount] = msgspec.field(default_factory=list)
    group_sends: int | None = None
    failure_ratio: float | None = None
    raised_at: str
    raised_at_ms: int


class AlertResolved(msgspec.Struct, kw_only=True):
    """A group back under the threshold after an alert (the webhook's "resolved" body).

    Not on a topic: ``groupwatch notify`` sends it to the webhook with the header
    ``X-Groupwatch-Event: resolved``. ``window_*`` is the window that showed the group under
    the threshold; ``failures`` is its group total there (0 when it had no failures).
    """

    status: Literal["resolved"] = "resolved"
    sdkappid: str
    group_id: str
    alert_window_start: str
    alert_window_start_ms: int
    alert_failures: int
    threshold: int
    window_start: str
    window_start_ms: int
    window_end: str
    window_end_ms: int
    failures: int


class NotifyFailure(msgspec.Struct, kw_only=True):
    """A message ``groupwatch notify`` could not deliver, or a record it could not read
    (topic ``<prefix>.notify-failures``).

    ``kind`` is what was being sent: an alert, a resolved notice, a digest of several, or
    ``malformed`` (a record on the alerts topic that is not an alert: then ``raw_base64``
    holds its exact bytes and ``source_*`` where it was read). ``status`` is the last HTTP
    status (None: no answer), ``attempts`` how many requests were made.
    """

    channel: str | None = None
    kind: Literal["alert", "resolved", "digest", "malformed"]
    reason: str
    status: int | None = None
    attempts: int = 0
    idempotency_key: str | None = None
    alert_keys: list[str] = msgspec.field(default_factory=list)
    alert: Alert | None = None
    source_topic: str | None = None
    source_partition: int | None = None
    source_offset: int | None = None
    raw_base64: str | None = None
    raw_truncated: bool = False
    failed_at: str
    failed_at_ms: int


Record = ExceptionEvent | SendEvent | DlqRecord | FailureWindow | LateEvent | Alert | NotifyFailure
R = TypeVar(
    "R",
    ExceptionEvent,
    SendEvent,
    DlqRecord,
    FailureWindow,
    LateEvent,
    Alert,
    NotifyFailure,
    AlertResolved,
)

# The record type carried by each topic (by topic suffix).
RECORD_TYPES: Final[dict[str, type[msgspec.Struct]]] = {
    topics.EXCEPTIONS: ExceptionEvent,
    topics.SENDS: SendEvent,
    topics.DLQ: DlqRecord,
    topics.FAILURE_WINDOWS: FailureWindow,
    topics.LATE_EVENTS: LateEvent,
    topics.ALERTS: Alert,
    topics.NOTIFY_FAILURES: NotifyFailure,
}

_encoder = msgspec.json.Encoder()
_decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {}


def encode(record: msgspec.Struct) -> bytes:
    """JSON bytes of a record (the value written to Kafka)."""
    return _encoder.encode(record)


def decode(data: bytes | str, record_type: type[R]) -> R:
    """Parse and validate a record; raises ``msgspec.ValidationError`` naming the field."""
    decoder = _decoders.get(record_type)
    if decoder is None:
        decoder = _decoders[record_type] = msgspec.json.Decoder(record_type)
    return decoder.decode(data)


def json_schema(record_type: type[msgspec.Struct]) -> dict[str, Any]:
    """The JSON Schema (2020-12) of a record type, as checked in under ``schemas/``."""
    schema: dict[str, Any] = msgspec.json.schema(record_type)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
