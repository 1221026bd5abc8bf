"""The words of a message: an alert, a resolved notice, a digest, as WeCom markdown or
Slack mrkdwn text, each within the channel's size limit (WeCom: 4096 bytes of content).

Everything a person needs is in one message: app, group, error codes with category and
meaning, failures and ratio in the window, the threshold or baseline crossed, the window in
UTC, and the dashboard's group page when ``GROUPWATCH_NOTIFY_DASHBOARD_URL`` is set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

from groupwatch.contracts.catalog import CONTENT_SECURITY_RANGE, ERROR_CODES
from groupwatch.contracts.records import Alert, AlertResolved
from notify.notice import Notice

WECOM_MAX_BYTES = 4096  # the robot API's limit on markdown.content
SLACK_MAX_BYTES = 3000  # Slack truncates section text at 3000 characters


@dataclass(frozen=True)
class Style:
    """How one channel's markup writes bold, code, links and a warning colour."""

    name: str
    max_bytes: int

    def bold(self, text: str) -> str:
        return f"**{text}**" if self.name == "wecom" else f"*{text}*"

    def code(self, text: str) -> str:
        return "`" + text.replace("`", "'") + "`"

    def link(self, text: str, url: str) -> str:
        if self.name == "wecom":
            return f"[{text}]({url})"
        return f"<{url}|{text}>"

    def title(self, text: str, warning: bool) -> str:
        if self.name == "wecom":
            colour = "warning" if warning else "info"
            return f'## <font color="{colour}">{text}</font>'
        return f"{':rotating_light:' if warning else ':white_check_mark:'} *{text}*"

    def escape(self, text: str) -> str:
        if self.name == "slack":  # the three characters Slack's mrkdwn wants escaped
            return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        return text


WECOM = Style("wecom", WECOM_MAX_BYTES)
SLACK = Style("slack", SLACK_MAX_BYTES)


def group_url(dashboard_url: str, sdkappid: str, group_id: str) -> str:
    """The dashboard's group page: ``<url>/group/<group_id>?app=<sdkappid>&range=1h``."""
    base = dashboard_url.rstrip("/")
    return f"{base}/group/{quote(group_id, safe='')}?app={quote(sdkappid, safe='')}&range=1h"


def code_meaning(code: int) -> str:
    known = ERROR_CODES.get(code)
    if known is not None:
        return known[0]
    if code in CONTENT_SECURITY_RANGE:
        return "failed content security"
    return "not in groupwatch's error catalog"


def utc_minute(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def window_text(start_ms: int, end_ms: int) -> str:
    end = datetime.fromtimestamp(end_ms / 1000, tz=UTC).strftime("%H:%M:%S")
    return f"{utc_minute(start_ms)} to {end} UTC"


def ratio_text(alert: Alert) -> str:
    if alert.failure_ratio is None or alert.group_sends is None:
        return "ratio unknown (no sends seen for the group)"
    return (
        f"{alert.failure_ratio:.1%} of the group's messages failed "
        f"({alert.failures} failed, {alert.group_sends} sent)"
    )


def crossed_text(alert: Alert) -> str:
    if alert.reason == "threshold":
        return f"threshold: ≥ {alert.threshold} failures in a window"
    base = alert.baseline if alert.baseline is not None else 0.0
    return (
        f"baseline: ≥ {alert.baseline_factor:g} x the group's usual {base:.1f} failures "
        f"per window (= {alert.baseline_factor * base:.1f})"
    )


def _who(style: Style, sdkappid: str, group_id: str) -> str:
    return f"group {style.code(group_id)} in app {style.code(sdkappid)}"


def _link_line(style: Style, dashboard_url: str | None, sdkappid: str, group_id: str) -> list[str]:
    if not dashboard_url:
        return []
    return [
        style.link("Open the group in the dashboard", group_url(dashboard_url, sdkappid, group_id))
    ]


def alert_lines(style: Style, alerts: Sequence[Alert], dashboard_url: str | None) -> list[str]:
    """One group's alert in one window (every reason it crossed)."""
    a = alerts[0]
    gtype = f" ({style.escape(a.group_type)})" if a.group_type else ""
    lines = [
        style.title("groupwatch alert: failure spike", warning=True),
        f"{style.bold('Group')}: {_who(style, style.escape(a.sdkappid), style.escape(a.group_id))}"
        f"{gtype}",
        f"{style.bold('Window')}: {window_text(a.window_start_ms, a.window_end_ms)}",
        f"{style.bold('Failures')}: {a.failures} in the window; {ratio_text(a)}",
    ]
    lines += [f"{style.bold('Crossed')}: {crossed_text(x)}" for x in alerts]
    lines.append(f"{style.bold('Error codes')}:")
    for c in a.top_error_codes:
        lines.append(
            f"> {c.error_code} {style.escape(c.error_category)} — {code_meaning(c.error_code)}: "
            f"{c.failures} failures"
        )
    return lines + _link_line(style, dashboard_url, a.sdkappid, a.group_id)


def resolved_lines(style: Style, r: AlertResolved, dashboard_url: str | None) -> list[str]:
    return [
        style.title("groupwatch resolved: back under the threshold", warning=False),
        f"{style.bold('Group')}: {_who(style, style.escape(r.sdkappid), style.escape(r.group_id))}",
        f"{style.bold('Window')}: {window_text(r.window_start_ms, r.window_end_ms)}: "
        f"{r.failures} failures (threshold {r.threshold})",
        f"{style.bold('Alert was')}: {r.alert_failures} failures in the window from "
        f"{utc_minute(r.alert_window_start_ms)} UTC",
        *_link_line(style, dashboard_url, r.sdkappid, r.group_id),
    ]


def digest_line(style: Style, n: Notice, dashboard_url: str | None) -> str:
    """One notice as one line of a digest."""
    who = _who(style, style.escape(n.sdkappid), style.escape(n.group_id))
    link = ""
    if dashboard_url:
        link = " " + style.link("dashboard", group_url(dashboard_url, n.sdkappid, n.group_id))
    if n.resolved is not None:
        r = n.resolved
        return (
            f"> resolved: {who}: {r.failures} failures in "
            f"{window_text(r.window_start_ms, r.window_end_ms)}{link}"
        )
    a = n.alerts[0]
    top = a.top_error_codes[0] if a.top_error_codes else None
    code = f", mostly {top.error_code} {top.error_category}" if top else ""
    ratio = f" ({a.failure_ratio:.1%} failed)" if a.failure_ratio is not None else ""
    reasons = "+".join(x.reason for x in n.alerts)
    return (
        f"> {who}: {a.failures} failures{ratio}{code} in "
        f"{window_text(a.window_start_ms, a.window_end_ms)} [{reasons}]{link}"
    )


def render(style: Style, notice: Notice, dashboard_url: str | None) -> str:
    """One notice as one message (cut to the channel's limit, which it never reaches with
    the contract's field lengths)."""
    if notice.resolved is not None:
        lines = resolved_lines(style, notice.resolved, dashboard_url)
    else:
        lines = alert_lines(style, notice.alerts, dashboard_url)
    return cut("\n".join(lines), style.max_bytes)


def render_digest(
    style: Style, notices: Sequence[Notice], dashboard_url: str | None, why: str
) -> list[str]:
    """Several notices as few messages: a header and one line each, as many lines per
    message as fit the channel's limit (nothing is left out)."""
    alerting = len({(n.sdkappid, n.group_id) for n in notices if n.kind == "alert"})
    resolved = sum(1 for n in notices if n.kind == "resolved")
    parts = [f"{alerting} groups alerting"] if alerting else []
    if resolved:
        parts.append(f"{resolved} resolved")
    header = style.title(f"groupwatch digest: {', '.join(parts)}", warning=alerting > 0)
    lines = [cut(digest_line(style, n, dashboard_url), style.max_bytes // 2) for n in notices]
    messages: list[str] = []
    current: list[str] = []
    for line in lines:
        candidate = "\n".join([header, why, *current, line])
        if current and len(candidate.encode("utf-8")) > style.max_bytes - 40:
            messages.append("\n".join([header, why, *current]))
            current = []
        current.append(line)
    messages.append("\n".join([header, why, *current]))
    if len(messages) > 1:
        messages = [f"{m}\n(part {i} of {len(messages)})" for i, m in enumerate(messages, 1)]
    return [cut(m, style.max_bytes) for m in messages]


def cut(text: str, max_bytes: int) -> str:
    """``text`` in at most ``max_bytes`` UTF-8 bytes, cut at a character boundary."""
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text
    return data[: max_bytes - 3].decode("utf-8", "ignore") + "…"
