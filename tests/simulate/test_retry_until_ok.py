"""``--retry-for``: a callback answered 5xx is delivered again until it gets 200."""

from __future__ import annotations

from pathlib import Path

from tests.simulate.scripted_receiver import scripted_receiver, simulate


def test_503_is_retried_until_200_and_counted(tmp_path: Path) -> None:
    with scripted_receiver(fail=frozenset({4, 5, 12})) as (port, answered):
        ledger = simulate(port, tmp_path / "ledger.json", 30, "--retry-for", "5")
    totals = ledger["totals"]
    assert isinstance(totals, dict)
    assert ledger["non_ok"] == []
    assert totals["attempt_failed_503"] == 3 and totals["retried_non_ok"] == 3
    assert len(answered) == 30 and totals["failures"] + totals["sends"] == 30


def test_without_retry_a_503_stays_non_ok(tmp_path: Path) -> None:
    with scripted_receiver(fail=frozenset({4})) as (port, answered):
        ledger = simulate(port, tmp_path / "ledger.json", 30, "--retry-for", "0")
    non_ok = ledger["non_ok"]
    assert isinstance(non_ok, list) and [r["status"] for r in non_ok] == [503]
    assert len(answered) == 29
