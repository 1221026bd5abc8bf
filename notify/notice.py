"""What notify sends: a ``Notice`` (one group's alert of one window, all its reasons, or a
"resolved"), and the idempotency keys derived from the records, stable across re-deliveries."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from groupwatch.contracts.keys import alert_key
from groupwatch.contracts.records import Alert, AlertResolved


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def alert_id(alert: Alert) -> str:
    """The idempotency key of one alert record: a hash of its topic key (app, group,
    window, reason), so every re-delivery of the record carries the same key."""
    return _digest(
        "alert\x1f" + alert_key(alert.sdkappid, alert.group_id, alert.window_start_ms, alert.reason)
    )


def resolved_id(r: AlertResolved) -> str:
    """The idempotency key of a resolved notice: (app, group, the alert's window)."""
    return _digest(f"resolved\x1f{r.sdkappid}\x1f{r.group_id}\x1f{r.alert_window_start_ms}")


def combined_id(keys: Iterable[str]) -> str:
    """The key of a message carrying several notices (a digest, or merged reasons)."""
    return _digest("set\x1f" + "\x1f".join(sorted(keys)))


@dataclass(frozen=True)
class Notice:
    """One thing a person is told: ``alerts`` (one group and window, one per reason) or
    ``resolved``. ``keys`` are the idempotency keys of its records."""

    kind: Literal["alert", "resolved"]
    alerts: tuple[Alert, ...] = ()
    resolved: AlertResolved | None = None

    @property
    def sdkappid(self) -> str:
        return self.resolved.sdkappid if self.resolved else self.alerts[0].sdkappid

    @property
    def group_id(self) -> str:
        return self.resolved.group_id if self.resolved else self.alerts[0].group_id

    @property
    def window_start_ms(self) -> int:
        return self.resolved.window_start_ms if self.resolved else self.alerts[0].window_start_ms

    @property
    def keys(self) -> list[str]:
        if self.resolved is not None:
            return [resolved_id(self.resolved)]
        return [alert_id(a) for a in self.alerts]

    @property
    def key(self) -> str:
        keys = self.keys
        return keys[0] if len(keys) == 1 else combined_id(keys)
