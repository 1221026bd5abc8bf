"""The step: one input event applied to its partition's state, in memory.

``step`` decides late / duplicate / counted from the partition's state alone, updates the
stream clock, the dedup history and the aggregates, marks the changed keys (serialised at
``PartitionState.finish``) and closes the windows the close mark reached
(``stream.closing``). It is the hot path of the worker: the window test, clock, dedup and
counting are written out (no per-event helper calls or temporary objects beyond the dict
keys). The caller skips records already applied (``offset <= state.offsets[kind]``:
replayed) before decoding them, and sends what cannot be decoded to ``reject``.
"""

from __future__ import annotations

import orjson

from groupwatch.contracts.records import EventKind, ExceptionEvent, LateEvent, SendEvent, encode
from stream import dedup
from stream.aggregate import CodeAgg, Count
from stream.closing import close_ready
from stream.dedup import BUCKET_MS, BUCKET_OFFSETS
from stream.effects import Effects, Outcome, Output
from stream.state import PartitionState

_OTHER = {EventKind.EXCEPTION: EventKind.SEND, EventKind.SEND: EventKind.EXCEPTION}
# bound once: ``Outcome.COUNTED`` in the step would be a class attribute lookup per event
_COUNTED, _DUPLICATE, _LATE = Outcome.COUNTED, Outcome.DUPLICATE, Outcome.LATE


def step(
    state: PartitionState,
    fx: Effects,
    kind: EventKind,
    offset: int,
    event: ExceptionEvent | SendEvent,
    source_topic: str,
    now_ms: int,
) -> None:
    """Apply one event read at ``offset`` (after the state's offset for ``kind``)."""
    state.last_read_ms[kind] = now_ms
    size = state.size_ms
    t = event.event_time_ms
    ws = t - t % size
    close = ws + size + state.grace_ms
    clock = state.clock
    stream_time = clock.stream_time
    st = stream_time[kind]
    cu = clock.closed_until
    if (st is not None and st >= close) or (cu is not None and cu >= close):
        _late(state, fx, kind, event, ws, source_topic, now_ms)
        clock.observe(kind, t)
        st = stream_time[kind]
    else:
        clock.seen[kind] = True
        if st is None or t > st:
            # stream time stays within max_future of the clocks that read the event
            # (the ingress's receive time, the worker's wall clock): an event dated
            # ahead is counted in its own window but does not move the clock there
            rcv = event.received_at_ms
            cap = (rcv if rcv < now_ms else now_ms) + state.future_ms
            if t <= cap:
                stream_time[kind] = st = t
            elif st is None or cap > st:
                stream_time[kind] = st = cap
        event_id = event.event_id
        dedup_map = state.dedup[kind]
        history = dedup_map.get(event_id)
        occ = (t, offset)
        if history is None:
            counted = changed = True
            # the first occurrence: one list, shared with its bucket entry below (neither
            # is changed in place while shared: a later occurrence replaces the history)
            dedup_map[event_id] = first_occ = [occ]
        else:
            first_occ = None
            decision = dedup.decide(history, t, offset, state.dedup_ms)
            counted, changed = decision.counted, decision.changed
            if changed:
                dedup_map[event_id] = decision.history
        if not counted:
            fx.outcomes[kind][_DUPLICATE] += 1
        else:
            fx.outcomes[kind][_COUNTED] += 1
            if changed:
                bk = (kind, t - t % BUCKET_MS, offset // BUCKET_OFFSETS)
                entries = state.dbuckets.get(bk)
                if entries is None:
                    entries = state.dbuckets[bk] = {}
                held = entries.get(event_id)
                if held is None:
                    entries[event_id] = first_occ if first_occ is not None else [occ]
                else:
                    held.append(occ)
                state.dirty_buckets.add(bk)
            if ws not in state.windows:
                fx.windows_opened += 1
                state.windows.add(ws)
                if state.next_close is None or close < state.next_close:
                    state.next_close = close
            app, grp = event.sdkappid, event.group_id
            gk = (ws, app, grp)
            if isinstance(event, ExceptionEvent):
                by_code = state.by_group.get(gk)
                if by_code is None:
                    by_code = state.by_group[gk] = {}
                code = event.error_code
                agg = by_code.get(code)
                if agg is None:
                    agg = by_code[code] = state.codes[(ws, app, grp, code)] = CodeAgg(
                        ws, app, grp, code, event.error_category
                    )
                if offset > agg.off:  # not applied to this key before a restart
                    agg.n += 1
                    sender = event.from_account
                    if sender:
                        agg.senders.add(sender)
                    if not agg.gt:
                        gt = event.group_type
                        if gt:
                            agg.gt = gt
                    first = agg.first
                    if first is None or t < first:
                        agg.first = t
                    last = agg.last
                    if last is None or t > last:
                        agg.last = t
                    agg.off = offset
                    if not agg.dirty:
                        agg.dirty = True
                        state.dirty_codes.append(agg)
            else:
                g = state.gsends.get(gk)
                if g is None:
                    g = state.gsends[gk] = Count()
                if offset > g.off:
                    g.n += 1
                    g.off = offset
                    state.dirty_gsends.add(gk)
                ak = (ws, app)
                a = state.asends.get(ak)
                if a is None:
                    a = state.asends[ak] = Count()
                if offset > a.off:
                    a.n += 1
                    a.off = offset
                    state.dirty_asends.add(ak)
            state.dirty.add(gk)
    state.offsets[kind] = offset
    state.meta_due = True
    nc = state.next_close
    if nc is not None:
        # clock.close_mark() >= nc, written out: closed_until reached it, or the
        # watermark (min stream time of the seen topics; this topic is seen) did
        cu = clock.closed_until
        if (cu is not None and cu >= nc) or (
            st is not None
            and st >= nc
            and (
                not clock.seen[_OTHER[kind]]
                or ((o := stream_time[_OTHER[kind]]) is not None and o >= nc)
            )
        ):
            close_ready(state, fx)


def _late(
    state: PartitionState,
    fx: Effects,
    kind: EventKind,
    event: ExceptionEvent | SendEvent,
    ws: int,
    source_topic: str,
    now_ms: int,
) -> None:
    """Report an event whose window already closed (not counted)."""
    clock, t = state.clock, event.event_time_ms
    marks = [m for m in (clock.stream_time[kind], clock.closed_until) if m is not None]
    late_rec = LateEvent(
        reason="window_closed",
        source_topic=source_topic,
        event_kind=kind,
        event_id=event.event_id,
        sdkappid=event.sdkappid,
        group_id=event.group_id,
        event_time_ms=t,
        window_start_ms=ws,
        window_end_ms=state.cfg.spec.end(ws),
        stream_time_ms=max(marks, default=t),
        detected_at_ms=now_ms,
        event=orjson.loads(encode(event)),
    )
    fx.outputs.append(Output("late_events", f"{event.sdkappid}:{event.group_id}", encode(late_rec)))
    fx.outcomes[kind][_LATE] += 1


def reject(
    state: PartitionState, fx: Effects, kind: EventKind, offset: int, dlq: Output, now_ms: int
) -> None:
    """Record a record that cannot be applied: its DLQ record, and its offset as done.

    The DLQ record is acknowledged before the meta covering ``offset`` is written, so a
    crash in between re-sends it (at least once); a replay past the meta skips it.
    """
    fx.outputs.append(dlq)
    fx.outcomes[kind][Outcome.REJECTED] += 1
    state.last_read_ms[kind] = now_ms
    if offset > state.offsets[kind]:
        state.offsets[kind] = offset
        state.meta_due = True
