"""Prometheus metrics of the stream worker (served on /metrics)."""

from __future__ import annotations

from collections.abc import Collection, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge

from groupwatch.contracts.records import EventKind
from stream.effects import Effects, Outcome

REGISTRY = CollectorRegistry()

RECORDS = Counter(
    "groupwatch_stream_records",
    "Input records by kind (exception/send) and outcome: every record read is exactly one of"
    " counted, duplicate, late, rejected (sent to the DLQ) or replayed (re-read after a"
    " restart, already applied).",
    ["kind", "outcome"],
    registry=REGISTRY,
)
READ = Counter(
    "groupwatch_stream_records_read",
    "Input records read, by kind (equals the sum of groupwatch_stream_records_total).",
    ["kind"],
    registry=REGISTRY,
)
for _kind in EventKind:  # every series present from the start (0), for the identity
    READ.labels(_kind)
    for _outcome in Outcome:
        RECORDS.labels(_kind, _outcome.label)

EVENTS = Counter(
    "groupwatch_stream_events",
    "Input events read, by topic kind (exception/send) and outcome.",
    ["kind", "outcome"],
    registry=REGISTRY,
)
LATE = Counter(
    "groupwatch_stream_late_events",
    "Events that arrived after their window closed (sent to the late-events topic).",
    ["kind"],
    registry=REGISTRY,
)
DUPLICATES = Counter(
    "groupwatch_stream_duplicates_dropped",
    "Events not counted because their event_id was counted within the dedup window.",
    ["kind"],
    registry=REGISTRY,
)
WINDOWS_OPENED = Counter(
    "groupwatch_stream_windows_opened", "Windows opened (per partition).", registry=REGISTRY
)
WINDOWS_CLOSED = Counter(
    "groupwatch_stream_windows_closed", "Windows closed (per partition).", registry=REGISTRY
)
FINALS = Counter(
    "groupwatch_stream_finals", "final: true failure-window records sent.", registry=REGISTRY
)
UPDATES = Counter(
    "groupwatch_stream_updates", "final: false failure-window records sent.", registry=REGISTRY
)
ALERTS = Counter("groupwatch_stream_alerts", "Alert records sent.", registry=REGISTRY)
INVALID = Counter(
    "groupwatch_stream_invalid_input",
    "Input records rejected to the DLQ (could not be decoded or applied).",
    ["topic"],
    registry=REGISTRY,
)
INPUT_GAPS = Counter(
    "groupwatch_stream_input_gaps",
    "Fetched runs that skipped input records never applied (refused, partition sought back).",
    ["topic"],
    registry=REGISTRY,
)
OPEN_WINDOWS = Gauge(
    "groupwatch_stream_open_windows", "Windows open on this worker.", registry=REGISTRY
)
LAG = Gauge(
    "groupwatch_stream_lag",
    "Records not yet processed per assigned input partition (highwater - position).",
    ["topic", "partition"],
    registry=REGISTRY,
)
FENCED_BATCHES = Counter(
    "groupwatch_stream_fenced_batches",
    "Batches dropped unwritten because the worker no longer held the group generation they"
    " were fetched under (stream/fence.py; read again by the partitions' owner).",
    registry=REGISTRY,
)
CHANGELOG_IGNORED = Counter(
    "groupwatch_stream_changelog_ignored",
    "State changelog records a restore skipped: written under an ownership older"
    " than one already applied (a late write of a worker that lost the partition,"
    " stream/epochs.py).",
    registry=REGISTRY,
)
LATE_CHANGELOG_ACKS = Counter(
    "groupwatch_stream_late_changelog_acks",
    "Batches whose state writes were acknowledged after the worker's group membership may"
    " have ended: not marked persisted locally (the next restore reads them again).",
    registry=REGISTRY,
)
DRAINED_BATCHES = Counter(
    "groupwatch_stream_drained_batches",
    "Fetched batches of input records handed whole to the worker by the batch drain"
    " (stream/faust_compat.py, the fast path; Faust's per-record agent path is refused).",
    registry=REGISTRY,
)


def count_records(read: Mapping[EventKind, int], effects: Collection[Effects]) -> None:
    """Count one batch's records read and their outcomes (the accounting identity)."""
    for kind, n in read.items():
        if n:
            READ.labels(kind).inc(n)
    for kind in EventKind:
        for outcome in Outcome:
            n = 0
            for fx in effects:
                n += fx.outcomes[kind][outcome]
            if n:
                RECORDS.labels(kind, outcome.label).inc(n)
                if outcome is not Outcome.REJECTED:
                    EVENTS.labels(kind, outcome.label).inc(n)
                if outcome is Outcome.DUPLICATE:
                    DUPLICATES.labels(kind).inc(n)
                elif outcome is Outcome.LATE:
                    LATE.labels(kind).inc(n)
