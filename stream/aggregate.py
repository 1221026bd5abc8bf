"""Per-key aggregate state of open windows and the FailureWindow records built from it.

Every stored value carries ``off``: the highest source offset already applied to it, so
an event re-read after a crash changes nothing it already changed. The step
(``stream.step``) updates them in place; ``stream.codecs`` stores them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from groupwatch.contracts.catalog import Category
from groupwatch.contracts.keys import iso_utc
from groupwatch.contracts.records import FailureWindow

GroupId = tuple[int, str, str]  # (window_start_ms, sdkappid, group_id)
AppId = tuple[int, str]  # (window_start_ms, sdkappid)

# the same few window bounds and update times are formatted for many records
_iso = lru_cache(maxsize=1024)(iso_utc)


@dataclass(slots=True)
class CodeAgg:
    """Failures of one (window, app, group, error code)."""

    ws: int
    app: str
    grp: str
    code: int
    cat: Category
    gt: str | None = None
    n: int = 0
    senders: set[str] = field(default_factory=set)
    first: int | None = None
    last: int | None = None
    off: int = -1
    # changed since the state's last flush (bookkeeping of PartitionState, not stored)
    dirty: bool = field(default=False, compare=False, repr=False)

    @property
    def group(self) -> GroupId:
        return (self.ws, self.app, self.grp)


@dataclass(slots=True)
class Count:
    """A counter with the highest applied source offset (sends per group or app)."""

    n: int = 0
    off: int = -1


@dataclass(frozen=True)
class GroupTotals:
    failures: int
    sends: int | None  # None: the app sent no send callbacks in this window (partition)
    ratio: float | None


def group_totals(failures: int, group_sends: int, app_has_sends: bool) -> GroupTotals:
    """failure_ratio = failures / (failures + sends); None without send callbacks for the app."""
    if not app_has_sends:
        return GroupTotals(failures, None, None)
    total = failures + group_sends
    ratio = round(failures / total, 6) if total else None
    return GroupTotals(failures, group_sends, ratio)


def failure_window(
    agg: CodeAgg, totals: GroupTotals, size_ms: int, final: bool, updated_at_ms: int
) -> FailureWindow:
    """The full current state of one window key as its output record."""
    end = agg.ws + size_ms
    return FailureWindow(
        sdkappid=agg.app,
        group_id=agg.grp,
        group_type=agg.gt,
        error_code=agg.code,
        error_category=agg.cat,
        window_start=_iso(agg.ws),
        window_end=_iso(end),
        window_start_ms=agg.ws,
        window_end_ms=end,
        failures=agg.n,
        failures_per_minute=round(agg.n * 60_000 / size_ms, 6),
        senders=len(agg.senders),
        first_event_time_ms=agg.first if agg.first is not None else agg.ws,
        last_event_time_ms=agg.last if agg.last is not None else agg.ws,
        group_failures=totals.failures,
        group_sends=totals.sends,
        failure_ratio=totals.ratio,
        final=final,
        updated_at=_iso(updated_at_ms),
        updated_at_ms=updated_at_ms,
    )
