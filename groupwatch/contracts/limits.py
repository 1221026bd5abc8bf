"""Field ranges of the event records: the numbers every stage checks (docs/INGEST.md).

Plain constants with no imports, so that settings and records can both use them.
"""

from __future__ import annotations

from typing import Final

# ErrorCode is stored as a signed 32-bit integer (DuckDB INTEGER).
ERROR_CODE_MIN: Final = -(2**31)
ERROR_CODE_MAX: Final = 2**31 - 1
# Random and MsgSeq are unsigned 32-bit integers in the Chat API.
UINT32_MAX: Final = 2**32 - 1
# Event and receive times: milliseconds, 2000-01-01T00:00:00Z .. 2100-01-01T00:00:00Z.
EPOCH_MS_MIN: Final = 946_684_800_000
EPOCH_MS_MAX: Final = 4_102_444_800_000
# An EventTime may be at most this far after the time the ingress received the callback.
EVENT_TIME_MAX_AHEAD_MS: Final = 15 * 60 * 1000
# String lengths in characters: generous bounds over the Chat limits (GroupId <= 48
# bytes, UserID <= 32 bytes), so that no caller string is unbounded.
SDKAPPID_MAX_CHARS: Final = 64
EVENT_ID_MAX_CHARS: Final = 64
COMMAND_MAX_CHARS: Final = 64
GROUP_ID_MAX_CHARS: Final = 128
GROUP_TYPE_MAX_CHARS: Final = 32
ACCOUNT_MAX_CHARS: Final = 128
MSG_TYPE_MAX_CHARS: Final = 64
ERROR_INFO_MAX_CHARS: Final = 1024
CLIENT_IP_MAX_CHARS: Final = 64
PLATFORM_MAX_CHARS: Final = 64
# Elements of one message's MsgBody.
MSG_BODY_MAX_ELEMENTS: Final = 256
