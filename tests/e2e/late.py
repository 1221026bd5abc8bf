"""Why final windows differ from a ledger: events the stream reported late, read from Kafka."""

from __future__ import annotations

import json
from typing import Any

from groupwatch.simulate.compare import Comparison, unplanned_late
from tests.support.kafka import consume_all


def late_diagnosis(
    bootstrap: str, late_topic: str, ledger: dict[str, Any], failures: Comparison
) -> str:
    """One line: unplanned late exceptions, and whether they account for every difference."""
    rows = [json.loads(m.value()) for m in consume_all(bootstrap, late_topic, idle=3.0)]
    grace_ms = int(ledger["meta"]["grace_seconds"]) * 1000
    late = unplanned_late(ledger, rows, grace_ms)
    unexplained = {
        cell: (want, got)
        for cell, (want, got) in failures.differences.items()
        if (want[0] if want else 0) - late["cells"].get(cell, 0) != (got[0] if got else 0)
    }
    return (
        f"{late['events']} exceptions the ledger counted were reported late by the stream "
        f"(up to {late['max_ms_past_close']} ms past their window's close) in "
        f"{len(late['cells'])} cells; failure counts not explained by them: "
        f"{len(unexplained)} cells {sorted(unexplained.items(), key=str)[:5]}"
    )
