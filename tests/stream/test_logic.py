"""Pure window, dedup, alert and partition-state logic (no broker)."""

from __future__ import annotations

import pytest

from groupwatch.contracts.records import EventKind
from stream import alerts, dedup
from stream.alerts import AlertRules, Baseline
from stream.effects import Effects, Outcome
from stream.state import Config, PartitionState
from stream.step import step
from stream.windows import StreamClock, WindowSpec
from tests.stream.inmemory import run_batch, step1, tick
from tests.support.stream import exc, send

E, S = EventKind.EXCEPTION, EventKind.SEND

T = 1_700_000_040_000  # a multiple of 60 s
NOW = 1 << 62  # the worker's wall clock, far after the test data (the clock cap is received_at)
SPEC = WindowSpec(60_000, 30_000)
RULES = AlertRules(threshold=20, baseline_factor=3.0, ewma_alpha=0.5, min_failures=5)


def cfg(**kw: int) -> Config:
    values = {"dedup_ms": 300_000, "update_interval_ms": 0, "idle_close_ms": 0, **kw}
    return Config(spec=SPEC, rules=RULES, **values)


def test_window_assignment_and_close_time() -> None:
    assert SPEC.start(T + 59_999) == T and SPEC.start(T + 60_000) == T + 60_000
    assert SPEC.start(-1) == -60_000  # floor, not truncation
    assert SPEC.close_time(T) == T + 90_000
    with pytest.raises(ValueError):
        WindowSpec(0, 0)


def test_clock_lateness_is_per_topic_and_watermark_waits_for_both() -> None:
    st = PartitionState(0, cfg())
    step1(st, E, 0, exc("g", 10004, T + 95_000), NOW)
    assert step1(st, E, 1, exc("g", 10004, T, "x"), NOW).total(Outcome.LATE) == 1
    # the sends topic has not passed it
    assert step1(st, S, 0, send("g", T), NOW).total(Outcome.LATE) == 0
    clock = StreamClock()
    clock.observe(E, T + 95_000)
    assert clock.watermark() == T + 95_000  # sends never seen: does not hold back
    clock.seen[S] = True
    assert clock.watermark() is None  # sends exist but none read yet: wait
    clock.observe(S, T + 80_000)
    assert clock.closable(SPEC, [T]) == []
    clock.observe(S, T + 90_000)
    assert clock.closable(SPEC, [T, T + 60_000]) == [T]


def test_dedup_counts_once_within_window_and_again_after() -> None:
    d = dedup.decide([], T, 10, 300_000)
    assert d.counted and d.history == [(T, 10)]
    again = dedup.decide(d.history, T + 10_000, 11, 300_000)
    assert not again.counted
    later = dedup.decide(d.history, T + 301_000, 12, 300_000)
    assert later.counted and len(later.history) == 2


def test_dedup_replay_decides_like_first_pass() -> None:
    # history already holds a later counted occurrence (offset 30): the replayed event at
    # offset 20 (originally a duplicate of offset 10) is still a duplicate
    history = [(T, 10), (T + 400_000, 30)]
    assert not dedup.decide(history, T + 5_000, 20, 300_000).counted
    assert dedup.decide(history, T + 400_000, 30, 300_000).counted  # itself


def test_ewma_baseline_decays_over_quiet_windows_and_is_idempotent() -> None:
    b = alerts.update(None, T, 10, 60_000, 0.5)
    assert b.ewma == 10 and b.before is None
    assert alerts.baseline_for(b, T + 60_000, 60_000, 0.5) == 10
    assert alerts.baseline_for(b, T + 180_000, 60_000, 0.5) == 2.5  # two quiet windows
    b2 = alerts.update(b, T + 60_000, 2, 60_000, 0.5)
    assert b2 == Baseline(6.0, T + 60_000, 10.0)
    assert alerts.update(b2, T + 60_000, 2, 60_000, 0.5) is b2
    assert alerts.baseline_for(b2, T + 60_000, 60_000, 0.5) == 10.0  # judged by "before"


def test_alert_reasons() -> None:
    assert alerts.reasons(20, None, RULES) == ["threshold"]
    assert alerts.reasons(12, 2.0, RULES) == ["baseline"]
    assert alerts.reasons(4, 0.5, RULES) == []  # below min_failures
    assert alerts.reasons(5, 2.0, RULES) == []  # below 3 x baseline


def _run(state: PartitionState, events: list, start: int = 0) -> list[Effects]:
    out = []
    for i, ev in enumerate(events, start):
        kind = E if ev.callback_command.endswith("Exception") else S
        out.append(step1(state, kind, i, ev, NOW))
    return out


def test_state_counts_ratio_and_final_on_close() -> None:
    st = PartitionState(0, cfg(), seen={E: True, S: True})
    evs = [
        exc("g", 10004, T + 1_000, "a"),
        exc("g", 10004, T + 2_000, "b"),
        exc("g", 10017, T + 3_000, "a"),
    ]
    for i, ev in enumerate(evs):
        step1(st, E, i, ev, NOW)
    for i in range(3):
        step1(st, S, i, send("g", T + 4_000 + i), NOW)
    step1(st, S, 3, send("g", T + 95_000), NOW)
    fx = step1(st, E, 3, exc("h", 10002, T + 95_000), NOW)
    finals = [o for o in fx.outputs if o.topic == "failure_windows"]
    assert len(finals) == 2 and fx.windows_closed == 1
    import msgspec

    recs = {
        msgspec.json.decode(o.value)["error_code"]: msgspec.json.decode(o.value) for o in finals
    }
    assert recs[10004]["failures"] == 2 and recs[10004]["senders"] == 2
    assert recs[10004]["group_failures"] == 3 and recs[10004]["group_sends"] == 3
    assert recs[10004]["failure_ratio"] == 0.5 and recs[10004]["final"] is True
    assert recs[10004]["updated_at_ms"] == T + 90_000  # deterministic: the close time
    assert fx.meta is not None and fx.deletes


def test_state_replay_after_reload_is_idempotent() -> None:
    events = [exc("g", 10004, T + i * 1_000, f"u{i}") for i in range(10)]
    st = PartitionState(0, cfg(), seen={E: True, S: False})
    stored: dict[str, bytes] = {}
    for i, ev in enumerate(events):
        fx = step1(st, E, i, ev, NOW)
        stored.update(fx.writes)
        if i < 5 and fx.meta:
            stored[fx.meta[0]] = fx.meta[1]  # meta stops at offset 4: a crash
    fresh = PartitionState(0, cfg(), seen={E: True, S: False})
    for key, value in stored.items():
        fresh.load(key, value)
    fresh.finish_load()
    fxs = _run(fresh, events)  # replay everything from offset 0
    assert sum(f.total(Outcome.REPLAYED) for f in fxs) == 5
    agg = fresh.codes[(T, "1400000001", "g", 10004)]
    assert agg.n == 10 and len(agg.senders) == 10


def test_late_event_is_reported_not_counted() -> None:
    st = PartitionState(0, cfg(), seen={E: True, S: False})
    step1(st, E, 0, exc("g", 10004, T), NOW)
    step1(st, E, 1, exc("g", 10004, T + 95_000), NOW)
    fx = step1(st, E, 2, exc("g", 10004, T + 10_000, "late"), NOW)
    assert fx.total(Outcome.LATE) == 1 and [o.topic for o in fx.outputs] == ["late_events"]
    assert (T, "1400000001", "g", 10004) not in st.codes  # never reopened


def test_idle_close_on_tick() -> None:
    st = PartitionState(0, cfg(idle_close_ms=5_000), seen={E: True, S: False})
    step1(st, E, 0, exc("g", 10004, T), now_ms=T)
    assert tick(st, T + 60_000).windows_closed == 0  # end + grace not reached in wall time
    fx = tick(st, T + 95_000)
    assert fx.windows_closed == 1 and fx.finals == 1


def test_load_rejects_foreign_keys() -> None:
    with pytest.raises(ValueError):
        PartitionState(0, cfg()).load("1|m", b"{}")


def _batched_run(
    events: list[tuple[EventKind, int, object]],
    size: int,
    store: dict[str, bytes],
    crash_at: tuple[int, int] | None = None,
) -> tuple[set[tuple[str, str, bytes]], bool]:
    """Feed events to a state (loaded from ``store``) in batches of ``size`` records
    through the worker's code (``stream.batch.apply_batch``), writing its changelog in
    the worker's order (``Effects.changelog``: key writes, meta, deletions).

    Returns the acknowledged outputs and whether it "crashed" after write ``crash_at[1]``
    of batch ``crash_at[0]`` (``store`` then holds the changelog up to that point).
    """
    st = PartitionState(0, cfg(), seen={E: True, S: True})
    for key, value in store.items():
        st.load(key, value)
    st.finish_load()
    outs: set[tuple[str, str, bytes]] = set()
    for b, i in enumerate(range(0, len(events), size)):
        fx = run_batch(st, events[i : i + size], NOW)
        outs.update((o.topic, o.key, o.value) for o in fx.outputs)
        for n, (key, value) in enumerate(fx.changelog()):
            if crash_at == (b, n):
                return outs, True
            if value is None:
                store.pop(key, None)
            else:
                store[key] = value
    return outs, False


def test_batched_writes_survive_a_crash_at_every_write() -> None:
    evs: list[tuple[EventKind, int, object]] = []
    offs = {E: 0, S: 0}
    for i in range(40):
        t = T + i * 7_000
        for kind, ev in (
            (E, exc(f"g{i % 3}", 10004 + i % 2, t, f"u{i % 5}")),
            (E, exc(f"g{i % 3}", 10004, t, "dup", random=i // 4)),  # dups within 5 min
            (S, send(f"g{i % 3}", t)),
        ):
            evs.append((kind, offs[kind], ev))
            offs[kind] += 1
    clean, _ = _batched_run(evs, 1, {})
    assert sum(1 for topic, _, _ in clean if topic == "failure_windows") > 5
    crashes = 0
    for size in (5, 16):
        batched, _ = _batched_run(evs, size, {})
        assert batched == clean
        for b in range(0, len(evs) // size, 2):
            for n in range(0, 40, 3):
                store: dict[str, bytes] = {}
                first, crashed = _batched_run(evs, size, store, crash_at=(b, n))
                if not crashed:
                    continue
                crashes += 1
                rest, _ = _batched_run(evs, size, store)  # restart, replay from offset 0
                finals = {o for o in clean if o[0] == "failure_windows"}
                assert {o for o in first | rest if o[0] == "failure_windows"} == finals
                assert {o for o in first | rest if o[0] == "alerts"} == {
                    o for o in clean if o[0] == "alerts"
                }
    assert crashes > 20


def _dedup_keys(keys: object) -> list[str]:
    return sorted(k for k in keys if "|d|" in k)  # type: ignore[attr-defined]


def test_dedup_histories_are_stored_per_bucket_once_per_batch() -> None:
    st = PartitionState(0, cfg(), seen={E: True, S: False})
    evs = [exc("g", 10004, T + i * 100, f"u{i}") for i in range(50)]  # one minute
    fx = run_batch(st, [(E, i, ev) for i, ev in enumerate(evs)], NOW)
    assert _dedup_keys(fx.writes) == [f"0|d|e|{T}|0"]  # one key for 50 event ids
    assert fx.meta is not None and fx.total(Outcome.COUNTED) == 50
    # restart from what was stored: a re-sent event (new offset) within 5 min is a duplicate
    fresh = PartitionState(0, cfg(), seen={E: True, S: False})
    for key, value in [*fx.writes.items(), fx.meta]:
        fresh.load(key, value)
    fresh.finish_load()
    dup = step1(fresh, E, 50, evs[7], NOW)
    assert dup.total(Outcome.DUPLICATE) == 1 and dup.total(Outcome.COUNTED) == 0
    assert not _dedup_keys(dup.writes)
    # far later: windows close, the bucket is deleted once its event times expired
    later = step1(fresh, E, 51, exc("h", 10004, T + 2 * 3_600_000), NOW)
    assert f"0|d|e|{T}|0" in later.deletes and ((E, T, 0) not in fresh.dbuckets)


def test_dedup_bucket_keeps_occurrences_of_one_id_in_their_own_buckets() -> None:
    st = PartitionState(0, cfg(), seen={E: True, S: False})
    ev = exc("g", 10004, T, "a", random=5)
    again = exc("g", 10004, T + 301_000, "a", random=5)  # same id, after the dedup span
    fxs = [step1(st, E, 0, ev, NOW), step1(st, E, 1, again, NOW)]
    assert [f.total(Outcome.COUNTED) for f in fxs] == [1, 1]
    assert _dedup_keys(fxs[0].writes) == [f"0|d|e|{T}|0"]
    assert _dedup_keys(fxs[1].writes) == [f"0|d|e|{T + 300_000}|0"]
    assert len(st.dedup[E][ev.event_id]) == 2


def test_legacy_per_event_dedup_key_is_moved_into_its_bucket() -> None:
    import orjson

    ev = exc("g", 10004, T, "a", random=9)
    legacy = orjson.dumps({"k": "e", "id": ev.event_id, "h": [[T, 3]]})
    st = PartitionState(0, cfg(), seen={E: True, S: False})
    st.load(f"0|d|e|{ev.event_id}", legacy)
    st.finish_load()
    fx = step1(st, E, 4, ev, NOW)  # same id within 5 min of the stored occurrence
    assert fx.total(Outcome.DUPLICATE) == 1
    assert _dedup_keys(fx.writes) == [f"0|d|e|{T}|0"]  # bucket written before the meta
    assert fx.deletes == [f"0|d|e|{ev.event_id}"]  # old key deleted after it


def test_dedup_bucket_size_is_bounded_by_offsets() -> None:
    # one busy minute: the occurrences are spread over buckets of BUCKET_OFFSETS offsets
    st = PartitionState(0, cfg(), seen={E: True, S: False})
    fx = st.begin()
    n = 2 * dedup.BUCKET_OFFSETS + 10
    for i in range(n):
        step(st, fx, E, i, exc("g", 10004, T + i % 60_000, f"u{i}"), "t", NOW)
    st.finish(fx)
    assert _dedup_keys(fx.writes) == [f"0|d|e|{T}|{c}" for c in range(3)]
    assert max(len(v) for v in st.dbuckets.values()) == dedup.BUCKET_OFFSETS
    fresh = PartitionState(0, cfg(), seen={E: True, S: False})
    for key, value in [*fx.writes.items(), fx.meta]:
        fresh.load(key, value)  # type: ignore[arg-type]
    fresh.finish_load()
    assert sum(len(h) for hs in fresh.dedup.values() for h in hs.values()) == n
