"""Closing windows: final records, alerts, baselines, and pruning what closed windows need.

A window closes when the partition's close mark (``StreamClock.close_mark``, or the idle
mark of ``stream.ticks``) reaches its end + grace. Closing puts the changed keys first
(with their last value, ``PartitionState.flush``), then emits one final record per error
code of each group, the group's alerts, folds the window into the group's EWMA baseline,
and deletes the window's keys; after the close, dedup buckets whose event times can no
longer decide anything are deleted. Finals and alerts are dated at the window's close time
in event time (end + grace), so a re-sent final is byte-identical.
"""

from __future__ import annotations

from groupwatch.contracts.keys import alert_key, iso_utc, window_key
from groupwatch.contracts.records import Alert, ErrorCount, FailureWindow, encode
from stream import alerts, codecs, dedup, keys
from stream.aggregate import CodeAgg, failure_window, group_totals
from stream.effects import Effects, Output
from stream.state import PartitionState

TOP_CODES = 5  # error codes listed in an alert


def window_record(
    state: PartitionState, agg: CodeAgg, failures: int, final: bool, updated_at_ms: int
) -> FailureWindow:
    """The record of one window key, with its group's totals (a final or an update)."""
    gs = state.gsends.get(agg.group)
    totals = group_totals(failures, gs.n if gs else 0, (agg.ws, agg.app) in state.asends)
    return failure_window(agg, totals, state.cfg.spec.size_ms, final, updated_at_ms)


def close_ready(state: PartitionState, fx: Effects) -> None:
    """Close the windows the close mark reached (event time), then prune dedup buckets."""
    spec, clock = state.cfg.spec, state.clock
    ready = clock.closable(spec, state.windows)
    mark = clock.close_mark()
    if ready:
        state.flush(fx)  # keys are put (with their last value) before being deleted
    for ws in ready:
        close_window(state, fx, ws)
    if ready and mark is not None:
        clock.advance_to(mark)
        prune_dedup(state, fx)


def close_until(state: PartitionState, fx: Effects, mark: int) -> None:
    """Close the windows whose end + grace is at or before ``mark`` (the idle close).

    ``closed_until`` moves to the close time of the last window closed, not to ``mark``:
    an event for a window that never opened is still counted (and closed at the next tick).
    """
    nc = state.next_close
    if nc is None or nc > mark:
        return
    spec = state.cfg.spec
    ready = sorted(ws for ws in state.windows if spec.close_time(ws) <= mark)
    if not ready:
        return
    state.flush(fx)
    for ws in ready:
        close_window(state, fx, ws)
    state.clock.advance_to(spec.close_time(ready[-1]))
    prune_dedup(state, fx)
    state.meta_due = True


def close_window(state: PartitionState, fx: Effects, ws: int) -> None:
    """Finals and alerts of one window, its baselines folded in, its keys deleted."""
    spec, rules = state.cfg.spec, state.cfg.rules
    closed_at = spec.close_time(ws)
    by_group = state.by_group
    for gk in sorted(gk for gk in by_group if gk[0] == ws):
        _, app, grp = gk
        codes = by_group[gk]
        aggs = [codes[c] for c in sorted(codes)]
        total = sum(a.n for a in aggs)
        records = [window_record(state, a, total, True, closed_at) for a in aggs]
        for rec in records:
            fx.outputs.append(
                Output("failure_windows", window_key(app, grp, rec.error_code, ws), encode(rec))
            )
            fx.finals += 1
        first = records[0]
        failures = first.group_failures
        prior = state.baselines.get((app, grp))
        base = alerts.baseline_for(prior, ws, spec.size_ms, rules.ewma_alpha)
        for reason in alerts.reasons(failures, base, rules):
            top = sorted(aggs, key=lambda a: (-a.n, a.code))[:TOP_CODES]
            alert = Alert(
                sdkappid=app,
                group_id=grp,
                group_type=first.group_type,
                window_start=iso_utc(ws),
                window_end=iso_utc(spec.end(ws)),
                window_start_ms=ws,
                window_end_ms=spec.end(ws),
                reason=reason,  # type: ignore[arg-type]
                failures=failures,
                threshold=rules.threshold,
                baseline=None if base is None else round(base, 6),
                baseline_factor=rules.baseline_factor,
                top_error_codes=[
                    ErrorCount(error_code=a.code, error_category=a.cat, failures=a.n) for a in top
                ],
                group_sends=first.group_sends,
                failure_ratio=first.failure_ratio,
                raised_at=iso_utc(closed_at),
                raised_at_ms=closed_at,
            )
            fx.outputs.append(Output("alerts", alert_key(app, grp, ws, reason), encode(alert)))
            fx.alerts += 1
        updated = alerts.update(prior, ws, failures, spec.size_ms, rules.ewma_alpha)
        if updated != prior:
            state.baselines[(app, grp)] = updated
            fx.writes[keys.baseline(state.p, app, grp)] = codecs.encode_baseline(app, grp, updated)
    fx.deletes.extend(state.drop_window(ws))
    fx.windows_closed += 1


def prune_dedup(state: PartitionState, fx: Effects) -> None:
    """Delete the dedup buckets older than stream time - (window + grace + dedup span)."""
    spec = state.cfg.spec
    keep = spec.size_ms + spec.grace_ms + state.cfg.dedup_ms
    for bk in list(state.dbuckets):
        kind = bk[0]
        st = state.clock.stream_time[kind]
        if st is None or not dedup.bucket_expired(bk[1], st - keep):
            continue
        # the bucket's occurrences leave the in-memory histories too (only the
        # expired entries are visited, not every history)
        histories = state.dedup[kind]
        forget = histories.pop
        for event_id, gone in state.dbuckets.pop(bk).items():
            history = forget(event_id, None)
            if history is None or history is gone or history == gone:  # usually all of it
                continue
            rest = [occ for occ in history if occ not in gone]
            if rest:
                histories[event_id] = rest
        state.dirty_buckets.discard(bk)
        fx.deletes.append(keys.dedup(state.p, *bk))
