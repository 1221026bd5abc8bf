"""One message POSTed until the receiver takes it: retries with exponential backoff and
jitter (tenacity) on timeouts, connection errors, 429 and 5xx, honouring Retry-After; any
other 4xx (or a WeCom error code other than "busy") is final and not retried.
"""

from __future__ import annotations

import email.utils
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import requests
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_delay,
    stop_when_event_set,
    wait_exponential_jitter,
)

from groupwatch.contracts.records import Alert

# WeCom robots answer HTTP 200 with an errcode; these mean "try again later"
WECOM_RETRY_CODES = frozenset({-1, 45009, 45033})


@dataclass(frozen=True)
class Outgoing:
    """One HTTP request to one channel: a message of one or more notices."""

    channel: str
    kind: str  # "alert" | "resolved" | "digest"
    url: str
    body: bytes
    headers: dict[str, str]
    key: str
    alert_keys: tuple[str, ...]
    payload_check: str = "status"  # "status" or "wecom" (errcode in the JSON answer)
    alert: Alert | None = None  # the alert, when the message is about one
    created: float = field(default_factory=time.monotonic)


class Transient(Exception):
    def __init__(
        self, reason: str, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(reason)
        self.reason, self.status, self.retry_after = reason, status, retry_after


class Refused(Exception):
    """The receiver said no for good (a 4xx other than 429, a WeCom error code)."""

    def __init__(self, reason: str, status: int | None) -> None:
        super().__init__(reason)
        self.reason, self.status = reason, status


class Stopping(Exception):
    """Shutdown was asked for while a message was still being retried (not delivered)."""


@dataclass(frozen=True)
class Policy:
    timeout: float
    initial: float
    max_backoff: float
    max_total: float


@dataclass(frozen=True)
class Result:
    delivered: bool
    attempts: int
    status: int | None
    reason: str


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """A Retry-After header (delay seconds or an HTTP date) in seconds; None if absent or
    unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def post_once(session: requests.Session, out: Outgoing, timeout: float) -> int:
    """One attempt; returns the status of a delivery, raises ``Transient`` / ``Refused``."""
    try:
        resp = session.post(out.url, data=out.body, headers=out.headers, timeout=timeout)
    except requests.Timeout as exc:
        raise Transient(f"timed out after {timeout:g} s") from exc
    except requests.ConnectionError as exc:
        raise Transient(f"connection failed: {type(exc).__name__}") from exc
    status = resp.status_code
    if status == 429 or status >= 500:
        raise Transient(
            f"HTTP {status}", status, retry_after_seconds(resp.headers.get("Retry-After"))
        )
    if not 200 <= status < 300:
        raise Refused(f"HTTP {status}: {resp.text[:200].strip()}", status)
    if out.payload_check == "wecom":
        try:
            answer = resp.json()
        except ValueError:
            raise Refused(f"WeCom answered a non-JSON body: {resp.text[:200]!r}", status) from None
        code = answer.get("errcode", 0) if isinstance(answer, dict) else 0
        if code in WECOM_RETRY_CODES:
            raise Transient(f"WeCom errcode {code}: {answer.get('errmsg')}", status)
        if code != 0:
            raise Refused(f"WeCom errcode {code}: {answer.get('errmsg')}", status)
    return status


def deliver(
    session: requests.Session,
    out: Outgoing,
    policy: Policy,
    stopping: threading.Event,
    on_retry: Callable[[Transient], None] = lambda _e: None,
) -> Result:
    """POST until delivered, refused, or retried for ``policy.max_total`` seconds."""
    backoff = wait_exponential_jitter(
        initial=policy.initial, max=policy.max_backoff, jitter=policy.initial
    )

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, Transient) and exc.retry_after is not None:
            return min(exc.retry_after, policy.max_backoff)
        return float(backoff(state))

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, Transient):
            on_retry(exc)

    def sleep(seconds: float) -> None:
        stopping.wait(seconds)  # a shutdown ends the wait (and, by the stop rule, the retries)

    retrying = Retrying(
        retry=retry_if_exception_type(Transient),
        wait=wait,
        stop=stop_after_delay(policy.max_total) | stop_when_event_set(stopping),
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
    attempts = 0

    def attempt() -> int:
        nonlocal attempts
        attempts += 1
        return post_once(session, out, policy.timeout)

    try:
        status = retrying(attempt)
    except Refused as exc:
        return Result(False, attempts, exc.status, exc.reason)
    except Transient as exc:
        if stopping.is_set():
            raise Stopping(out.key) from exc
        return Result(
            False,
            attempts,
            exc.status,
            f"gave up after {attempts} attempts in {policy.max_total:g} s: {exc.reason}",
        )
    return Result(True, attempts, status, "delivered")
