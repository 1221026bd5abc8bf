"""A keep-alive connection the server drops without a response is retried once."""

from __future__ import annotations

from pathlib import Path

from tests.simulate.scripted_receiver import scripted_receiver, simulate


def test_dropped_keepalive_request_is_sent_again_and_counted(tmp_path: Path) -> None:
    with scripted_receiver(drop=frozenset({5, 17})) as (port, answered):
        ledger = simulate(port, tmp_path / "ledger.json", 40, "--seed", "3")
    assert ledger["non_ok"] == []
    assert ledger["totals"]["retried_closed_connection"] == 2
    assert len(answered) == 40  # every callback answered exactly once, none lost
    total = ledger["totals"]["failures"] + ledger["totals"]["sends"]
    assert total == 40
