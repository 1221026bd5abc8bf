"""Event-time tumbling windows and the per-partition stream clock that closes them.

A window ``[start, start + size)`` closes when the partition's watermark reaches
``end + grace``. Each input topic keeps its own stream time (the max event time read
from that topic-partition), because the interleaving of two topics is not reproducible
while each topic's own order is. An event is *late* when its own topic's stream time,
or the close watermark, already passed its window's end + grace.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from groupwatch.contracts.records import EventKind

KINDS: tuple[EventKind, ...] = tuple(EventKind)


@dataclass(frozen=True)
class WindowSpec:
    """Tumbling window size and grace, in milliseconds."""

    size_ms: int
    grace_ms: int

    def __post_init__(self) -> None:
        if self.size_ms <= 0:
            raise ValueError(f"window size must be > 0 ms, got {self.size_ms}")
        if self.grace_ms < 0:
            raise ValueError(f"grace must be >= 0 ms, got {self.grace_ms}")

    @classmethod
    def from_seconds(cls, window_seconds: float, grace_seconds: float) -> WindowSpec:
        return cls(int(window_seconds * 1000), int(grace_seconds * 1000))

    def start(self, event_time_ms: int) -> int:
        """Start of the window holding ``event_time_ms`` (floor, also before 1970)."""
        return event_time_ms - (event_time_ms % self.size_ms)

    def end(self, window_start_ms: int) -> int:
        return window_start_ms + self.size_ms

    def close_time(self, window_start_ms: int) -> int:
        """The watermark at which the window closes: end + grace."""
        return window_start_ms + self.size_ms + self.grace_ms


@dataclass
class StreamClock:
    """Stream time per input topic of one partition, and the close watermark.

    ``seen[kind]`` says the topic-partition carries records at all; a topic that never
    had a record does not hold windows open (otherwise an app without send callbacks
    would never get a final). ``closed_until`` is the watermark up to which windows were
    closed (by stream time or by the idle close); it only moves forward.
    """

    stream_time: dict[EventKind, int | None] = field(default_factory=lambda: dict.fromkeys(KINDS))
    seen: dict[EventKind, bool] = field(default_factory=lambda: dict.fromkeys(KINDS, False))
    closed_until: int | None = None

    def observe(self, kind: EventKind, event_time_ms: int) -> None:
        """Advance ``kind``'s stream time with one event that was read."""
        self.seen[kind] = True
        current = self.stream_time[kind]
        if current is None or event_time_ms > current:
            self.stream_time[kind] = event_time_ms

    def watermark(self) -> int | None:
        """Min stream time over the topics that carry records; None before any."""
        low: int | None = None
        for k in KINDS:  # called for every event: no temporary lists
            if self.seen[k]:
                t = self.stream_time[k]
                if t is None:
                    return None
                if low is None or t < low:
                    low = t
        return low

    def advance_to(self, watermark: int) -> None:
        if self.closed_until is None or watermark > self.closed_until:
            self.closed_until = watermark

    def closable(self, spec: WindowSpec, open_starts: Iterable[int]) -> list[int]:
        """Open windows whose end + grace the watermark (or closed_until) reached, oldest first."""
        marks = [m for m in (self.watermark(), self.closed_until) if m is not None]
        if not marks:
            return []
        mark = max(marks)
        return sorted(ws for ws in set(open_starts) if spec.close_time(ws) <= mark)

    def close_mark(self) -> int | None:
        """The larger of the watermark and ``closed_until`` (None when neither is known)."""
        mark, done = self.watermark(), self.closed_until
        if mark is None:
            return done
        return mark if done is None or mark > done else done
