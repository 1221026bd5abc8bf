"""What a dashboard URL may say: the app, the time range, a group, an error code.

Each parser raises ``BadFilter`` (a 400 page) with a sentence naming the parameter; the
values are used only as bound SQL parameters afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from groupwatch.contracts.limits import (
    ERROR_CODE_MAX,
    ERROR_CODE_MIN,
    GROUP_ID_MAX_CHARS,
    SDKAPPID_MAX_CHARS,
)


class BadFilter(ValueError):
    """A malformed URL value (400)."""


class NotFound(LookupError):
    """A well-formed value naming something the data does not know (404)."""


@dataclass(frozen=True)
class Range:
    name: str
    span: timedelta
    bucket: timedelta  # the charts' point spacing

    def window(self, now: datetime | None = None) -> Window:
        end = now or datetime.now(UTC)
        step = self.bucket.total_seconds()
        # the first bucket starts on a bucket boundary, so points do not shift every poll
        start_s = (end - self.span).timestamp() // step * step
        return Window(self, datetime.fromtimestamp(start_s, UTC), end)


@dataclass(frozen=True)
class Window:
    range: Range
    since: datetime
    until: datetime

    def buckets(self) -> list[float]:
        """Every bucket start (epoch seconds) from ``since`` to ``until``."""
        step = self.range.bucket.total_seconds()
        first = self.since.timestamp()
        count = int((self.until.timestamp() - first) // step) + 1
        return [first + i * step for i in range(count)]


RANGES: Final[dict[str, Range]] = {
    r.name: r
    for r in (
        Range("15m", timedelta(minutes=15), timedelta(minutes=1)),
        Range("1h", timedelta(hours=1), timedelta(minutes=1)),
        Range("6h", timedelta(hours=6), timedelta(minutes=5)),
        Range("24h", timedelta(hours=24), timedelta(minutes=15)),
        Range("7d", timedelta(days=7), timedelta(hours=1)),
    )
}
DEFAULT_RANGE: Final = "1h"


def parse_range(value: str | None) -> Range:
    if value is None or value == "":
        return RANGES[DEFAULT_RANGE]
    found = RANGES.get(value)
    if found is None:
        raise BadFilter(f"range must be one of {', '.join(RANGES)}, not {value[:40]!r}")
    return found


def parse_app(value: str | None) -> str | None:
    """The ``app`` parameter (None: not given, the page picks one)."""
    if value is None or value == "":
        return None
    if len(value) > SDKAPPID_MAX_CHARS or not value.isascii() or not value.isprintable():
        raise BadFilter(f"app must be an SdkAppid of at most {SDKAPPID_MAX_CHARS} characters")
    return value


def parse_group(value: str) -> str:
    if not value or len(value) > GROUP_ID_MAX_CHARS or not value.isprintable():
        raise BadFilter(f"a group ID is 1 to {GROUP_ID_MAX_CHARS} printable characters")
    return value


def parse_code(value: str) -> int:
    try:
        code = int(value, 10)
    except ValueError:
        raise BadFilter(f"an error code is an integer, not {value[:40]!r}") from None
    if not ERROR_CODE_MIN <= code <= ERROR_CODE_MAX:
        raise BadFilter(f"an error code is between {ERROR_CODE_MIN} and {ERROR_CODE_MAX}")
    return code
