"""Compare a simulator ledger with what the stack stored (final failure windows, sends).

Rows come from anywhere (DuckDB, the failure-windows topic, ``groupwatch query --format
json``) as dicts; this module imports no pipeline stage.

    python -m groupwatch.simulate.compare LEDGER.json FAILURE_WINDOWS.json [SENDS.json]

FAILURE_WINDOWS rows: sdkappid, group_id, error_code, window_start_ms (or ws), failures,
senders, final. SENDS rows: sdkappid, group_id, window_start_ms (or ws), sends — raw send
counts, which include late sends (the stream excludes them, the raw tables do not).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Cell = tuple[Any, ...]


@dataclass
class Comparison:
    """Cells whose values differ: cell -> (ledger value, stored value)."""

    what: str
    expected_cells: int
    stored_cells: int
    expected_total: int
    stored_total: int
    differences: dict[Cell, tuple[Any, Any]] = field(default_factory=dict)

    @property
    def equal(self) -> bool:
        return not self.differences

    def summary(self) -> str:
        verdict = "EQUAL" if self.equal else f"{len(self.differences)} DIFFERENT cells"
        return (
            f"{self.what}: ledger {self.expected_cells} cells / {self.expected_total}, "
            f"stored {self.stored_cells} cells / {self.stored_total}: {verdict}"
        )


def _ws(row: dict[str, Any]) -> int:
    value = row.get("window_start_ms", row.get("ws"))
    if value is None:
        raise ValueError(f"row has no window_start_ms (or ws): {row}")
    return int(value)


def _diff(what: str, expected: dict[Cell, Any], stored: dict[Cell, Any]) -> Comparison:
    differences = {
        k: (expected.get(k), stored.get(k))
        for k in expected.keys() | stored.keys()
        if expected.get(k) != stored.get(k)
    }

    def total(values: dict[Cell, Any]) -> int:
        return sum(v[0] if isinstance(v, tuple) else v for v in values.values())

    return Comparison(what, len(expected), len(stored), total(expected), total(stored), differences)


def compare_failures(ledger: dict[str, Any], rows: list[dict[str, Any]]) -> Comparison:
    """Final failure windows vs the ledger, outside the flush window (which stays open)."""
    flush = set(ledger["meta"].get("flush_window_starts_ms", []))
    expected = {
        (r["sdkappid"], r["group_id"], int(r["error_code"]), int(r["window_start_ms"])): (
            int(r["failures"]),
            int(r["senders"]),
        )
        for r in ledger["failures"]
        if r["window_start_ms"] not in flush
    }
    stored: dict[Cell, Any] = {}
    for r in rows:
        if not r.get("final", True) or _ws(r) in flush:
            continue
        key = (r["sdkappid"], r["group_id"], int(r["error_code"]), _ws(r))
        if key in stored:
            raise ValueError(f"two final rows for one window key {key}")
        stored[key] = (int(r["failures"]), int(r["senders"]))
    return _diff("final failure windows", expected, stored)


def compare_raw_sends(ledger: dict[str, Any], rows: list[dict[str, Any]]) -> Comparison:
    """Distinct sends per window (late sends included, as raw tables keep them)."""
    expected: Counter[Cell] = Counter()
    for r in ledger["sends"]:
        expected[(r["sdkappid"], r["group_id"], int(r["window_start_ms"]))] += int(r["sends"])
    for r in ledger["late"]:
        if r["kind"] == "send":
            expected[(r["sdkappid"], r["group_id"], int(r["window_start_ms"]))] += 1
    stored: Counter[Cell] = Counter()
    for r in rows:
        stored[(r["sdkappid"], r["group_id"], _ws(r))] += int(r["sends"])
    return _diff("raw sends", dict(expected), dict(stored))


def unplanned_late(
    ledger: dict[str, Any], late_rows: list[dict[str, Any]], grace_ms: int
) -> dict[str, Any]:
    """Exceptions the stream reported late (``late-events`` rows) that the ledger counted.

    The ledger knows the order callbacks were answered in, the stream only the order they
    reached Kafka; an event held back longer than the grace (for instance in the ingress
    spool) is late for the stream although it was on time for the ledger. This tells such
    reordering (the event is on the late-events topic, nothing is lost) from a loss, and
    how far behind its partition's stream time each one was.
    """
    planned = {r.get("event_id") for r in ledger["late"]}
    cells: Counter[Cell] = Counter()
    behind: list[int] = []
    seen: set[str] = set()
    for r in late_rows:
        if r["event_kind"] != "exception" or r["event_id"] in planned or r["event_id"] in seen:
            continue
        seen.add(r["event_id"])
        code = int(r["event"]["error_code"])
        cells[(r["sdkappid"], r["group_id"], code, int(r["window_start_ms"]))] += 1
        behind.append(int(r["stream_time_ms"]) - int(r["window_end_ms"]) - grace_ms)
    return {
        "events": len(seen),
        "cells": dict(cells),
        "max_ms_past_close": max(behind, default=None),
    }


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    ledger = json.loads(Path(args[0]).read_text())
    results = [compare_failures(ledger, json.loads(Path(args[1]).read_text()))]
    if len(args) == 3:
        results.append(compare_raw_sends(ledger, json.loads(Path(args[2]).read_text())))
    for result in results:
        print(result.summary())
        for cell, (want, got) in sorted(result.differences.items(), key=str)[:20]:
            print(f"  {cell}: ledger {want}, stored {got}")
    return 0 if all(r.equal for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
