"""Ledger arithmetic: 200s only, once per event_id, late events apart, windows aligned."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import pytest

from groupwatch.simulate.generator import Planned
from groupwatch.simulate.ledger import Ledger
from groupwatch.simulate.signing import App

APP = App("1400000001", "tok")
W0 = 1_767_225_600_000  # a window start (60 s windows)


def event(
    seq: int,
    kind: str = "exception",
    *,
    t: int = W0 + 1000,
    group: str = "@TGS#A",
    sender: str = "u1",
    code: int | None = 10023,
    **kw: object,
) -> Planned:
    return Planned(
        seq=seq,
        kind=kind,  # type: ignore[arg-type]
        app=APP,
        group_id=group,
        group_type="Public",
        from_account=sender,
        event_time_ms=t,
        event_id=f"id-{group}-{sender}-{seq}",
        body={},
        error_code=code if kind == "exception" else None,
        **kw,  # type: ignore[arg-type]
    )


def dup(original: Planned, seq: int) -> Planned:
    return replace(original, seq=seq, duplicate_of=original.seq)


def test_counts_once_per_event_only_when_answered_200() -> None:
    ledger = Ledger(60, 30)
    a = event(0, sender="u1")
    b = event(1, sender="u2")
    c = event(2, sender="u3")
    d = event(3, sender="u1", t=W0 + 59_999)
    ledger.record(a, 200)
    ledger.record(dup(a, 4), 200)  # duplicate of a counted event: still one
    ledger.record(b, 503, "spool full")
    ledger.record(dup(b, 5), 200)  # first delivery failed, re-delivery stored: one
    ledger.record(c, 0, "ConnectionError")
    ledger.record(dup(c, 6), 500)  # never stored: zero
    ledger.record(d, 200)
    data = ledger.to_dict()
    assert data["failures"] == [
        {
            "window_start_ms": W0,
            "window_end_ms": W0 + 60_000,
            "sdkappid": "1400000001",
            "group_id": "@TGS#A",
            "group_type": "Public",
            "error_code": 10023,
            "error_category": "rate_limited",
            "failures": 3,
            "senders": 2,
            "first_event_time_ms": W0 + 1000,
            "last_event_time_ms": W0 + 59_999,
        }
    ]
    assert data["totals"]["failures"] == 3
    assert data["totals"]["duplicates_sent"] == 3 and data["totals"]["duplicates_ok"] == 2
    assert data["totals"]["exception_ok"] == 4 and data["totals"]["exception_non_ok"] == 3
    assert [(r["seq"], r["status"]) for r in data["non_ok"]] == [(1, 503), (2, 0), (6, 500)]


def test_windows_groups_codes_and_sends_are_separate_cells() -> None:
    ledger = Ledger(60, 30)
    ledger.record(event(0, t=W0 + 59_999), 200)
    ledger.record(event(1, t=W0 + 60_000), 200)  # next window
    ledger.record(event(2, group="@TGS#B"), 200)
    ledger.record(event(3, code=80004), 200)
    ledger.record(event(4, "send"), 200)
    ledger.record(event(5, "send"), 200)
    ledger.record(dup(event(5, "send"), 6), 200)
    ledger.record(event(7, "send", t=W0 + 61_000), 200)
    ledger.record(event(8, "other", code=None), 200)
    data = ledger.to_dict()
    cells = [
        (r["window_start_ms"], r["group_id"], r["error_code"], r["failures"], r["error_category"])
        for r in data["failures"]
    ]
    assert cells == [
        (W0, "@TGS#A", 10023, 1, "rate_limited"),
        (W0, "@TGS#A", 80004, 1, "content_filtered"),
        (W0, "@TGS#B", 10023, 1, "rate_limited"),
        (W0 + 60_000, "@TGS#A", 10023, 1, "rate_limited"),
    ]
    assert [(r["window_start_ms"], r["group_id"], r["sends"]) for r in data["sends"]] == [
        (W0, "@TGS#A", 2),
        (W0 + 60_000, "@TGS#A", 1),
    ]
    assert data["totals"]["other_ok"] == 1 and data["totals"]["sends"] == 3


def test_late_events_are_listed_apart_and_flagged_when_their_reference_failed() -> None:
    ledger = Ledger(60, 30)
    ref_ok = event(10, t=W0 + 300_000)
    ref_bad = event(11, group="@TGS#B", t=W0 + 300_000)
    ledger.record(ref_ok, 200)
    ledger.record(ref_bad, 503)
    late_a = event(12, t=W0 + 5, late_ref=10, late_ref_time_ms=W0 + 300_000)
    late_b = event(13, group="@TGS#B", t=W0 + 7, late_ref=11, late_ref_time_ms=W0 + 300_000)
    late_c = event(14, t=W0 + 9, late_ref=10, late_ref_time_ms=W0 + 300_000)
    ledger.record(late_a, 200)
    ledger.record(late_b, 200)
    ledger.record(late_c, 503)
    data = ledger.to_dict()
    assert [(r["window_start_ms"], r["failures"]) for r in data["failures"]] == [(W0 + 300_000, 1)]
    assert [(r["event_id"], r["ambiguous"], r["window_start_ms"]) for r in data["late"]] == [
        (late_a.event_id, False, W0),
        (late_b.event_id, True, W0),
    ]
    assert data["totals"]["late"] == 2 and data["totals"]["late_ambiguous"] == 1


def test_write_json_and_csv(tmp_path: Path) -> None:
    ledger = Ledger(60, 30)
    ledger.record(event(0), 200)
    ledger.record(event(1, "send"), 200)
    ledger.record(event(2, t=W0 + 3, late_ref=0, late_ref_time_ms=W0 + 1000), 200)
    ledger.write(tmp_path / "l.json")
    assert json.loads((tmp_path / "l.json").read_text())["totals"]["failures"] == 1
    ledger.write(tmp_path / "l.csv")
    rows = list(csv.DictReader((tmp_path / "l.csv").open()))
    assert [(r["section"], r["count"]) for r in rows] == [
        ("failures", "1"),
        ("sends", "1"),
        ("late", "1"),
    ]
    with pytest.raises(ValueError, match=r"\.json or \.csv"):
        ledger.write(tmp_path / "l.txt")
