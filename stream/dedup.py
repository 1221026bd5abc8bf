"""Duplicate suppression: the same event_id within ``dedup_ms`` of event time counts once.

The state of one event_id is its history of *counted* occurrences ``[(event_time, offset)]``.
The decision for an event only looks at occurrences with a smaller source offset, so a
replay after a crash (state possibly already containing this or later events) decides
exactly as the first pass did.
"""

from __future__ import annotations

from dataclasses import dataclass

Occurrence = tuple[int, int]  # (event_time_ms, source offset)


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


def expired(history: list[Occurrence], horizon_ms: int) -> bool:
    """True when no occurrence is at or after ``horizon_ms`` (the entry can be dropped)."""
    return all(t < horizon_ms for t, _ in history)
