"""Why a callback was refused: one exception type carrying the HTTP status and the reason."""

from __future__ import annotations


class Rejected(Exception):
    """A request the ingress refuses; ``dlq`` says whether its payload goes to the DLQ.

    ``error_code`` is the ``ErrorCode`` of the Tencent-style reply (the HTTP status, so
    never 0); ``field`` names the offending field when there is one.
    """

    def __init__(
        self, status: int, reason: str, *, field: str | None = None, dlq: bool = False
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.field = field
        self.dlq = dlq

    @property
    def error_code(self) -> int:
        return self.status


class SpoolFull(Exception):
    """The broker did not ack and the spool is at its size cap: the event cannot be kept."""
