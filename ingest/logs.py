"""Structured JSON logs (one object per line on stderr), truncated and rate-limited where
callers control what is logged."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson

_STANDARD = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """ts, level, logger, msg, plus every ``extra={...}`` field."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "pid": record.process,
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure(level: str | int = logging.INFO) -> None:
    """Send every log record to stderr as JSON."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


# Caller-controlled values in a log line are cut to this many characters.
FIELD_MAX_CHARS = 200


def truncate(value: object, limit: int = FIELD_MAX_CHARS) -> object:
    """``value`` as it is, or a string cut to ``limit`` characters with the cut length noted."""
    if value is None or isinstance(value, bool | int | float):
        return value
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...(+{len(text) - limit} chars)"


class RateLimitedLog:
    """At most ``per_second`` lines per second (per process); the rest are counted.

    Once a second has passed, the next line is preceded by one line saying how many were
    suppressed (``suppressed`` field); ``flush()`` writes that line at once (at exit).
    Every ``extra`` value is cut by ``truncate``: a caller cannot make a line long.
    """

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        per_second: int = 20,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._what = what
        self._per_second = per_second
        self._clock = clock
        self._lock = threading.Lock()
        self._window_start = clock()
        self._written = 0
        self._suppressed = 0

    def log(self, level: int, msg: str, **fields: object) -> bool:
        """Write one line (True) or count it as suppressed (False)."""
        with self._lock:
            now = self._clock()
            suppressed = 0
            if now - self._window_start >= 1.0:
                suppressed, self._suppressed = self._suppressed, 0
                self._window_start, self._written = now, 0
            write = self._written < self._per_second
            if write:
                self._written += 1
            else:
                self._suppressed += 1
        if suppressed:
            self._report(suppressed)
        if write:
            self._logger.log(level, msg, extra={k: truncate(v) for k, v in fields.items()})
        return write

    def flush(self) -> None:
        """Write the count of lines suppressed so far, if any."""
        with self._lock:
            suppressed, self._suppressed = self._suppressed, 0
        if suppressed:
            self._report(suppressed)

    def _report(self, suppressed: int) -> None:
        self._logger.warning(
            "%d '%s' log lines suppressed (more than %d per second)",
            suppressed,
            self._what,
            self._per_second,
            extra={"suppressed": suppressed, "suppressed_what": self._what},
        )
