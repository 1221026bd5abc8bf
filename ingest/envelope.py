"""The Kafka record the ingress publishes: what the publisher produces and the spool keeps."""

from __future__ import annotations

import msgspec


class Envelope(msgspec.Struct, array_like=True):
    """One Kafka record, exactly as it will be produced (its array form is spooled as is)."""

    topic: str
    key: bytes | None
    value: bytes
    timestamp_ms: int
    command: str | None = None
