"""Merge the effects of consecutive steps of one partition into one set of writes.

Each key is written once per batch with its last value, the meta once (its last value),
and keys whose last change was a deletion are deleted after the meta. Every stored value
carries the highest source offset applied to it, so a crash that leaves the changelog
with some of a batch's key writes but the previous meta is repaired by replay: events
at or below the meta's offsets are skipped, and keys already covering an event are not
touched again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stream.state import Effects, Output


@dataclass
class Batch:
    """The merged effects of a run of steps of one partition, in carry-out order."""

    outputs: list[Output] = field(default_factory=list)  # acknowledged before any write
    changes: dict[str, bytes | None] = field(default_factory=dict)  # last change per key
    written: dict[str, bytes] = field(default_factory=dict)  # last value put per key
    meta: tuple[str, bytes] | None = None
    updates: list[Output] = field(default_factory=list)
    windows_opened: int = 0
    windows_closed: int = 0
    finals: int = 0
    alerts: int = 0

    def merge(self, fx: Effects) -> None:
        """Add one step's effects (steps must be merged in the order they were made)."""
        self.outputs.extend(fx.outputs)
        for key, value in fx.writes.items():
            self.changes[key] = value
            self.written[key] = value
        if fx.meta is not None:
            self.meta = fx.meta
        for key in fx.deletes:
            self.changes[key] = None
        self.updates.extend(fx.updates)
        self.windows_opened += fx.windows_opened
        self.windows_closed += fx.windows_closed
        self.finals += fx.finals
        self.alerts += fx.alerts

    def key_writes(self) -> list[tuple[str, bytes]]:
        """Puts before the meta: every key written in the batch, with its last value.

        A key written and later deleted in the batch is still put first (then deleted
        after the meta), so any crash point leaves a state some per-step run could leave.
        """
        return list(self.written.items())

    def key_deletes(self) -> list[str]:
        """Deletions after the meta: keys whose last change in the batch was a delete."""
        return [key for key, value in self.changes.items() if value is None]
