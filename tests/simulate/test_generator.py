"""The plan: deterministic, realistic, and with unambiguous late events and duplicates."""

from __future__ import annotations

from collections import Counter

import pytest

from groupwatch.contracts.catalog import CATEGORIES, ERROR_CODES, error_category
from groupwatch.contracts.keys import make_event_id
from groupwatch.simulate.generator import Generator, SimConfig
from groupwatch.simulate.signing import App

START = 1_767_225_600_000  # 2026-01-01T00:00:00Z
APPS = (App("1400000001", "xxxxyyyy"), App("1400000002"))


def config(**overrides: object) -> SimConfig:
    base: dict[str, object] = {
        "apps": APPS,
        "event_time_start_ms": START,
        "step_ms": 100.0,
        "seed": 7,
        "groups": 50,
        "dup_rate": 0.05,
        "late_rate": 0.03,
        "storm_start": 300,
        "storm_length": 200,
    }
    base.update(overrides)
    return SimConfig(**base)  # type: ignore[arg-type]


def test_same_seed_same_plan_other_seed_other_plan() -> None:
    a = Generator(config()).take(2000)
    b = Generator(config()).take(2000)
    c = Generator(config(seed=8)).take(2000)
    assert a == b
    assert [p.body for p in a] != [p.body for p in c]


def test_mix_covers_every_category_kind_and_popularity_is_skewed() -> None:
    gen = Generator(config(storm_start=None))
    plan = gen.take(6000)
    kinds = Counter(p.kind for p in plan)
    assert kinds["send"] > kinds["exception"] > kinds["other"] > 0
    codes = {p.error_code for p in plan if p.error_code is not None}
    assert set(ERROR_CODES) <= codes
    assert {error_category(c) for c in codes} == set(CATEGORIES)
    assert any(80001 < c < 81000 for c in codes)
    per_group = Counter(p.group_id for p in plan if p.kind != "other")
    top = per_group.most_common()
    assert top[0][1] > 5 * top[len(top) // 2][1]  # the head is much hotter than the median
    assert any(isinstance(p.body["EventTime"], str) for p in plan)
    assert any(isinstance(p.body["EventTime"], int) for p in plan)


def test_bodies_follow_the_spec_and_event_ids_are_the_contract_ids() -> None:
    for p in Generator(config()).take(1000):
        body = p.body
        assert body["CallbackCommand"] == p.command
        assert body["GroupId"] == p.group_id and body["From_Account"] == p.from_account
        assert int(body["EventTime"]) == p.event_time_ms
        assert p.event_id == make_event_id(
            p.app.sdkappid, p.group_id, p.from_account, body["Random"], p.event_time_ms
        )
        if p.kind == "exception":
            assert body["ErrorCode"] == p.error_code and body["ErrorInfo"]
        if p.kind == "send":
            assert body["MsgSeq"] >= 1 and body["MsgTime"] == p.event_time_ms // 1000


def test_storm_is_a_dense_rate_limit_burst_in_one_group() -> None:
    gen = Generator(config())
    plan = gen.take(1000)
    storm = [p for p in plan if p.storm]
    assert len(storm) > 80
    assert {p.group_id for p in storm} == {gen.storm_group.group_id}
    assert {p.error_code for p in storm} <= {10023, 10006}
    assert all(300 <= p.seq < 500 for p in storm)


def test_duplicates_repeat_the_original_soon_and_never_late() -> None:
    cfg = config()
    plan = Generator(cfg).take(3000)
    by_seq = {p.seq: p for p in plan}
    dups = [p for p in plan if p.duplicate_of is not None]
    assert len(dups) > 50
    for dup in dups:
        original = by_seq[dup.duplicate_of]  # type: ignore[index]
        assert original.duplicate_of is None and not original.late
        assert (dup.body, dup.event_id) == (original.body, original.event_id)
        assert 0 < dup.seq - original.seq <= 60
    ids = Counter(p.event_id for p in plan if p.duplicate_of is None)
    assert max(ids.values()) == 1  # fresh events never share an event_id


def test_late_events_are_late_relative_to_an_earlier_event_of_their_group() -> None:
    cfg = config()
    plan = Generator(cfg).take(4000)
    by_seq = {p.seq: p for p in plan}
    late = [p for p in plan if p.late]
    assert len(late) > 40
    grace_ms = cfg.grace_seconds * 1000
    for ev in late:
        ref = by_seq[ev.late_ref]  # type: ignore[index]
        assert ref.seq < ev.seq and not ref.late
        assert (ref.app, ref.group_id, ref.kind) == (ev.app, ev.group_id, ev.kind)
        window_end = ev.event_time_ms - ev.event_time_ms % cfg.window_ms + cfg.window_ms
        assert window_end + grace_ms < ref.event_time_ms
    on_time = [p for p in plan if not p.late and p.duplicate_of is None]
    clock = START
    for p in on_time:  # on-time events trail the clock by less than half the grace
        clock = max(clock, p.event_time_ms)
        assert clock - p.event_time_ms <= cfg.disorder_ms


def test_flush_closes_every_touched_group() -> None:
    gen = Generator(config())
    plan = gen.take(500)
    flush = gen.flush_events()
    touched = {(p.app.sdkappid, p.group_id) for p in plan if p.kind != "other"}
    assert {(f.app.sdkappid, f.group_id) for f in flush} == touched
    assert Counter(f.kind for f in flush) == {"send": len(touched), "exception": len(touched)}
    last_end = max(p.event_time_ms for p in plan if not p.late) // 60000 * 60000 + 60000
    assert all(f.event_time_ms > last_end + 30000 for f in flush)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"apps": ()}, "at least one app"),
        ({"apps": (App("1"), App("1", "t"))}, "once"),
        ({"step_ms": 0}, "step"),
        ({"dup_rate": 1.5}, "dup-rate"),
        ({"other_rate": 0.5, "dup_rate": 0.5}, "below 1"),
    ],
)
def test_bad_config_is_rejected(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        config(**overrides)
