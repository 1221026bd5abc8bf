"""The state table's values: JSON (orjson) of every stored type, and the legacy layouts.

Every value but the meta carries ``off``, the highest source offset applied to it (dedup
occurrences carry their own offsets). The bytes written here are what a restarted worker
reads back, also from a changelog written by an earlier version: a change must keep
reading what was stored before. The one older layout still read is the per-event-id dedup
entry (``{"k", "id", "h": [[t, offset], ...]}``), which ``decode_dedup`` returns as
occurrences to move into their buckets.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from groupwatch.contracts.records import EventKind
from stream.aggregate import AppId, CodeAgg, Count, GroupId
from stream.alerts import Baseline
from stream.dedup import BucketId, Occurrence
from stream.keys import KIND_TAG, TAG_KIND
from stream.windows import KINDS, StreamClock

_dump = orjson.dumps


# --- meta: per-kind applied offsets and the stream clock ---------------------------------
def encode_meta(offsets: Mapping[EventKind, int], clock: StreamClock) -> bytes:
    return _dump(
        {
            "off": {KIND_TAG[k]: v for k, v in offsets.items()},
            "clock": {
                "st": {KIND_TAG[k]: v for k, v in clock.stream_time.items()},
                "seen": {KIND_TAG[k]: v for k, v in clock.seen.items()},
                "cu": clock.closed_until,
            },
        }
    )


def decode_meta(value: bytes) -> tuple[dict[EventKind, int], StreamClock]:
    d = orjson.loads(value)
    offsets = {k: int(d["off"][KIND_TAG[k]]) for k in KINDS}
    data = d["clock"]
    st = data.get("st") or {}
    seen = data.get("seen") or {}
    assert isinstance(st, dict) and isinstance(seen, dict)
    cu = data.get("cu")
    clock = StreamClock(
        stream_time={k: st.get(KIND_TAG[k]) for k in KINDS},
        seen={k: bool(seen.get(KIND_TAG[k])) for k in KINDS},
        closed_until=cu if isinstance(cu, int) else None,
    )
    return offsets, clock


# --- aggregates ----------------------------------------------------------------------------
def encode_code(agg: CodeAgg) -> bytes:
    return _dump(
        {
            "ws": agg.ws,
            "app": agg.app,
            "grp": agg.grp,
            "code": agg.code,
            "cat": agg.cat,
            "gt": agg.gt,
            "n": agg.n,
            "snd": sorted(agg.senders),
            "first": agg.first,
            "last": agg.last,
            "off": agg.off,
        }
    )


def decode_code(value: bytes) -> CodeAgg:
    d = orjson.loads(value)
    return CodeAgg(
        ws=d["ws"],
        app=d["app"],
        grp=d["grp"],
        code=d["code"],
        cat=d["cat"],
        gt=d.get("gt"),
        n=d["n"],
        senders=set(d["snd"]),
        first=d.get("first"),
        last=d.get("last"),
        off=d["off"],
    )


def encode_group_sends(gk: GroupId, count: Count) -> bytes:
    ws, app, grp = gk
    return _dump({"ws": ws, "app": app, "grp": grp, "n": count.n, "off": count.off})


def decode_group_sends(value: bytes) -> tuple[GroupId, Count]:
    d = orjson.loads(value)
    return (d["ws"], d["app"], d["grp"]), Count(d["n"], d["off"])


def encode_app_sends(ak: AppId, count: Count) -> bytes:
    ws, app = ak
    return _dump({"ws": ws, "app": app, "n": count.n, "off": count.off})


def decode_app_sends(value: bytes) -> tuple[AppId, Count]:
    d = orjson.loads(value)
    return (d["ws"], d["app"]), Count(d["n"], d["off"])


# --- dedup buckets (and the legacy per-event-id entries) -------------------------------------
def encode_bucket(bk: BucketId, entries: Mapping[str, list[Occurrence]]) -> bytes:
    kind, start, chunk = bk
    return _dump({"k": KIND_TAG[kind], "b": start, "c": chunk, "h": entries})


def decode_dedup(
    value: bytes,
) -> tuple[EventKind, list[tuple[str, int, int]], BucketId | None]:
    """(kind, occurrences as (event_id, event time, offset), bucket id or None: legacy).

    A legacy per-event-id entry (before dedup buckets) has no bucket id: its occurrences
    are moved into their buckets and the old key deleted.
    """
    d = orjson.loads(value)
    kind = TAG_KIND[d["k"]]
    if "id" in d:
        return kind, [(d["id"], int(t), int(o)) for t, o in d["h"]], None
    occurrences = [
        (event_id, int(t), int(o)) for event_id, history in d["h"].items() for t, o in history
    ]
    return kind, occurrences, (kind, int(d["b"]), int(d["c"]))


# --- baselines -----------------------------------------------------------------------------
def encode_baseline(app: str, grp: str, b: Baseline) -> bytes:
    return _dump(
        {"app": app, "grp": grp, "b": {"ewma": b.ewma, "ws": b.window_start, "before": b.before}}
    )


def decode_baseline(value: bytes) -> tuple[tuple[str, str], Baseline]:
    d = orjson.loads(value)
    data: dict[str, Any] = d["b"]
    ewma, ws, before = data["ewma"], data["ws"], data.get("before")
    assert isinstance(ewma, int | float) and isinstance(ws, int)
    return (d["app"], d["grp"]), Baseline(
        float(ewma), ws, None if before is None else float(before)
    )
