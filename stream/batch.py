"""One fetched batch of records applied to the partitions' states in memory.

``apply_batch`` is the worker's in-memory half of a batch (``StreamWorker.handle_batch``
carries the result out): records come in runs of one topic-partition; per partition,
every record is applied in offset order into one ``Effects`` (``PartitionState.begin``):
skipped as replayed when its offset is at or below the state's offset for its kind, else
decoded and checked (``stream.guard``) and stepped (``stream.step``); what cannot be
applied becomes a DLQ output of the batch. Ticks are applied after the batch's records
(updates, idle close), then every partition's ``Effects`` is finished. A run that would
skip records never applied (``skips``) is refused whole.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from groupwatch.contracts.records import EventKind
from stream import guard
from stream import metrics as m
from stream.effects import Effects, Outcome, Output
from stream.state import PartitionState
from stream.step import reject, step
from stream.ticks import tick
from stream.windows import KINDS

log = logging.getLogger("groupwatch.stream")

# (topic, partition, offset, value, key), as fetched
Record = tuple[str, int, int, bytes | None, bytes | None]
_REPLAYED = Outcome.REPLAYED  # bound once (used per record)


@dataclass
class Applied:
    """The in-memory result of one batch."""

    effects: dict[int, Effects] = field(default_factory=dict)  # finished, per partition
    refused: dict[tuple[str, int], int] = field(default_factory=dict)  # tp -> first not applied
    read: dict[EventKind, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))


def apply_batch(
    records: Sequence[Record],
    *,
    exceptions: str,
    ticks: str,
    now_ms: int,
    state_for: Callable[[int], PartitionState],
    positions: dict[tuple[str, int], int],
    skips: Callable[[str, int, int, int], bool],
    unread: Callable[[int], Mapping[EventKind, bool]],
) -> Applied:
    """Apply ``records`` (input topics ``exceptions`` / sends, and ``ticks``) in memory.

    ``state_for(p)`` gives partition p's state; ``positions`` gets the last offset handled
    per input topic-partition; ``skips(topic, p, offset, applied)`` says whether a run
    starting at ``offset`` skips records never applied (then it is refused);
    ``unread(p)`` is asked at a tick whether input of partition p is still unread.
    """
    now = now_ms
    result = Applied()
    effects: dict[int, tuple[PartitionState, Effects]] = {}
    ticked: set[int] = set()
    read = result.read
    refused = result.refused
    # records come in runs of one topic-partition: look up per run, not per record
    run_topic: str | None = None
    run_partition = -1
    run_offset = -1
    is_tick = False
    kind = EventKind.EXCEPTION
    state: PartitionState | None = None
    fx: Effects | None = None
    applied: dict[EventKind, int] = {}
    counts: list[int] = []  # the run's outcome counters (of its partition and kind)
    decode = guard.decode
    skip_run = False
    for topic, partition, offset, value, key in records:
        if partition != run_partition or topic != run_topic:
            if run_topic is not None and run_topic != ticks and run_offset >= 0:
                positions[(run_topic, run_partition)] = run_offset
            run_topic, run_partition, run_offset = topic, partition, -1
            is_tick = topic == ticks
            kind = EventKind.EXCEPTION if topic == exceptions else EventKind.SEND
            entry = effects.get(partition)
            if entry is None:
                state = state_for(partition)
                entry = effects[partition] = (state, state.begin())
            state, fx = entry
            applied = state.offsets
            counts = fx.outcomes[kind]
            skip_run = False
            if not is_tick:
                done = applied[kind]
                if (topic, partition) in refused or skips(topic, partition, offset, done):
                    refused.setdefault((topic, partition), done + 1)
                    skip_run = True
        if skip_run:
            continue
        assert state is not None and fx is not None
        if is_tick:
            ticked.add(partition)
            continue
        run_offset = offset
        read[kind] += 1
        if offset <= applied[kind]:
            counts[_REPLAYED] += 1
            continue
        before = counts[:]
        try:
            event = decode(kind, key, value)
            step(state, fx, kind, offset, event, topic, now)
        except guard.Reject as rej:
            _reject(state, fx, kind, topic, partition, offset, key, value, now, rej)
        except Exception as exc:
            log.exception("applying %s[%d]@%d failed", topic, partition, offset)
            counts[:] = before  # it counts as rejected only
            why = guard.Reject(f"applying the record failed: {type(exc).__name__}: {exc}")
            _reject(state, fx, kind, topic, partition, offset, key, value, now, why)
    if run_topic is not None and run_topic != ticks and run_offset >= 0:
        positions[(run_topic, run_partition)] = run_offset
    for partition in ticked:
        state, fx = effects[partition]
        tick(state, fx, now, unread(partition))
    for partition, (state, fx) in effects.items():
        result.effects[partition] = state.finish(fx)
    return result


def _reject(
    state: PartitionState,
    fx: Effects,
    kind: EventKind,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    now: int,
    rej: guard.Reject,
) -> None:
    """Send one record the stream cannot apply to the DLQ (acknowledged with the batch)."""
    m.INVALID.labels(topic).inc()
    log.warning(
        "record %s[%d]@%d rejected to the DLQ: %s", topic, partition, offset, rej.reason[:300]
    )
    value_out = guard.dlq_record(
        rej.reason,
        rej.field,
        topic=topic,
        partition=partition,
        offset=offset,
        key=key,
        value=value,
        now_ms=now,
    )
    out = Output("dlq", guard.dlq_key(topic, partition, offset), value_out)
    reject(state, fx, kind, offset, out, now)
