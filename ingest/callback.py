"""One callback request, start to finish: who calls, what command, normalize, store.

Order of checks: SdkAppid present (400) -> allow-list (403) -> signature (401) ->
CallbackCommand present (400) -> other commands answered OK at once -> body size (413)
-> JSON and required fields (400). Rejections after authentication go to the DLQ.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Literal

from groupwatch.contracts import (
    CMD_AFTER_SEND_MSG,
    CMD_SEND_MSG_EXCEPTION,
    DlqRecord,
    Settings,
    Topics,
    encode,
    group_key,
)
from ingest import metrics
from ingest.auth import Authenticator
from ingest.envelope import Envelope
from ingest.errors import Rejected, SpoolFull
from ingest.logs import RateLimitedLog
from ingest.normalize import CallbackContext, normalize_exception, normalize_send, parse_body
from ingest.publisher import Publisher

log = logging.getLogger("ingest.callback")
_lost_log = RateLimitedLog(log, "DLQ record lost")

Handled = Literal["delivered", "spooled", "ignored"]
ReadBody = Callable[[int], bytes]


class CallbackHandler:
    """Turns (query, body) into a stored record or a ``Rejected``."""

    def __init__(
        self,
        settings: Settings,
        publisher: Publisher,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._publisher = publisher
        self._auth = Authenticator.from_settings(settings)
        self._topics = Topics.from_settings(settings)
        self._limit = settings.max_body_bytes
        self._clock = clock

    def handle(self, args: Mapping[str, str], read_body: ReadBody) -> Handled:
        received_at_ms = int(self._clock() * 1000)
        sdkappid = args.get("SdkAppid")
        if not sdkappid:
            raise Rejected(400, "SdkAppid is required", field="SdkAppid")
        try:
            self._auth.check(sdkappid, args.get("Sign"), args.get("RequestTime"))
        except Rejected as exc:
            metrics.AUTH_REJECTED.labels(str(exc.status), metrics.field_label(exc.field)).inc()
            raise
        raw = b""
        try:
            command = args.get("CallbackCommand")
            if not command:
                raw = read_body(self._limit + 1)
                raise Rejected(
                    400, "CallbackCommand is required", field="CallbackCommand", dlq=True
                )
            if command not in (CMD_SEND_MSG_EXCEPTION, CMD_AFTER_SEND_MSG):
                metrics.IGNORED.labels(metrics.command_label(command)).inc()
                return "ignored"
            raw = read_body(self._limit + 1)
            if len(raw) > self._limit:
                raise Rejected(
                    413,
                    f"body is larger than {self._limit} bytes",
                    field="body",
                    dlq=True,
                )
            return self._publisher.publish(
                self._envelope(args, sdkappid, command, raw, received_at_ms)
            )
        except Rejected as exc:
            if exc.dlq:
                self._dead_letter(exc, args, raw, received_at_ms)
            raise

    def _envelope(
        self, args: Mapping[str, str], sdkappid: str, command: str, raw: bytes, received_at_ms: int
    ) -> Envelope:
        ctx = CallbackContext(
            sdkappid=sdkappid,
            command=command,
            received_at_ms=received_at_ms,
            client_ip=args.get("ClientIP"),
            platform=args.get("OptPlatform"),
        )
        body = parse_body(raw)
        if command == CMD_SEND_MSG_EXCEPTION:
            event = normalize_exception(
                body, ctx, keep_message_content=self._settings.keep_message_content
            )
            topic = self._topics.exceptions
        else:
            event = normalize_send(body, ctx)  # type: ignore[assignment]
            topic = self._topics.sends
        return Envelope(
            topic=topic,
            key=group_key(sdkappid, event.group_id).encode(),
            value=encode(event),
            timestamp_ms=event.event_time_ms,
            command=command,
        )

    def _dead_letter(
        self, exc: Rejected, args: Mapping[str, str], raw: bytes, received_at_ms: int
    ) -> None:
        body = raw[: self._limit]
        record = DlqRecord(
            reason=exc.reason,
            field=exc.field,
            sdkappid=args.get("SdkAppid"),
            callback_command=args.get("CallbackCommand"),
            query={k: v for k, v in args.items() if k != "Sign"},
            body=body.decode("utf-8", "replace"),
            body_truncated=len(raw) > self._limit,
            received_at_ms=received_at_ms,
        )
        sdkappid = args.get("SdkAppid")
        env = Envelope(
            topic=self._topics.dlq,
            key=sdkappid.encode() if sdkappid else None,
            value=encode(record),
            timestamp_ms=received_at_ms,
            command=args.get("CallbackCommand") or None,
        )
        try:
            self._publisher.publish(env)
        except SpoolFull:
            _lost_log.log(logging.ERROR, "DLQ record lost: spool full", reason=exc.reason)
            return
        metrics.DLQ.labels(metrics.field_label(exc.field)).inc()
