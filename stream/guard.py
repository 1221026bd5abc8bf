"""Decode and check one input record; what cannot be applied becomes a DLQ record.

The stream applies a record only when it decodes to its contract type (whose field
ranges keep window arithmetic and ISO formatting in range), its event time is at most
the ingress's 15 minutes after its receive time, and its key is its group's. Anything
else raises ``Reject`` with one sentence; the worker sends the record to ``<prefix>.dlq``
as a ``DlqRecord`` (exact bytes kept) and moves on. The checks do not depend on the wall
clock, so a replay rejects the same records.
"""

from __future__ import annotations

import base64
import re
from typing import Final

import msgspec

from groupwatch.contracts.limits import EVENT_TIME_MAX_AHEAD_MS
from groupwatch.contracts.records import (
    DlqRecord,
    EventKind,
    ExceptionEvent,
    SendEvent,
    encode,
)

# A record's value: far above any callback (GROUPWATCH_MAX_BODY_BYTES is 64 KiB), far
# below the 1 MiB record limit the late-events output (which carries the event) must fit.
MAX_RECORD_BYTES: Final = 256 * 1024
MAX_KEY_CHARS: Final = 1024  # of the source key kept in a DLQ record
DLQ_BODY_CHARS: Final = 4096  # the readable rendering in DlqRecord.body
# A DLQ record larger than this keeps no raw_base64 (the DLQ topic accepts 4 MiB).
MAX_DLQ_BYTES: Final = 3 * 1024 * 1024

_decode_exception = msgspec.json.Decoder(ExceptionEvent).decode
_decode_send = msgspec.json.Decoder(SendEvent).decode
_EXCEPTION = EventKind.EXCEPTION  # bound once (compared per record)
_AT_FIELD = re.compile(r"at `\$\.([A-Za-z_][A-Za-z0-9_]*)")


class Reject(Exception):
    """A record the stream cannot apply: ``reason`` says why, ``field`` which field."""

    def __init__(self, reason: str, field: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.field = field


def decode(kind: EventKind, key: bytes | None, value: bytes | None) -> ExceptionEvent | SendEvent:
    """The event of one input record of the ``kind`` topic, or ``Reject``."""
    if value is None:
        raise Reject("the record has no value")
    if len(value) > MAX_RECORD_BYTES:
        raise Reject(f"the record has {len(value)} bytes, more than {MAX_RECORD_BYTES}")
    event: ExceptionEvent | SendEvent
    try:
        event = _decode_exception(value) if kind is _EXCEPTION else _decode_send(value)
    except msgspec.ValidationError as exc:
        at = _AT_FIELD.search(str(exc))
        raise Reject(f"not a valid {_type(kind)}: {exc}", at.group(1) if at else None) from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise Reject(f"not valid UTF-8 JSON: {exc}") from None
    # Ranges (times, 32-bit codes, string lengths) are the contract's: the decoder above
    # checked them, so window arithmetic and ISO formatting never see an absurd value.
    if event.event_time_ms - event.received_at_ms > EVENT_TIME_MAX_AHEAD_MS:
        raise Reject("event_time_ms is more than 15 minutes after received_at_ms", "event_time_ms")
    app, grp = event.sdkappid, event.group_id
    if key is None:
        raise Reject("the record has no key (expected <sdkappid>:<group_id>)")
    if key != f"{app}:{grp}".encode():  # contracts.keys.group_key, written out
        raise Reject(
            "the record's key is not <sdkappid>:<group_id> of its value"
            " (it may sit on another partition than the group's other events)"
        )
    return event


def _type(kind: EventKind) -> str:
    return "ExceptionEvent" if kind is _EXCEPTION else "SendEvent"


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
        source_key=None if key is None else key.decode("utf-8", errors="replace")[:MAX_KEY_CHARS],
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
