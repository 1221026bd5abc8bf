"""Wall-clock work of a partition, once per tick: non-final updates and the idle close.

Ticks (one record a second per partition on the internal ticks topic) are applied after
a batch's records. A tick sends the ``final: false`` records of groups that changed, at
most once per update interval per group, and closes the windows the idle mark reached.
"""

from __future__ import annotations

from collections.abc import Mapping

from groupwatch.contracts.keys import window_key
from groupwatch.contracts.records import EventKind, encode
from stream.closing import close_until, window_record
from stream.effects import Effects, Output
from stream.state import PartitionState
from stream.windows import KINDS

_NEVER = -(10**15)


def tick(
    state: PartitionState,
    fx: Effects,
    now_ms: int,
    unread: Mapping[EventKind, bool] | None = None,
) -> None:
    """Updates due now, and the idle close (``idle_mark``), into the batch's ``fx``.

    ``unread[kind]`` says the worker knows of records of that input topic-partition it
    has not read yet (None: nothing unread).
    """
    interval = state.cfg.update_interval_ms
    for gk in sorted(state.dirty):
        if now_ms - state.last_update.get(gk, _NEVER) < interval:
            continue
        state.dirty.discard(gk)
        state.last_update[gk] = now_ms
        codes = state.by_group.get(gk)
        aggs = [codes[c] for c in sorted(codes)] if codes else []
        total = sum(a.n for a in aggs)
        for agg in aggs:
            rec = window_record(state, agg, total, False, now_ms)
            fx.updates.append(
                Output(
                    "failure_windows", window_key(agg.app, agg.grp, agg.code, agg.ws), encode(rec)
                )
            )
    last = state.last_read_ms
    for k in KINDS:
        if last[k] is None:  # after a start: the quiet time counts from the first tick
            last[k] = now_ms
    mark = idle_mark(state, now_ms, unread)
    if mark is not None:
        close_until(state, fx, mark)


def idle_mark(
    state: PartitionState, now_ms: int, unread: Mapping[EventKind, bool] | None = None
) -> int | None:
    """The close watermark with idle input topic-partitions taken at wall clock - A.

    A = ``idle_close_ms``. An input topic-partition is *idle* when nothing of it is
    unread and no record of it was read for A (worker wall clock); an idle topic holds
    windows open only up to ``now - A`` (its own stream time if later). The mark is the
    minimum over the topics that carry records; None when no topic is idle (then event
    time alone closes windows, in ``stream.step``) or the idle close is off.
    """
    allowance = state.cfg.idle_close_ms
    if allowance <= 0:
        return None
    floor = now_ms - allowance
    clock = state.clock
    last = state.last_read_ms
    low: int | None = None
    any_idle = False
    for k in KINDS:
        if not clock.seen[k]:
            continue
        st = clock.stream_time[k]
        read = last[k]
        if not (unread and unread.get(k)) and (read is None or now_ms - read >= allowance):
            any_idle = True
            t = floor if st is None or st < floor else st
        elif st is None:
            return None
        else:
            t = st
        if low is None or t < low:
            low = t
    return low if any_idle else None
