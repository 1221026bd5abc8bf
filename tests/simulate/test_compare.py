"""Ledger vs stored rows: equal when equal, every difference reported otherwise."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from groupwatch.simulate.compare import compare_failures, compare_raw_sends, main, unplanned_late

W = 1_767_225_600_000
FLUSH = W + 600_000


def ledger() -> dict[str, Any]:
    return {
        "meta": {"flush_window_starts_ms": [FLUSH]},
        "failures": [
            {
                "sdkappid": "1",
                "group_id": "g",
                "error_code": 10023,
                "window_start_ms": W,
                "failures": 3,
                "senders": 2,
            },
            {
                "sdkappid": "1",
                "group_id": "g",
                "error_code": 10004,
                "window_start_ms": FLUSH,
                "failures": 1,
                "senders": 1,
            },
        ],
        "sends": [{"sdkappid": "1", "group_id": "g", "window_start_ms": W, "sends": 5}],
        "late": [
            {"kind": "send", "sdkappid": "1", "group_id": "g", "window_start_ms": W - 60_000},
            {"kind": "exception", "sdkappid": "1", "group_id": "g", "window_start_ms": W},
        ],
    }


def fw(ws: int, failures: int, final: bool = True, code: int = 10023) -> dict[str, Any]:
    return {
        "sdkappid": "1",
        "group_id": "g",
        "error_code": code,
        "ws": ws,
        "failures": failures,
        "senders": 2,
        "final": final,
    }


def test_equal_ignores_non_final_rows_and_the_flush_window() -> None:
    rows = [fw(W, 2, final=False), fw(W, 3), fw(FLUSH, 1, final=False, code=10004)]
    result = compare_failures(ledger(), rows)
    assert result.equal and result.expected_total == result.stored_total == 3


@pytest.mark.parametrize(
    "rows",
    [[fw(W, 4)], [], [fw(W, 3), fw(W + 60_000, 1)], [fw(W, 2, final=False)]],
)
def test_any_difference_is_reported(rows: list[dict[str, Any]]) -> None:
    assert not compare_failures(ledger(), rows).equal


def test_two_final_rows_for_one_key_is_an_error() -> None:
    with pytest.raises(ValueError, match="two final rows"):
        compare_failures(ledger(), [fw(W, 3), fw(W, 3)])


def test_raw_sends_include_late_sends() -> None:
    rows = [
        {"sdkappid": "1", "group_id": "g", "window_start_ms": W, "sends": 5},
        {"sdkappid": "1", "group_id": "g", "window_start_ms": W - 60_000, "sends": 1},
    ]
    assert compare_raw_sends(ledger(), rows).equal
    assert not compare_raw_sends(ledger(), rows[:1]).equal


def test_main_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "l.json").write_text(json.dumps(ledger()))
    (tmp_path / "ok.json").write_text(json.dumps([fw(W, 3)]))
    (tmp_path / "bad.json").write_text(json.dumps([fw(W, 9)]))
    assert main([str(tmp_path / "l.json"), str(tmp_path / "ok.json")]) == 0
    assert main([str(tmp_path / "l.json"), str(tmp_path / "bad.json")]) == 1
    assert "ledger (3, 2), stored (9, 2)" in capsys.readouterr().out


def late_row(
    event_id: str, kind: str = "exception", stream_time: int = W + 95_000
) -> dict[str, Any]:
    return {
        "event_kind": kind,
        "event_id": event_id,
        "sdkappid": "1",
        "group_id": "g",
        "window_start_ms": W,
        "window_end_ms": W + 60_000,
        "stream_time_ms": stream_time,
        "event": {"error_code": 10023},
    }


def test_unplanned_late_lists_only_late_reports_the_ledger_counted() -> None:
    data = ledger()
    data["late"][1]["event_id"] = "planned"
    rows = [
        late_row("planned"),  # the simulator made it late: expected, not a difference
        late_row("held-up"),  # on time for the ledger, late for the stream
        late_row("held-up"),  # reported twice (a re-delivery): one event
        late_row("a-send", kind="send"),
    ]
    found = unplanned_late(data, rows, grace_ms=30_000)
    assert found["events"] == 1
    assert found["cells"] == {("1", "g", 10023, W): 1}
    assert found["max_ms_past_close"] == 5_000  # stream time 95 s vs close at 90 s
    assert unplanned_late(data, [late_row("planned")], grace_ms=30_000)["events"] == 0
