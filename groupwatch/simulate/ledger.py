"""The ledger: what the simulator sent and got HTTP 200 for, per window x app x group x code.

Counting rules (the same the stream applies, so the two can be compared exactly):
- Only deliveries answered 200 count. An event counts once per distinct ``event_id``
  however many of its deliveries got 200 (duplicates are re-deliveries of one event).
- Late events (see ``generator``) never count in a window; they are listed under
  ``late``. ``ambiguous`` marks a late event whose reference event was not answered 200,
  so its lateness is not guaranteed.
- Other callback commands are counted, never windowed. Non-200 answers and transport
  errors are listed under ``non_ok``.
"""

from __future__ import annotations

import csv
import json
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from groupwatch.contracts.catalog import error_category
from groupwatch.simulate.generator import Planned


class Ledger:
    """Collects outcomes (thread-safe) and summarises them."""

    def __init__(self, window_seconds: int, grace_seconds: int) -> None:
        if window_seconds < 1:
            raise ValueError("window_seconds must be >= 1")
        self.window_ms = window_seconds * 1000
        self.grace_seconds = grace_seconds
        self.meta: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._ok_seqs: set[int] = set()
        self._ok_events: dict[str, Planned] = {}  # event_id -> first 200'd delivery
        self._late: dict[str, Planned] = {}
        self._late_ambiguous: set[str] = set()
        self._flush: dict[str, Planned] = {}
        self._non_ok: list[dict[str, Any]] = []
        self.requests: Counter[str] = Counter()

    def window_start(self, event_time_ms: int) -> int:
        return event_time_ms - event_time_ms % self.window_ms

    def count(self, what: str) -> None:
        """Count a delivery incident (shown under ``totals``)."""
        with self._lock:
            self.requests[what] += 1

    def record(self, planned: Planned, status: int, error: str | None = None) -> None:
        """One delivery's outcome: the HTTP status (0 when no answer came) and any error."""
        with self._lock:
            self.requests[f"{planned.kind}_sent"] += 1
            if planned.duplicate_of is not None:
                self.requests["duplicates_sent"] += 1
            if status != 200:
                self.requests[f"{planned.kind}_non_ok"] += 1
                self._non_ok.append(
                    {
                        "seq": planned.seq,
                        "kind": planned.kind,
                        "sdkappid": planned.app.sdkappid,
                        "group_id": planned.group_id,
                        "event_id": planned.event_id,
                        "event_time_ms": planned.event_time_ms,
                        "late": planned.late,
                        "duplicate_of": planned.duplicate_of,
                        "status": status,
                        "error": error,
                    }
                )
                return
            self.requests[f"{planned.kind}_ok"] += 1
            self._ok_seqs.add(planned.seq)
            if planned.duplicate_of is not None:
                self.requests["duplicates_ok"] += 1
            if planned.kind == "other":
                return
            if planned.late:
                self._late.setdefault(planned.event_id, planned)
                if planned.late_ref not in self._ok_seqs:
                    self._late_ambiguous.add(planned.event_id)
                return
            self._ok_events.setdefault(planned.event_id, planned)
            if planned.flush:
                self._flush.setdefault(planned.event_id, planned)

    def answered_event_ids(self, kind: str) -> set[str]:
        """Distinct event_ids of ``kind`` (exception / send) answered 200, late ones too."""
        with self._lock:
            ids = {e for e, ev in self._ok_events.items() if ev.kind == kind}
            return ids | {e for e, ev in self._late.items() if ev.kind == kind}

    # --- summaries ------------------------------------------------------------------
    def failures(self) -> list[dict[str, Any]]:
        """Per (window, app, group, code): distinct failed events and distinct senders."""
        cells: dict[tuple[int, str, str, int], dict[str, Any]] = {}
        for ev in self._ok_events.values():
            if ev.kind != "exception" or ev.error_code is None:
                continue
            ws = self.window_start(ev.event_time_ms)
            key = (ws, ev.app.sdkappid, ev.group_id, ev.error_code)
            cell = cells.get(key)
            if cell is None:
                cell = cells[key] = {
                    "window_start_ms": ws,
                    "window_end_ms": ws + self.window_ms,
                    "sdkappid": ev.app.sdkappid,
                    "group_id": ev.group_id,
                    "group_type": ev.group_type,
                    "error_code": ev.error_code,
                    "error_category": error_category(ev.error_code),
                    "failures": 0,
                    "senders": set(),
                    "first_event_time_ms": ev.event_time_ms,
                    "last_event_time_ms": ev.event_time_ms,
                }
            cell["failures"] += 1
            cell["senders"].add(ev.from_account)
            cell["first_event_time_ms"] = min(cell["first_event_time_ms"], ev.event_time_ms)
            cell["last_event_time_ms"] = max(cell["last_event_time_ms"], ev.event_time_ms)
        rows = []
        for key in sorted(cells):
            cell = cells[key]
            cell["senders"] = len(cell["senders"])
            rows.append(cell)
        return rows

    def sends(self) -> list[dict[str, Any]]:
        """Per (window, app, group): distinct successful sends."""
        counts: Counter[tuple[int, str, str]] = Counter()
        for ev in self._ok_events.values():
            if ev.kind == "send":
                counts[(self.window_start(ev.event_time_ms), ev.app.sdkappid, ev.group_id)] += 1
        return [
            {
                "window_start_ms": ws,
                "window_end_ms": ws + self.window_ms,
                "sdkappid": app,
                "group_id": gid,
                "sends": n,
            }
            for (ws, app, gid), n in sorted(counts.items())
        ]

    def late(self) -> list[dict[str, Any]]:
        rows = [
            {
                "event_id": ev.event_id,
                "kind": ev.kind,
                "sdkappid": ev.app.sdkappid,
                "group_id": ev.group_id,
                "error_code": ev.error_code,
                "event_time_ms": ev.event_time_ms,
                "window_start_ms": self.window_start(ev.event_time_ms),
                "reference_seq": ev.late_ref,
                "reference_event_time_ms": ev.late_ref_time_ms,
                "ambiguous": ev.event_id in self._late_ambiguous,
            }
            for ev in self._late.values()
        ]
        return sorted(rows, key=lambda r: (r["event_time_ms"], r["event_id"]))

    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            failures = self.failures()
            sends = self.sends()
            late = self.late()
            flush_windows = sorted(
                {self.window_start(e.event_time_ms) for e in self._flush.values()}
            )
            totals = {
                "failures": sum(r["failures"] for r in failures),
                "sends": sum(r["sends"] for r in sends),
                "late": len(late),
                "late_ambiguous": len(self._late_ambiguous),
                "flush_events": len(self._flush),
                "non_ok": len(self._non_ok),
                **dict(sorted(self.requests.items())),
            }
            return {
                "meta": {
                    **self.meta,
                    "window_seconds": self.window_ms // 1000,
                    "grace_seconds": self.grace_seconds,
                    "flush_window_starts_ms": flush_windows,
                },
                "totals": totals,
                "failures": failures,
                "sends": sends,
                "late": late,
                "non_ok": list(self._non_ok),
            }

    def write(self, path: Path) -> None:
        """JSON (``.json``) or CSV (``.csv``: one row per failure / send / late cell)."""
        data = self.to_dict()
        if path.suffix == ".json":
            path.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
        elif path.suffix == ".csv":
            _write_csv(path, data)
        else:
            raise ValueError(f"--ledger {path}: use a .json or .csv file name")


_CSV_COLUMNS = (
    "section",
    "window_start_ms",
    "window_end_ms",
    "sdkappid",
    "group_id",
    "error_code",
    "error_category",
    "count",
    "senders",
    "event_id",
    "event_time_ms",
)


def _write_csv(path: Path, data: dict[str, Any]) -> None:
    with path.open("w", newline="") as fh:
        out = csv.DictWriter(fh, _CSV_COLUMNS, extrasaction="ignore")
        out.writeheader()
        for row in data["failures"]:
            out.writerow({"section": "failures", "count": row["failures"], **row})
        for row in data["sends"]:
            out.writerow({"section": "sends", "count": row["sends"], **row})
        for row in data["late"]:
            out.writerow({"section": "late", "count": 1, **row})
