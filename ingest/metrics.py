"""Prometheus metrics of the ingress (multiprocess-safe when PROMETHEUS_MULTIPROC_DIR is set).

The server sets ``PROMETHEUS_MULTIPROC_DIR`` before this module is imported, so every
worker process writes its samples to shared files and ``/metrics`` sums them.

The two per-request samples (request count, publish latency) are not written to the
shared files on the request path: in multiprocess mode every update takes one global
lock, calls ``getpid()`` and writes the mmap, which under 32 request threads was a
measurable share of a request's CPU (docs/PERFORMANCE-ingest.md). Requests append to
an in-process queue instead (one atomic ``deque.append``), and ``flush()`` folds the
queue into the Prometheus metrics in bulk: the publisher's poll thread calls it every
``FLUSH_INTERVAL_S``, ``render()`` and the publisher's ``close()`` call it too.
"""

from __future__ import annotations

import bisect
import os
import threading
from collections import deque
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from ingest.normalize import FIELDS

REQUESTS = Counter(
    "groupwatch_ingest_requests_total",
    "Callback requests by command and HTTP status.",
    ["command", "status"],
)
PUBLISH_SECONDS = Histogram(
    "groupwatch_ingest_publish_seconds",
    "Time from receiving an event to its durable store, by outcome (delivered/spooled).",
    ["outcome"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.8, 1.0, 1.5, 2.0),
)
SPOOL_RECORDS = Gauge(
    "groupwatch_ingest_spool_records",
    "Spooled events not yet in Kafka (summed over live workers).",
    multiprocess_mode="livesum",
)
SPOOL_BYTES = Gauge(
    "groupwatch_ingest_spool_bytes",
    "Bytes in the spool directory.",
    multiprocess_mode="livemax",
)
SPOOL_FULL = Counter(
    "groupwatch_ingest_spool_full_total",
    "Events answered 503 because the spool was full or unwritable.",
)
DLQ = Counter(
    "groupwatch_ingest_dlq_total", "Rejected payloads written to the DLQ, by field.", ["field"]
)
AUTH_REJECTED = Counter(
    "groupwatch_ingest_auth_rejected_total",
    "Requests refused by the allow-list or the signature check.",
    ["status", "field"],
)
IGNORED = Counter(
    "groupwatch_ingest_ignored_total",
    "Callbacks of commands groupwatch does not analyse (answered OK, not published).",
    ["command"],
)

# Label values never come from the caller as they are: a command name is one of these
# documented Chat callback commands or "other", a field is one the ingress itself names.
KNOWN_COMMANDS = frozenset(
    {
        "Group.CallbackBeforeSendMsg",
        "Group.CallbackAfterSendMsg",
        "Group.CallbackSendMsgException",
        "Group.CallbackBeforeCreateGroup",
        "Group.CallbackAfterCreateGroup",
        "Group.CallbackBeforeApplyJoinGroup",
        "Group.CallbackBeforeInviteJoinGroup",
        "Group.CallbackAfterNewMemberJoin",
        "Group.CallbackAfterMemberExit",
        "Group.CallbackAfterGroupInfoChanged",
        "Group.CallbackAfterGroupDestroyed",
        "Group.CallbackAfterRecallMsg",
        "C2C.CallbackBeforeSendMsg",
        "C2C.CallbackAfterSendMsg",
        "State.StateChange",
        "Sns.CallbackFriendAdd",
        "Sns.CallbackFriendDelete",
    }
)


def command_label(command: str | None) -> str:
    """A bounded label for a caller-supplied command name: known, "other" or "missing"."""
    if not command:
        return "missing"
    return command if command in KNOWN_COMMANDS else "other"


def field_label(field: str | None) -> str:
    """The ``field`` label of a rejection: one of the ingress' own field names, else "other"."""
    if not field:
        return "none"
    return field if field in FIELDS else "other"


_ANALYSED = frozenset({"Group.CallbackSendMsgException", "Group.CallbackAfterSendMsg"})
_request_children: dict[tuple[str, str], Any] = {}
PUBLISHED = {o: PUBLISH_SECONDS.labels(o) for o in ("delivered", "spooled")}

FLUSH_INTERVAL_S = 0.2
_MAX_QUEUED = 50_000  # flush inline past this (nobody is flushing: keep memory bounded)
_requests: deque[tuple[str | None, str]] = deque()
_publishes: deque[tuple[str, float]] = deque()
_flush_lock = threading.Lock()


def count_request(command: str | None, status: str) -> None:
    """Count one callback request by command (analysed ones, else "other") and status."""
    _requests.append((command, status))
    if len(_requests) > _MAX_QUEUED:
        flush()


def observe_publish(outcome: str, seconds: float) -> None:
    """Record one durable store ("delivered" or "spooled") and how long it took."""
    _publishes.append((outcome, seconds))
    if len(_publishes) > _MAX_QUEUED:
        flush()


def _request_child(command: str | None, status: str) -> Any:
    label = command if command in _ANALYSED else ("other" if command else "missing")
    key = (label or "missing", status)
    child = _request_children.get(key)
    if child is None:
        child = _request_children[key] = REQUESTS.labels(*key)
    return child


def _observe_many(child: Any, values: list[float]) -> None:
    """``child.observe(v) for v in values`` with one update per bucket and one for the sum."""
    bounds = getattr(child, "_upper_bounds", None)
    buckets = getattr(child, "_buckets", None)
    total = getattr(child, "_sum", None)
    if bounds is None or buckets is None or total is None:  # another client version
        for value in values:
            child.observe(value)
        return
    counts = [0] * len(bounds)
    for value in values:
        counts[bisect.bisect_left(bounds, value)] += 1  # first bound >= value (le)
    for bucket, count in zip(buckets, counts, strict=True):
        if count:
            bucket.inc(count)
    total.inc(sum(values))


def flush() -> None:
    """Fold the queued per-request samples into the Prometheus metrics (any thread)."""
    with _flush_lock:
        counts: dict[tuple[str | None, str], int] = {}
        while True:
            try:
                key = _requests.popleft()
            except IndexError:
                break
            counts[key] = counts.get(key, 0) + 1
        latencies: dict[str, list[float]] = {}
        while True:
            try:
                outcome, seconds = _publishes.popleft()
            except IndexError:
                break
            latencies.setdefault(outcome, []).append(seconds)
        for (command, status), n in counts.items():
            _request_child(command, status).inc(n)
        for outcome, values in latencies.items():
            _observe_many(PUBLISHED[outcome], values)


def render() -> tuple[bytes, str]:
    """The exposition text of every worker's metrics and its content type."""
    flush()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
