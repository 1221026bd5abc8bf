"""Duplicate suppression: the same event_id within ``dedup_ms`` of event time counts once.

The state of one event_id is its history of *counted* occurrences ``[(event_time, offset)]``.
The decision for an event only looks at occurrences with a smaller source offset, so a
replay after a crash (state possibly already containing this or later events) decides
exactly as the first pass did.

Stored, the occurrences are grouped in **buckets** (one table key each, written once per
batch), not one key per event_id: a bucket holds the counted occurrences of one input kind
whose event time falls in one ``BUCKET_MS`` span and whose source offsets fall in one run
of ``BUCKET_OFFSETS`` offsets, so its size stays bounded whatever the event rate.
"""

from __future__ import annotations

from dataclasses import dataclass

from groupwatch.contracts.records import EventKind

Occurrence = tuple[int, int]  # (event_time_ms, source offset)
BUCKET_MS = 60_000  # event-time span of one stored dedup bucket
BUCKET_OFFSETS = 1000  # source offsets per bucket: at most this many occurrences in one
BucketId = tuple[EventKind, int, int]  # (kind, event-time span start, offset // BUCKET_OFFSETS)


def bucket(kind: EventKind, event_time_ms: int, offset: int) -> BucketId:
    """The bucket holding one occurrence (span start floors, also before 1970)."""
    return (kind, event_time_ms - event_time_ms % BUCKET_MS, offset // BUCKET_OFFSETS)


def bucket_expired(bucket_start: int, horizon_ms: int) -> bool:
    """True when every event time the bucket can hold lies before ``horizon_ms``."""
    return bucket_start + BUCKET_MS <= horizon_ms


@dataclass(frozen=True)
class DedupDecision:
    counted: bool
    history: list[Occurrence]
    changed: bool


def decide(
    history: list[Occurrence], event_time_ms: int, offset: int, dedup_ms: int
) -> DedupDecision:
    """Whether the event counts, and the history to store afterwards.

    An event counts unless an earlier counted occurrence (smaller offset) lies within
    ``dedup_ms`` of its event time (either direction: event time may go backwards).
    """
    if dedup_ms <= 0:
        raise ValueError("dedup_ms must be > 0")
    if any(off == offset for _, off in history):
        return DedupDecision(True, history, False)  # this very event, replayed
    for t, off in history:
        if off < offset and abs(event_time_ms - t) < dedup_ms:
            return DedupDecision(False, history, False)
    new = sorted([*history, (event_time_ms, offset)], key=lambda o: o[1])
    return DedupDecision(True, new, True)
