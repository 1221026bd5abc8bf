"""Decode and range-check one input record; what cannot be applied becomes a DLQ record.

The stream applies a record only when it decodes to its contract type *and* every value
the stream computes with lies in range (window arithmetic, ISO formatting, 64-bit table
values, record sizes). Anything else raises ``Reject`` with one sentence; the worker
sends the record to ``<prefix>.dlq`` as a ``DlqRecord`` (exact bytes kept) and moves on.
The checks do not depend on the wall clock, so a replay rejects the same records.
"""

from __future__ import annotations

import base64
import re
from typing import Final

import msgspec

from groupwatch.contracts.records import DlqRecord, ExceptionEvent, SendEvent, encode

# Event and receive times: 1970-01-01 up to 2100-01-01 (UTC), in milliseconds. Window
# bounds and close times computed from them stay far inside what datetime can format.
MIN_TIME_MS: Final = 0
MAX_TIME_MS: Final = 4_102_444_800_000
# The ingress accepts EventTime up to 15 minutes after it received the callback.
MAX_AHEAD_OF_RECEIVED_MS: Final = 15 * 60_000
INT32_MIN: Final = -(1 << 31)
INT32_MAX: Final = (1 << 31) - 1
# Identifiers become table keys and output keys: bounded (Chat's own limits are far lower).
MAX_ID_CHARS: Final = 1024
# A record's value: far above any callback (GROUPWATCH_MAX_BODY_BYTES is 64 KiB), far
# below the 1 MiB record limit the late-events output (which carries the event) must fit.
MAX_RECORD_BYTES: Final = 256 * 1024
DLQ_BODY_CHARS: Final = 4096  # the readable rendering in DlqRecord.body
# A DLQ record larger than this keeps no raw_base64 (the DLQ topic accepts 4 MiB).
MAX_DLQ_BYTES: Final = 3 * 1024 * 1024

_decode_exception = msgspec.json.Decoder(ExceptionEvent).decode
_decode_send = msgspec.json.Decoder(SendEvent).decode
_AT_FIELD = re.compile(r"at `\$\.([A-Za-z_][A-Za-z0-9_]*)")


class Reject(Exception):
    """A record the stream cannot apply: ``reason`` says why, ``field`` which field."""

    def __init__(self, reason: str, field: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.field = field


def _time(name: str, value: int) -> None:
    if not MIN_TIME_MS <= value < MAX_TIME_MS:
        raise Reject(
            f"{name} {value} is outside 1970-01-01..2100-01-01 (milliseconds expected)", name
        )


def _text(name: str, value: str | None) -> None:
    if value is not None and len(value) > MAX_ID_CHARS:
        raise Reject(f"{name} has {len(value)} characters, more than {MAX_ID_CHARS}", name)


def decode(kind: str, key: bytes | None, value: bytes | None) -> ExceptionEvent | SendEvent:
    """The event of one input record (``kind`` "e" exceptions, "s" sends), or ``Reject``."""
    if value is None:
        raise Reject("the record has no value")
    if len(value) > MAX_RECORD_BYTES:
        raise Reject(f"the record has {len(value)} bytes, more than {MAX_RECORD_BYTES}")
    event: ExceptionEvent | SendEvent
    try:
        event = _decode_exception(value) if kind == "e" else _decode_send(value)
    except msgspec.ValidationError as exc:
        at = _AT_FIELD.search(str(exc))
        raise Reject(f"not a valid {_type(kind)}: {exc}", at.group(1) if at else None) from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise Reject(f"not valid UTF-8 JSON: {exc}") from None
    t, rcv = event.event_time_ms, event.received_at_ms
    if not (MIN_TIME_MS <= t < MAX_TIME_MS and MIN_TIME_MS <= rcv < MAX_TIME_MS):
        _time("event_time_ms", t)
        _time("received_at_ms", rcv)
    if t - rcv > MAX_AHEAD_OF_RECEIVED_MS:
        raise Reject("event_time_ms is more than 15 minutes after received_at_ms", "event_time_ms")
    app, grp, eid = event.sdkappid, event.group_id, event.event_id
    gt, sender = event.group_type, event.from_account
    if not (
        0 < len(eid) <= MAX_ID_CHARS
        and 0 < len(app) <= MAX_ID_CHARS
        and 0 < len(grp) <= MAX_ID_CHARS
        and (gt is None or len(gt) <= MAX_ID_CHARS)
        and (sender is None or len(sender) <= MAX_ID_CHARS)
    ):
        for name in ("event_id", "sdkappid", "group_id", "group_type", "from_account"):
            _text(name, getattr(event, name))
        raise Reject("event_id, sdkappid and group_id must not be empty")
    if type(event) is ExceptionEvent and not INT32_MIN <= event.error_code <= INT32_MAX:
        raise Reject(f"error_code {event.error_code} is outside 32 bits", "error_code")
    if key is None:
        raise Reject("the record has no key (expected <sdkappid>:<group_id>)")
    if key != f"{app}:{grp}".encode():  # contracts.keys.group_key, written out
        raise Reject(
            "the record's key is not <sdkappid>:<group_id> of its value"
            " (it may sit on another partition than the group's other events)"
        )
    return event


def _type(kind: str) -> str:
    return "ExceptionEvent" if kind == "e" else "SendEvent"


def dlq_record(
    reason: str,
    field: str | None,
    *,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    now_ms: int,
) -> bytes:
    """The encoded ``DlqRecord`` for one rejected input record (exact bytes in base64)."""
    raw = value or b""
    text = raw.decode("utf-8", errors="replace")
    truncated = len(text) > DLQ_BODY_CHARS
    rec = DlqRecord(
        stage="stream",
        reason=reason,
        field=field,
        body=text[:DLQ_BODY_CHARS],
        body_truncated=truncated,
        received_at_ms=now_ms,
        source_topic=topic,
        source_partition=partition,
        source_offset=offset,
        source_key=None if key is None else key.decode("utf-8", errors="replace")[:MAX_ID_CHARS],
        raw_base64=None if value is None else base64.b64encode(raw).decode("ascii"),
    )
    out = encode(rec)
    if len(out) > MAX_DLQ_BYTES:  # the raw bytes stay readable at the source offset
        rec.raw_base64 = None
        rec.reason = (
            f"{reason}; raw bytes ({len(raw)}) too large for the DLQ, kept only on"
            f" {topic}[{partition}]@{offset} until its retention"
        )
        out = encode(rec)
    return out


def dlq_key(topic: str, partition: int, offset: int) -> str:
    """Key of a stream DLQ record: where it was read (unique, stable across replays)."""
    return f"stream:{topic}:{partition}:{offset}"
