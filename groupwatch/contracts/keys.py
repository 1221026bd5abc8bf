"""Kafka record keys and time formatting shared by every stage."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime


def group_key(sdkappid: str, group_id: str) -> str:
    """Key of raw events: all of a group's events share a partition."""
    return f"{sdkappid}:{group_id}"


def window_key(sdkappid: str, group_id: str, error_code: int, window_start_ms: int) -> str:
    """Key of a failure-window record."""
    return f"{sdkappid}:{group_id}:{error_code}:{window_start_ms}"


def alert_key(sdkappid: str, group_id: str, window_start_ms: int, reason: str) -> str:
    """Key of an alert: one per (group, window, reason)."""
    return f"{sdkappid}:{group_id}:{window_start_ms}:{reason}"


def make_event_id(
    sdkappid: str,
    group_id: str,
    from_account: str | None,
    random: int | None,
    event_time_ms: int,
) -> str:
    """Deterministic id of one message: (sdkappid, group_id, from_account, random).

    The Chat backend treats equal Random within five minutes as the same message. When a
    callback carries no Random, the event time stands in for it, so distinct messages
    without Random are never merged.
    """
    salt = str(random) if random is not None else f"t{event_time_ms}"
    raw = "\x1f".join((sdkappid, group_id, from_account or "", salt))
    return hashlib.blake2b(raw.encode("utf-8"), digest_size=16).hexdigest()


def iso_utc(ms: int) -> str:
    """Milliseconds since the epoch as ISO-8601 UTC with a Z, e.g. 2026-11-26T21:50:00.000Z."""
    return (
        datetime.fromtimestamp(ms / 1000, tz=UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )
