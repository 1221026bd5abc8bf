"""Error codes of group-message sending and the category each one counts under.

Source: ../shared/protocol/FACTS.md (the Chat error-code tables, restated).
"""

from __future__ import annotations

from typing import Final, Literal

Category = Literal[
    "internal",
    "invalid_param",
    "rate_limited",
    "permission",
    "rejected_by_app",
    "muted",
    "content_filtered",
    "other",
]

CATEGORIES: Final[tuple[Category, ...]] = (
    "internal",
    "invalid_param",
    "rate_limited",
    "permission",
    "rejected_by_app",
    "muted",
    "content_filtered",
    "other",
)

# code -> (meaning, category)
ERROR_CODES: Final[dict[int, tuple[str, Category]]] = {
    10002: ("internal server error", "internal"),
    10003: ("invalid command word", "invalid_param"),
    10004: ("invalid parameter", "invalid_param"),
    10006: ("operation frequency limit", "rate_limited"),
    10007: ("no permission for the operation", "permission"),
    10010: ("group does not exist or was dismissed", "invalid_param"),
    10015: ("no group with that ID", "invalid_param"),
    10016: ("the app backend rejected it through a before-callback", "rejected_by_app"),
    10017: ("sender is muted", "muted"),
    10023: ("message frequency exceeded the limit", "rate_limited"),
    80001: ("text failed content security (sensitive words)", "content_filtered"),
}

CONTENT_SECURITY_RANGE: Final = range(80000, 81000)


def error_category(code: int) -> Category:
    """The category of an error code; unknown codes keep their code and count as other."""
    known = ERROR_CODES.get(code)
    if known is not None:
        return known[1]
    if code in CONTENT_SECURITY_RANGE:
        return "content_filtered"
    return "other"
