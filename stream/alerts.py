"""Spike alerts per group and window: a fixed threshold and k x an EWMA baseline.

The baseline of a group is the EWMA of its failures in previous windows, windows without
failures counting as zero (applied lazily by decaying over the gap). Alerts are decided
when the window closes, from its final counts, so they are deterministic under replay.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AlertRules:
    threshold: int
    baseline_factor: float
    ewma_alpha: float
    min_failures: int

    def __post_init__(self) -> None:
        if self.threshold < 1:
            raise ValueError("alert threshold must be >= 1")
        if self.baseline_factor <= 1:
            raise ValueError("alert baseline factor must be > 1")
        if not 0 < self.ewma_alpha <= 1:
            raise ValueError("EWMA alpha must be in (0, 1]")


@dataclass(frozen=True)
class Baseline:
    """EWMA after window ``window_start``; ``before`` is the baseline that window was judged by."""

    ewma: float
    window_start: int
    before: float | None


def baseline_for(b: Baseline | None, window_start: int, size_ms: int, alpha: float) -> float | None:
    """The baseline a window is judged by: previous windows only (None without history)."""
    if b is None:
        return None
    if window_start == b.window_start:
        return b.before
    if window_start < b.window_start:
        return None  # cannot judge an older window than the history (not reached in order)
    gap = (window_start - b.window_start) // size_ms - 1
    return b.ewma * (1 - alpha) ** gap


def update(
    b: Baseline | None, window_start: int, failures: int, size_ms: int, alpha: float
) -> Baseline:
    """Fold one closed window in; idempotent for a window already folded in."""
    if b is not None and window_start <= b.window_start:
        return b
    base = baseline_for(b, window_start, size_ms, alpha)
    ewma = float(failures) if base is None else alpha * failures + (1 - alpha) * base
    return Baseline(ewma, window_start, base)


def reasons(failures: int, baseline: float | None, rules: AlertRules) -> list[str]:
    """Which alerts a group's closed window raises ("threshold", "baseline")."""
    out: list[str] = []
    if failures >= rules.threshold:
        out.append("threshold")
    if (
        baseline is not None
        and failures >= rules.min_failures
        and failures >= rules.baseline_factor * baseline
    ):
        out.append("baseline")
    return out
