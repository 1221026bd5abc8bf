"""The simulated world: apps, groups with Zipf-like popularity, members, and the code mix."""

from __future__ import annotations

import bisect
import itertools
import random
from dataclasses import dataclass
from typing import Final

from groupwatch.contracts.catalog import ERROR_CODES
from groupwatch.simulate.signing import App

GROUP_TYPES: Final = ("Public", "Work", "Private", "ChatRoom", "Meeting", "AVChatRoom", "Community")
_GROUP_TYPE_WEIGHTS: Final = (30, 20, 5, 15, 5, 15, 10)
PLATFORMS: Final = ("Android", "iOS", "Web", "Windows", "Mac", "iPad", "RESTAPI", "Unknown")
_PLATFORM_WEIGHTS: Final = (40, 30, 10, 5, 4, 3, 7, 1)
MSG_TYPES: Final = (
    "TIMTextElem",
    "TIMFaceElem",
    "TIMImageElem",
    "TIMSoundElem",
    "TIMCustomElem",
    "TIMVideoFileElem",
    "TIMFileElem",
    "TIMLocationElem",
)
_MSG_TYPE_WEIGHTS: Final = (60, 8, 12, 6, 6, 4, 2, 2)
_ID_ALPHABET: Final = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"

# Codes outside the catalog table: more of the 80xxx content-security family, and codes
# groupwatch does not know at all (kept as they are, category "other").
EXTRA_CONTENT_CODES: Final = (80002, 80004)
UNKNOWN_CODES: Final = (10018, 20009, 70403)

# Relative weight of each error code in ordinary (non-storm) traffic. The seed's four
# scenarios (invalid parameter, frequency limit, non-compliant content, muted) dominate.
CODE_WEIGHTS: Final[dict[int, float]] = {
    10002: 3,
    10003: 1,
    10004: 14,
    10006: 5,
    10007: 5,
    10010: 3,
    10015: 3,
    10016: 6,
    10017: 14,
    10023: 16,
    80001: 14,
    80002: 5,
    80004: 3,
    10018: 1,
    20009: 1,
    70403: 1,
}
STORM_CODES: Final = (10023, 10006)
_STORM_WEIGHTS: Final = (4, 1)

ERROR_INFO: Final[dict[int, str]] = {
    **{code: meaning for code, (meaning, _category) in ERROR_CODES.items()},
    10023: "msg count exceeds limit,please retry later",
    80002: "message content failed the security check",
    80004: "image content failed the security check",
}


@dataclass(frozen=True)
class Group:
    app: App
    group_id: str
    group_type: str
    members: int


class WeightedChoice:
    """Fast repeated weighted choice (cumulative weights + bisect) from one RNG."""

    def __init__(self, items: tuple[object, ...] | list[object], weights: list[float]) -> None:
        if not items or len(items) != len(weights):
            raise ValueError("WeightedChoice needs as many weights as items, at least one")
        self.items = list(items)
        self.cum = list(itertools.accumulate(weights))

    def pick(self, rng: random.Random) -> object:
        return self.items[bisect.bisect_right(self.cum, rng.random() * self.cum[-1])]


def zipf_weights(n: int, s: float = 1.1) -> list[float]:
    """Popularity of rank 1..n: 1/rank**s (a few hot groups, a long tail)."""
    return [1.0 / (rank**s) for rank in range(1, n + 1)]


def make_groups(rng: random.Random, apps: list[App], count: int) -> list[Group]:
    """``count`` groups spread over the apps, most popular first (rank = list position)."""
    if count < 1:
        raise ValueError("--groups must be at least 1")
    types = WeightedChoice(GROUP_TYPES, list(_GROUP_TYPE_WEIGHTS))
    seen: set[str] = set()
    groups: list[Group] = []
    for index in range(count):
        group_type = str(types.pick(rng))
        while True:
            if group_type == "AVChatRoom" and rng.random() < 0.5:
                group_id = f"live_room_{rng.randrange(10**6):06d}"
            else:
                group_id = "@TGS#" + "".join(rng.choice(_ID_ALPHABET) for _ in range(9))
            if group_id not in seen:
                seen.add(group_id)
                break
        members = max(2, int(rng.paretovariate(1.2) * 8))
        groups.append(Group(apps[index % len(apps)], group_id, group_type, min(members, 5000)))
    return groups


def platform_choice() -> WeightedChoice:
    return WeightedChoice(PLATFORMS, list(_PLATFORM_WEIGHTS))


def msg_type_choice() -> WeightedChoice:
    return WeightedChoice(MSG_TYPES, list(_MSG_TYPE_WEIGHTS))


def code_choice() -> WeightedChoice:
    return WeightedChoice(list(CODE_WEIGHTS), list(CODE_WEIGHTS.values()))


def storm_code_choice() -> WeightedChoice:
    return WeightedChoice(STORM_CODES, list(_STORM_WEIGHTS))
