"""The three channels and what each gets for a batch of notices.

- **wecom**: ``{"msgtype": "markdown", "markdown": {"content": …}}``, one message per notice.
- **slack**: ``{"text": …}`` (mrkdwn), one message per notice.
- **webhook**: each alert record as in its JSON Schema (a resolved notice: an
  ``AlertResolved`` record), ``Idempotency-Key`` and ``X-Groupwatch-Event`` headers, and
  ``X-Groupwatch-Signature: sha256=<hex HMAC-SHA256 of the body>`` when a secret is set.

WeCom and Slack get one digest instead when ``digest_threshold`` groups alert in the same
window, and the notices beyond what their per-minute limit still allows go into one digest
(split in parts only to fit the size limit) rather than being dropped. The webhook is
never digested (its receivers want records); its limit, if any, only paces it.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec

from groupwatch.contracts.records import Alert, encode
from groupwatch.contracts.settings import Settings
from notify.delivery import Outgoing
from notify.message import SLACK, WECOM, Style, render, render_digest
from notify.notice import Notice, alert_id, combined_id, resolved_id

SIGNATURE_HEADER = "X-Groupwatch-Signature"
EVENT_HEADER = "X-Groupwatch-Event"
PER = 60.0  # seconds of a per-minute limit


class RateLimiter:
    """At most ``limit`` sends in any ``PER`` seconds (0 = unlimited)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.sent: collections.deque[float] = collections.deque()

    def _trim(self, now: float) -> None:
        while self.sent and self.sent[0] <= now - PER:
            self.sent.popleft()

    def available(self) -> int:
        if self.limit <= 0:
            return 1 << 30
        self._trim(time.monotonic())
        return self.limit - len(self.sent)

    def acquire(self, stopping: threading.Event) -> bool:
        """Wait for a free slot and take it; False when stopping."""
        if self.limit <= 0:
            return not stopping.is_set()
        while True:
            now = time.monotonic()
            self._trim(now)
            if len(self.sent) < self.limit:
                self.sent.append(now)
                return True
            if stopping.wait(self.sent[0] + PER - now + 0.01):
                return False


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


@dataclass
class Channel:
    name: str  # "wecom" | "slack" | "webhook"
    url: str
    limiter: RateLimiter
    dashboard_url: str | None
    digest_threshold: int
    secret: str | None = None

    @property
    def style(self) -> Style:
        return WECOM if self.name == "wecom" else SLACK

    def messages(self, notices: Sequence[Notice]) -> list[Outgoing]:
        """What this channel is sent for a batch, in order."""
        if self.name == "webhook":
            return [m for n in notices for m in self._records(n)]
        singles, digests = self._by_window(notices)
        room = self.limiter.available() - len(digests)
        if len(singles) > max(room, 0):
            keep = max(room - 1, 0)  # one slot is the digest of the rest
            singles, rest = singles[:keep], singles[keep:]
            digests.append(
                (
                    rest,
                    f"More than {self.limiter.limit} messages a minute: "
                    f"{len(rest)} notices in one digest.",
                )
            )
        out = [
            self._text(
                render(self.style, n, self.dashboard_url),
                n.kind,
                n.key,
                tuple(n.keys),
                n.alerts[0] if n.alerts else None,
            )
            for n in singles
        ]
        for members, why in digests:
            keys = tuple(k for n in members for k in n.keys)
            parts = render_digest(self.style, members, self.dashboard_url, why)
            for i, text in enumerate(parts):
                key = combined_id(keys) if len(parts) == 1 else combined_id((*keys, str(i)))
                out.append(self._text(text, "digest", key, keys))
        return out

    def _by_window(
        self, notices: Sequence[Notice]
    ) -> tuple[list[Notice], list[tuple[list[Notice], str]]]:
        by_window: dict[int, list[Notice]] = collections.defaultdict(list)
        for n in notices:
            if n.kind == "alert":
                by_window[n.window_start_ms].append(n)
        crowded = {
            ws
            for ws, ns in by_window.items()
            if len({(n.sdkappid, n.group_id) for n in ns}) >= self.digest_threshold
        }
        singles = [n for n in notices if n.kind != "alert" or n.window_start_ms not in crowded]
        digests = [
            (by_window[ws], f"{len(by_window[ws])} groups alerted in the same window.")
            for ws in sorted(crowded)
        ]
        return singles, digests

    def _text(
        self, text: str, kind: str, key: str, keys: tuple[str, ...], alert: Alert | None = None
    ) -> Outgoing:
        if self.name == "wecom":
            payload: dict[str, object] = {"msgtype": "markdown", "markdown": {"content": text}}
        else:
            payload = {"text": text}
        return Outgoing(
            channel=self.name,
            kind=kind,
            url=self.url,
            body=msgspec.json.encode(payload),
            headers={
                "Content-Type": "application/json",
                "Idempotency-Key": key,
                EVENT_HEADER: kind,
            },
            key=key,
            alert_keys=keys,
            payload_check="wecom" if self.name == "wecom" else "status",
            alert=alert,
        )

    def _records(self, n: Notice) -> list[Outgoing]:
        items: list[tuple[bytes, str, str, Alert | None]]
        if n.resolved is not None:
            items = [(encode(n.resolved), resolved_id(n.resolved), "resolved", None)]
        else:
            items = [(encode(a), alert_id(a), "alert", a) for a in n.alerts]
        out = []
        for body, key, kind, alert in items:
            headers = {
                "Content-Type": "application/json",
                "Idempotency-Key": key,
                EVENT_HEADER: kind,
            }
            if self.secret:
                headers[SIGNATURE_HEADER] = sign(self.secret, body)
            out.append(Outgoing(self.name, kind, self.url, body, headers, key, (key,), alert=alert))
        return out


def channels_of(settings: Settings) -> list[Channel]:
    s = settings
    out = []
    for name, url, limit in (
        ("wecom", s.notify_wecom_url, s.notify_wecom_per_minute),
        ("slack", s.notify_slack_url, s.notify_slack_per_minute),
        ("webhook", s.notify_webhook_url, s.notify_webhook_per_minute),
    ):
        if url:
            out.append(
                Channel(
                    name,
                    url,
                    RateLimiter(limit),
                    s.notify_dashboard_url,
                    s.notify_digest_threshold,
                    s.notify_webhook_secret if name == "webhook" else None,
                )
            )
    return out
