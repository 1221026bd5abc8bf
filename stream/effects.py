"""What a batch of steps of one partition asks the worker to do, in carry-out order.

``Effects`` is filled by the step, the closing and the ticks while the batch's records are
applied in memory (``PartitionState.begin`` ... ``finish``), then carried out in this
order: outputs sent and acknowledged, key writes (each key once, its last value), the
partition meta (written last: it marks the batch's records as applied), then deletions.
Every stored value carries the highest source offset applied to it, so a crash that
leaves the changelog with some of the key writes but the previous meta is repaired by
replay: records at or below the meta's offsets are skipped, and keys already covering a
record are not touched again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Literal

from groupwatch.contracts.records import EventKind

OutTopic = Literal["failure_windows", "late_events", "alerts", "dlq"]


class Outcome(IntEnum):
    """What became of one input record; the value indexes ``Effects.outcomes[kind]``."""

    COUNTED = 0
    DUPLICATE = 1
    LATE = 2
    REPLAYED = 3  # at or below the meta's offset: applied before a restart
    REJECTED = 4  # sent to the DLQ (``stream.guard``)

    @property
    def label(self) -> str:
        """The ``outcome`` label of the records metrics."""
        return self.name.lower()


def _no_outcomes() -> dict[EventKind, list[int]]:
    return {kind: [0] * len(Outcome) for kind in EventKind}


@dataclass(frozen=True)
class Output:
    topic: OutTopic
    key: str
    value: bytes


@dataclass
class Effects:
    """The effects of one batch of steps of one partition (see the module docstring)."""

    outputs: list[Output] = field(default_factory=list)  # send and await the acks
    writes: dict[str, bytes] = field(default_factory=dict)  # table puts, last value per key
    meta: tuple[str, bytes] | None = None  # the partition meta, last put
    deletes: list[str] = field(default_factory=list)  # after meta
    updates: list[Output] = field(default_factory=list)  # non-final, no ack needed
    # per input kind: records per Outcome (indexed by its value)
    outcomes: dict[EventKind, list[int]] = field(default_factory=_no_outcomes)
    windows_opened: int = 0
    windows_closed: int = 0
    finals: int = 0
    alerts: int = 0

    def total(self, outcome: Outcome) -> int:
        """Records of either kind with that outcome."""
        return sum(counts[outcome] for counts in self.outcomes.values())

    def changelog(self) -> list[tuple[str, bytes | None]]:
        """The table writes in carry-out order: key writes, the meta, deletions (None).

        A key written and later deleted in the batch is still put first (then deleted
        after the meta), so any crash point leaves a state some per-record run could leave.
        """
        changes: dict[str, bytes | None] = dict(self.writes)
        for key in self.deletes:
            changes[key] = None
        entries: list[tuple[str, bytes | None]] = list(self.writes.items())
        if self.meta is not None:
            entries.append(self.meta)
        entries.extend((key, None) for key, value in changes.items() if value is None)
        return entries
