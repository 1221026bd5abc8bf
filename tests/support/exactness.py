"""The fault suites' verdict: DuckDB (through the sink's SQL endpoint) equals the callbacks
answered 200 — final windows, raw sends per minute, raw exceptions by event_id — waited for
while the pipeline catches up, with the first differences when it never does."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from groupwatch.simulate.compare import compare_failures, compare_raw_sends
from tests.e2e.late import late_diagnosis
from tests.support.load import Load

Query = Callable[[str], list[dict[str, Any]]]


def assert_duckdb_equals_ledger(
    query: Query,
    load: Load,
    ledger: dict[str, Any],
    *,
    bootstrap: str,
    late_topic: str,
    context: object = "",
    timeout: float = 240.0,
) -> tuple[int, int]:
    """Wait until DuckDB equals the ledger; (failure cells, send cells) compared."""
    expected_exceptions = load.ledger.answered_event_ids("exception")
    deadline = time.monotonic() + timeout
    while True:
        windows = query(
            "SELECT sdkappid, group_id, error_code, epoch_ms(window_start) AS ws, failures, "
            "senders, final FROM failure_windows"
        )
        sends = query(
            "SELECT sdkappid, group_id, epoch_ms(minute) AS ws, sends FROM sends_minutely"
        )
        stored_ids = [r["event_id"] for r in query("SELECT event_id FROM exceptions")]
        failures_cmp = compare_failures(ledger, windows)
        sends_cmp = compare_raw_sends(ledger, sends)
        if failures_cmp.equal and sends_cmp.equal and set(stored_ids) == expected_exceptions:
            assert len(stored_ids) == len(set(stored_ids))
            return failures_cmp.expected_cells, sends_cmp.expected_cells
        if time.monotonic() > deadline:
            missing = expected_exceptions - set(stored_ids)
            extra = set(stored_ids) - expected_exceptions
            pytest.fail(
                f"after the faults DuckDB differs from the 200s: {failures_cmp.summary()}; "
                f"{sends_cmp.summary()}; exceptions missing {len(missing)}, unexpected "
                f"{len(extra)}; first differences "
                f"{sorted(failures_cmp.differences.items(), key=str)[:5]}; {context}; "
                + late_diagnosis(bootstrap, late_topic, ledger, failures_cmp)
            )
        time.sleep(3)
