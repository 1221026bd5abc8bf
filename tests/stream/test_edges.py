"""Edges of the stream's logic (no broker): idle close, the capped clock, rejected records."""

from __future__ import annotations

import base64
from collections import Counter

import msgspec
import pytest

from groupwatch.contracts.keys import group_key
from groupwatch.contracts.records import DlqRecord, EventKind, encode
from stream import guard
from stream.alerts import AlertRules
from stream.effects import Effects, Outcome, Output
from stream.state import Config, PartitionState
from stream.windows import WindowSpec
from tests.stream.inmemory import IN_TOPIC, run_batch, step1, tick
from tests.support.stream import exc, send

EXC, SND = EventKind.EXCEPTION, EventKind.SEND

T = 1_700_000_040_000  # a multiple of 60 s
S = 1000
SPEC = WindowSpec(60_000, 30_000)
RULES = AlertRules(threshold=1000, baseline_factor=3.0, ewma_alpha=0.5, min_failures=5)
A = 30_000  # the default idle allowance


def cfg(**kw: int) -> Config:
    values = {"dedup_ms": 300_000, "update_interval_ms": 10**9, "idle_close_ms": A, **kw}
    return Config(spec=SPEC, rules=RULES, **values)


def finals(fx: Effects) -> list[dict[str, object]]:
    return [
        msgspec.json.decode(o.value)
        for o in fx.outputs
        if o.topic == "failure_windows" and b'"final":true' in o.value
    ]


# --- idle close ----------------------------------------------------------------------
def test_idle_close_waits_for_end_grace_and_allowance() -> None:
    st = PartitionState(0, cfg(), seen={EXC: True, SND: False})
    step1(st, EXC, 0, exc("g", 10004, T + 10 * S), T + 10 * S)
    close = T + 90 * S  # end + grace of the window
    assert tick(st, close + A - 1).windows_closed == 0
    fx = tick(st, close + A)
    assert fx.windows_closed == 1 and [f["failures"] for f in finals(fx)] == [1]


def test_idle_close_never_while_input_is_unread() -> None:
    st = PartitionState(0, cfg(), seen={EXC: True, SND: False})
    step1(st, EXC, 0, exc("g", 10004, T), T)
    late_wall = T + 10 * 60 * S
    assert tick(st, late_wall, unread={EXC: True, SND: False}).windows_closed == 0
    assert tick(st, late_wall + S, unread={EXC: False, SND: False}).windows_closed == 1


def test_idle_close_needs_quiet_for_the_allowance() -> None:
    st = PartitionState(0, cfg(), seen={EXC: True, SND: False})
    step1(st, EXC, 0, exc("g", 10004, T), T)
    # a record (of another window) read 10 s ago: not idle yet, whatever the wall clock
    step1(st, EXC, 1, exc("h", 10004, T + 200 * S), T + 300 * S)
    assert tick(st, T + 310 * S).windows_closed == 0
    assert tick(st, T + 330 * S).windows_closed == 1  # W0; W at T+180 s closes at 300 s+A


def test_a_quiet_sends_topic_does_not_hold_windows_back_forever() -> None:
    """Sends got one record long ago; exceptions flow on time: windows still close."""
    st = PartitionState(0, cfg(), seen={EXC: True, SND: True})
    step1(st, SND, 0, send("g", T), T)
    closed = 0
    for i in range(1, 400):  # one exception per second, event time = wall clock
        now = T + i * S
        step1(st, EXC, i, exc("g", 10004, now, sender=f"u{i}"), now)
        closed += tick(st, now + 500, unread={EXC: False, SND: False}).windows_closed
    # watermark = min(exceptions' stream time, max(sends' stream time, now - A)): every
    # window whose end + grace + A passed is closed (6 full minutes of them)
    assert closed == 5
    assert tick(st, T + 400 * S).windows_closed == 0  # W5 closes at T+360+90+30 s


def test_sends_unread_holds_the_watermark() -> None:
    st = PartitionState(0, cfg(), seen={EXC: True, SND: True})
    step1(st, SND, 0, send("g", T), T)
    for i in range(1, 200):
        step1(st, EXC, i, exc("g", 10004, T + i * S), T + i * S)
    assert tick(st, T + 400 * S, unread={EXC: False, SND: True}).windows_closed == 0


def test_idle_close_is_off_at_zero() -> None:
    st = PartitionState(0, cfg(idle_close_ms=0), seen={EXC: True, SND: False})
    step1(st, EXC, 0, exc("g", 10004, T), T)
    assert tick(st, T + 10**7).windows_closed == 0


def test_an_event_for_a_window_that_never_opened_is_counted_after_an_idle_close() -> None:
    st = PartitionState(0, cfg(), seen={EXC: True, SND: False})
    step1(st, EXC, 0, exc("g", 10004, T + 5 * 60 * S), T + 5 * 60 * S)
    assert tick(st, T + 20 * 60 * S).windows_closed == 1
    # a straggler 14 minutes old, for a window before the closed one: late
    fx = step1(st, EXC, 1, exc("g", 10004, T), T + 20 * 60 * S)
    assert fx.total(Outcome.LATE) == 1
    # one for a window after the closed one: counted, closed by the next idle tick
    fx = step1(st, EXC, 2, exc("g", 10004, T + 10 * 60 * S), T + 20 * 60 * S)
    assert fx.total(Outcome.COUNTED) == 1
    assert tick(st, T + 21 * 60 * S).windows_closed == 1


# --- the capped clock ----------------------------------------------------------------
def _at(ev: object, received: int) -> object:
    return msgspec.structs.replace(ev, received_at_ms=received)  # type: ignore[type-var]


def test_events_ten_minutes_ahead_never_make_on_time_events_late() -> None:
    """60 callbacks dated +10 min, then 15 minutes of on-time traffic, event time = wall."""
    st = PartitionState(0, cfg(max_future_ms=5_000), seen={EXC: True, SND: False})
    ahead = 10 * 60 * S
    offset = 0
    outputs: list[Output] = []
    for i in range(60):
        ev = _at(exc(f"f{i}", 10004, T + ahead + i * 100), T)
        fx = step1(st, EXC, offset, ev, T)  # type: ignore[arg-type]
        assert fx.total(Outcome.COUNTED) == 1
        offset += 1
        assert st.clock.stream_time[EXC] is not None and st.clock.stream_time[EXC] <= T + 5_000
    expected: Counter[int] = Counter()
    late = 0
    for k in range(1, 15 * 60):  # one on-time callback per second for 15 minutes
        now = T + k * S
        fx = step1(st, EXC, offset, exc("live", 10004, now, sender=f"u{k}"), now)
        offset += 1
        late += fx.total(Outcome.LATE)
        expected[SPEC.start(now)] += 1
        outputs.extend(fx.outputs)
        assert st.clock.stream_time[EXC] <= now + 5_000  # type: ignore[operator]
    assert late == 0
    all_finals = finals(Effects(outputs=outputs))
    live = {f["window_start_ms"]: f["failures"] for f in all_finals if f["group_id"] == "live"}
    closed = {ws: n for ws, n in expected.items() if SPEC.close_time(ws) <= T + 15 * 60 * S - S}
    assert live == closed and len(closed) >= 13
    ahead_finals = [f for f in all_finals if str(f["group_id"]).startswith("f")]
    assert len(ahead_finals) == 60 and {f["window_start_ms"] for f in ahead_finals} == {T + ahead}


def test_the_cap_follows_the_worker_clock_when_received_at_is_ahead_too() -> None:
    st = PartitionState(0, cfg(max_future_ms=5_000), seen={EXC: True, SND: False})
    ev = exc("g", 10004, T + 600 * S)  # received_at = event time (forged by a producer)
    step1(st, EXC, 0, ev, T)
    assert st.clock.stream_time[EXC] == T + 5_000


# --- rejects ---------------------------------------------------------------------------
def _good() -> tuple[bytes, bytes]:
    ev = exc("g", 10004, T)
    return group_key(ev.sdkappid, ev.group_id).encode(), encode(ev)


def _with(**fields: object) -> bytes:
    d = msgspec.json.decode(_good()[1])
    d.update(fields)
    return msgspec.json.encode(d)


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (b"not json", "not valid UTF-8 JSON"),
        (b"[1, 2]", "Expected `object`"),
        (b"\xff\xfe{}", "not valid UTF-8 JSON"),
        (_with(error_code=1 << 40), "<= 2147483647 - at `\\$.error_code`"),
        (_with(error_code="10004"), "Expected `int`"),
        (
            _with(event_time_ms=95_617_584_000_000),
            "<= 4102444800000 - at `\\$.event_time_ms`",
        ),  # year 5000
        (_with(event_time_ms=-1), ">= 946684800000 - at `\\$.event_time_ms`"),
        (_with(event_time_ms=T + 16 * 60 * S), "15 minutes"),
        (_with(from_account="x" * 5000), "length <= 128 - at `\\$.from_account`"),
        (b'{"a": "' + b"x" * (1 << 20) + b'"}', "bytes, more than"),
    ],
)
def test_guard_rejects_what_cannot_be_applied(value: bytes, words: str) -> None:
    key = _good()[0]
    with pytest.raises(guard.Reject, match=words.replace("(", r"\(")):
        guard.decode(EXC, key, value)


def test_guard_rejects_missing_or_foreign_keys_and_accepts_good_records() -> None:
    key, value = _good()
    assert guard.decode(EXC, key, value).group_id == "g"
    with pytest.raises(guard.Reject, match="no key"):
        guard.decode(EXC, None, value)
    with pytest.raises(guard.Reject, match="key"):
        guard.decode(EXC, b"1400000001:other", value)
    with pytest.raises(guard.Reject, match="no value"):
        guard.decode(EXC, key, None)
    with pytest.raises(guard.Reject, match="SendEvent"):
        guard.decode(SND, key, b"{}")


def test_dlq_record_keeps_the_exact_bytes() -> None:
    raw = b"\xff" + b"y" * 10_000
    out = guard.dlq_record(
        "why", None, topic="t", partition=2, offset=7, key=None, value=raw, now_ms=5
    )
    rec = msgspec.json.decode(out, type=DlqRecord)
    assert rec.stage == "stream" and rec.source_offset == 7 and rec.source_partition == 2
    assert base64.b64decode(rec.raw_base64 or "") == raw
    assert rec.body_truncated and len(rec.body) == guard.DLQ_BODY_CHARS
    assert rec.body.startswith("\ufffd")


def test_a_reject_is_acknowledged_before_its_offset_counts_as_done() -> None:
    st = PartitionState(0, cfg(), seen={EXC: True, SND: False})
    key, value = _good()
    fx = run_batch(st, [(EXC, 3, b"not json", key)], T)
    dlq = Output(
        "dlq",
        guard.dlq_key(IN_TOPIC[EXC], 0, 3),
        guard.dlq_record(
            "not valid UTF-8 JSON: JSON is malformed: invalid character (byte 4)",
            None,
            topic=IN_TOPIC[EXC],
            partition=0,
            offset=3,
            key=key,
            value=b"not json",
            now_ms=T,
        ),
    )
    assert fx.outputs == [dlq] and fx.total(Outcome.REJECTED) == 1 and fx.meta is not None
    assert b'"e":3' in fx.meta[1]
    again = run_batch(st, [(EXC, 3, value, key)], T)
    assert again.total(Outcome.REPLAYED) == 1 and again.total(Outcome.COUNTED) == 0
