"""The stream worker's in-memory batch path without Kafka (``stream.batch.apply_batch``):
records encoded as on the topics, a batch at a time, as ``handle_batch`` feeds them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from groupwatch.contracts.keys import group_key
from groupwatch.contracts.records import EventKind, encode
from stream.batch import apply_batch
from stream.effects import Effects
from stream.state import PartitionState

IN_TOPIC = {EventKind.EXCEPTION: "in.exceptions", EventKind.SEND: "in.sends"}
TICKS_TOPIC = "in.ticks"
# (kind, offset, event) or (kind, offset, raw value, raw key)
Input = tuple[EventKind, int, Any] | tuple[EventKind, int, bytes | None, bytes | None]


def run_batch(
    state: PartitionState,
    records: Iterable[Input],
    now_ms: int,
    *,
    tick: bool = False,
    unread: dict[EventKind, bool] | None = None,
) -> Effects:
    """One fetched batch of partition ``state.p`` through the worker's code: records
    encoded as on the topics, decoded, stepped, a tick after them (when ``tick``,
    ``unread`` as the worker's positions would say), the ``Effects`` finished."""
    fetched: list[tuple[str, int, int, bytes | None, bytes | None]] = []
    for rec in records:
        if len(rec) == 3:
            kind, offset, ev = rec
            key: bytes | None = group_key(ev.sdkappid, ev.group_id).encode()
            value: bytes | None = encode(ev)
        else:
            kind, offset, value, key = rec  # type: ignore[misc]
        fetched.append((IN_TOPIC[kind], state.p, offset, value, key))
    if tick:
        fetched.append((TICKS_TOPIC, state.p, 0, str(now_ms).encode(), None))
    applied = apply_batch(
        fetched,
        exceptions=IN_TOPIC[EventKind.EXCEPTION],
        ticks=TICKS_TOPIC,
        now_ms=now_ms,
        state_for=lambda p: state,
        positions={},
        skips=lambda topic, p, offset, done: False,
        unread=lambda p: unread or {},
    )
    return applied.effects.get(state.p) or state.finish(state.begin())


def step1(state: PartitionState, kind: EventKind, offset: int, ev: Any, now_ms: int) -> Effects:
    """One record as a batch of one."""
    return run_batch(state, [(kind, offset, ev)], now_ms)


def tick(
    state: PartitionState, now_ms: int, unread: dict[EventKind, bool] | None = None
) -> Effects:
    """A batch holding only a tick."""
    return run_batch(state, [], now_ms, tick=True, unread=unread)
