"""Topic names and their configuration: the one list every stage and `topics create` use."""

from __future__ import annotations

from dataclasses import dataclass, field

from groupwatch.contracts.settings import Settings

# Suffixes after the configurable prefix (default "groupwatch").
EXCEPTIONS = "exceptions"
SENDS = "sends"
DLQ = "dlq"
FAILURE_WINDOWS = "failure-windows"
LATE_EVENTS = "late-events"
ALERTS = "alerts"
NOTIFY_FAILURES = "notify-failures"

HOUR_MS = 3_600_000


@dataclass(frozen=True)
class TopicSpec:
    """One pipeline topic: its full name and the configs it is created with."""

    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str] = field(default_factory=dict)
    doc: str = ""


@dataclass(frozen=True)
class Topics:
    """The full topic names for one prefix."""

    exceptions: str
    sends: str
    dlq: str
    failure_windows: str
    late_events: str
    alerts: str
    notify_failures: str

    @classmethod
    def for_prefix(cls, prefix: str) -> Topics:
        return cls(
            exceptions=f"{prefix}.{EXCEPTIONS}",
            sends=f"{prefix}.{SENDS}",
            dlq=f"{prefix}.{DLQ}",
            failure_windows=f"{prefix}.{FAILURE_WINDOWS}",
            late_events=f"{prefix}.{LATE_EVENTS}",
            alerts=f"{prefix}.{ALERTS}",
            notify_failures=f"{prefix}.{NOTIFY_FAILURES}",
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> Topics:
        return cls.for_prefix(settings.topic_prefix)


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """Every topic the pipeline uses, with partitions and configs from the settings."""
    t = Topics.from_settings(settings)
    retention = str(settings.retention_hours * HOUR_MS)
    long_retention = str(max(settings.retention_hours, 720) * HOUR_MS)
    events = {"cleanup.policy": "delete", "retention.ms": retention}
    n, rf = settings.partitions, settings.replication_factor
    return [
        TopicSpec(t.exceptions, n, rf, events, "normalized Group.CallbackSendMsgException events"),
        TopicSpec(t.sends, n, rf, events, "normalized Group.CallbackAfterSendMsg events"),
        TopicSpec(
            t.dlq,
            n,
            rf,
            # a stream reject keeps the exact bytes of an input record (up to the broker's
            # 1 MiB) in base64: records up to 4 MiB
            {
                "cleanup.policy": "delete",
                "retention.ms": long_retention,
                "max.message.bytes": str(4 * 1024 * 1024),
            },
            "rejected callback payloads with the reason",
        ),
        TopicSpec(
            t.failure_windows,
            n,
            rf,
            # keyed latest state: compaction keeps the newest (final) record per window key
            {
                "cleanup.policy": "compact,delete",
                "retention.ms": long_retention,
                "min.cleanable.dirty.ratio": "0.5",
                "segment.ms": str(HOUR_MS),
            },
            "window aggregates per group x error code, full state per key",
        ),
        TopicSpec(t.late_events, n, rf, events, "events that arrived after their window closed"),
        TopicSpec(
            t.alerts,
            n,
            rf,
            {"cleanup.policy": "delete", "retention.ms": long_retention},
            "failure spikes per group and window",
        ),
        TopicSpec(
            t.notify_failures,
            n,
            rf,
            {"cleanup.policy": "delete", "retention.ms": long_retention},
            "alert messages a channel refused or that never got through, and malformed alerts",
        ),
    ]
