"""Deciding what a batch of records asks to be told: silences, the cooldown, merged
reasons, "resolved" notices. Pure: state in, notices and counts out.

- **Silences**: an alert of a silenced app or group, or whose error codes are all
  silenced, is not sent (counted as suppressed, ``silence``).
- **Cooldown** per (app, group, reason), in event time: an alert whose window starts less
  than ``cooldown`` after the last one sent for the same key is suppressed (``cooldown``).
  The same alert read again after a crash (same window as the one recorded) is
  ``already_sent``.
- **Merged reasons**: a group's threshold and baseline alerts of one window become one
  notice (the webhook still gets each alert record on its own).
- **Resolved**: a group with an alert sent is resolved when a final failure window of a
  later window shows its group failures under the alert's threshold, or when the finals
  seen (any group) are two windows past the alert with none of that group at all (its
  windows were empty).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from groupwatch.contracts.keys import iso_utc
from groupwatch.contracts.records import Alert, AlertResolved, FailureWindow
from notify.notice import Notice
from notify.state import NotifyState, OpenAlert

QUIET_WINDOWS = 2  # empty windows after an alert that resolve it
PRUNE_MARGIN_MS = 3_600_000


@dataclass(frozen=True)
class Silences:
    apps: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()  # "group_id" or "sdkappid:group_id"
    codes: frozenset[int] = frozenset()

    def silenced(self, alert: Alert) -> bool:
        if alert.sdkappid in self.apps:
            return True
        if alert.group_id in self.groups or f"{alert.sdkappid}:{alert.group_id}" in self.groups:
            return True
        codes = {c.error_code for c in alert.top_error_codes}
        return bool(codes) and codes <= self.codes


@dataclass
class Planned:
    notices: list[Notice] = field(default_factory=list)
    suppressed: Counter[str] = field(default_factory=Counter)


def _group(app: str, group: str) -> str:
    return f"{app}\x1f{group}"


class Planner:
    def __init__(self, state: NotifyState, cooldown_seconds: int, silences: Silences) -> None:
        self.state = state
        self.cooldown_ms = cooldown_seconds * 1000
        self.silences = silences

    def plan(self, records: list[Alert | FailureWindow]) -> Planned:
        out = Planned()
        merged: dict[tuple[str, str, int], list[Alert]] = {}
        order: list[tuple[str, str, int] | Notice] = []
        for rec in records:
            if isinstance(rec, Alert):
                why = self._admit(rec)
                if why is not None:
                    out.suppressed[why] += 1
                    continue
                k = (rec.sdkappid, rec.group_id, rec.window_start_ms)
                if k not in merged:
                    merged[k] = []
                    order.append(k)
                merged[k].append(rec)
            elif rec.final:
                resolved = self._final(rec)
                if resolved is not None:
                    order.append(resolved)
        order.extend(self._quiet())
        for item in order:
            if isinstance(item, Notice):
                out.notices.append(item)
            else:
                alerts = sorted(merged[item], key=lambda a: a.reason != "threshold")
                out.notices.append(Notice("alert", alerts=tuple(alerts)))
        self._prune()
        return out

    def _admit(self, a: Alert) -> str | None:
        """None when the alert is to be sent (and recorded), else why it is not."""
        if self.silences.silenced(a):
            return "silence"
        ck = f"{a.sdkappid}\x1f{a.group_id}\x1f{a.reason}"
        last = self.state.last_sent.get(ck)
        if last is not None:
            if last == a.window_start_ms:
                return "already_sent"
            if last > a.window_start_ms or a.window_start_ms - last < self.cooldown_ms:
                return "cooldown"
        self.state.last_sent[ck] = a.window_start_ms
        gk = _group(a.sdkappid, a.group_id)
        current = self.state.open.get(gk)
        if current is None or current.window_start_ms <= a.window_start_ms:
            self.state.open[gk] = OpenAlert(
                window_start_ms=a.window_start_ms,
                window_end_ms=a.window_end_ms,
                failures=max(
                    a.failures,
                    current.failures
                    if current and current.window_start_ms == a.window_start_ms
                    else 0,
                ),
                threshold=a.threshold,
            )
        return None

    def _final(self, w: FailureWindow) -> Notice | None:
        self.state.watermark_ms = max(self.state.watermark_ms, w.window_end_ms)
        gk = _group(w.sdkappid, w.group_id)
        o = self.state.open.get(gk)
        if o is None or w.window_start_ms <= o.window_start_ms:
            return None
        if w.group_failures >= o.threshold:
            return None  # still alerting: the window's own alert follows
        del self.state.open[gk]
        return Notice(
            "resolved",
            resolved=self._resolved(
                w.sdkappid, w.group_id, o, w.window_start_ms, w.window_end_ms, w.group_failures
            ),
        )

    def _quiet(self) -> list[Notice]:
        out = []
        mark = self.state.watermark_ms
        for gk, o in list(self.state.open.items()):
            size = o.window_end_ms - o.window_start_ms
            if mark >= o.window_end_ms + QUIET_WINDOWS * size:
                del self.state.open[gk]
                app, group = gk.split("\x1f", 1)
                out.append(
                    Notice(
                        "resolved",
                        resolved=self._resolved(
                            app, group, o, o.window_end_ms, o.window_end_ms + size, 0
                        ),
                    )
                )
        return out

    @staticmethod
    def _resolved(
        app: str, group: str, o: OpenAlert, start: int, end: int, failures: int
    ) -> AlertResolved:
        return AlertResolved(
            sdkappid=app,
            group_id=group,
            alert_window_start=iso_utc(o.window_start_ms),
            alert_window_start_ms=o.window_start_ms,
            alert_failures=o.failures,
            threshold=o.threshold,
            window_start=iso_utc(start),
            window_start_ms=start,
            window_end=iso_utc(end),
            window_end_ms=end,
            failures=failures,
        )

    def _prune(self) -> None:
        """Cooldown entries no alert can be judged by any more."""
        horizon = self.state.watermark_ms - self.cooldown_ms - PRUNE_MARGIN_MS
        if horizon <= 0:
            return
        stale = [k for k, ws in self.state.last_sent.items() if ws < horizon]
        for k in stale:
            del self.state.last_sent[k]
