"""The state table's key layout: every key of partition p starts with ``"<p>|<type>|"``.

Types: ``m`` the partition meta, ``c`` a code aggregate, ``g`` group sends, ``a`` app
sends, ``d`` a dedup bucket (``<p>|d|<kind tag>|<minute start ms>|<offset // 1000>``; the
older per-event-id layout ``<p>|d|<kind tag>|<event_id>`` is still read), ``b`` an EWMA
baseline. Input kinds are stored by their one-letter tag (``KIND_TAG``). The layout is
what a restarted worker reads back: changing a byte of it loses the stored state.
"""

from __future__ import annotations

from typing import Final

import orjson

from groupwatch.contracts.records import EventKind

KIND_TAG: Final = {EventKind.EXCEPTION: "e", EventKind.SEND: "s"}  # as stored
TAG_KIND: Final = {tag: kind for kind, tag in KIND_TAG.items()}

META, CODE, GROUP_SENDS, APP_SENDS, DEDUP, BASELINE = "m", "c", "g", "a", "d", "b"


def prefix(p: int) -> str:
    """What every key of partition ``p`` starts with."""
    return f"{p}|"


def meta(p: int) -> str:
    return f"{p}|m"


def code(p: int, ws: int, app: str, grp: str, error_code: int) -> str:
    return f"{p}|c|{ws}|" + orjson.dumps([app, grp, error_code]).decode()


def group_sends(p: int, ws: int, app: str, grp: str) -> str:
    return f"{p}|g|{ws}|" + orjson.dumps([app, grp]).decode()


def app_sends(p: int, ws: int, app: str) -> str:
    return f"{p}|a|{ws}|" + orjson.dumps([app]).decode()


def dedup(p: int, kind: EventKind, bucket_start: int, chunk: int) -> str:
    return f"{p}|d|{KIND_TAG[kind]}|{bucket_start}|{chunk}"


def baseline(p: int, app: str, grp: str) -> str:
    return f"{p}|b|" + orjson.dumps([app, grp]).decode()


def key_type(p: int, key: str) -> str:
    """The type letter of a stored key of partition ``p`` (ValueError for another's key)."""
    parts = key.split("|", 3)
    if len(parts) < 2 or parts[0] != str(p):
        raise ValueError(f"table key {key!r} does not belong to partition {p}")
    return parts[1]
