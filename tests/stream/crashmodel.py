"""Crash tests' input and their expected finals, computed from the input alone.

``generate`` makes a seeded mix of exceptions and sends on two input topics: in-grace
disorder, duplicate deliveries (same event_id), events far behind (late), and a storm
(one group, one code, a burst). ``expected_finals`` is a reference model written from
the rules in docs/STREAM.md, independent of ``stream/``: per input topic-partition, in
offset order, an event is late when the topic-partition's stream time (max event time
read before it) already reached its window's end + grace; an on-time event counts
unless an earlier counted occurrence of its event_id (same topic-partition, smaller
offset) lies within the dedup span of its event time. Both input topics of every
partition must hold a record before the worker starts (``seed_partitions``), so the
close watermark waits for both from the first event on.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any

import msgspec
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from groupwatch.contracts import Settings
from groupwatch.contracts.keys import window_key
from groupwatch.contracts.records import EventKind, ExceptionEvent, SendEvent
from tests.support.stream import APP, exc, send

APP2 = "1400000002"  # an app without send callbacks: group_sends / failure_ratio None
CODES = [10002, 10004, 10006, 10007, 10016, 80001]
STORM_GROUP = "storm"


@dataclass(frozen=True)
class Plan:
    """The input of one run, in production order (input kind, event)."""

    records: list[tuple[EventKind, ExceptionEvent | SendEvent]]
    t_end: int


def generate(
    seed: int, n: int, t0: int, step_ms: int, *, groups: int = 40, storm_at: float = 0.4
) -> Plan:
    """``n`` base events ``step_ms`` apart in event time from ``t0``, plus duplicates and
    a storm; produced in this order, so event time is disordered by up to 20 s."""
    rng = random.Random(seed)
    names = [f"g{i:02d}" for i in range(groups)]
    out: list[tuple[EventKind, ExceptionEvent | SendEvent]] = []
    storm_from, storm_to = int(n * storm_at), int(n * storm_at) + n // 20
    for i in range(n):
        base = t0 + i * step_ms
        t = base + rng.randint(-20_000, 2_000)  # within the 30 s grace
        if rng.random() < 0.01:
            t = base - rng.randint(150_000, 400_000)  # behind by more than window + grace
        group = names[int(rng.paretovariate(1.1)) % groups]
        app = APP2 if group.endswith("7") else APP
        sender = f"u{rng.randint(0, 30)}"
        if rng.random() < 0.04 and out:  # a duplicate delivery of a recent event
            topic, prev = out[rng.randint(max(0, len(out) - 300), len(out) - 1)]
            out.append((topic, prev))
            continue
        if app == APP and rng.random() < 0.35:
            rnd = rng.getrandbits(31)
            out.append((EventKind.SEND, send(group, t, sender=sender, random=rnd, app=app)))
        else:
            code = CODES[min(int(rng.expovariate(0.7)), len(CODES) - 1)]
            rnd = rng.getrandbits(31)
            out.append((EventKind.EXCEPTION, exc(group, code, t, sender, rnd, app)))
        if storm_from <= i < storm_to:
            for _ in range(3):
                rnd = rng.getrandbits(31)
                storm = exc(STORM_GROUP, 10016, t, sender=f"s{rnd % 50}", random=rnd)
                out.append((EventKind.EXCEPTION, storm))
    return Plan(out, t0 + n * step_ms)


def read_input(settings: Settings, topic: str, timeout: float = 60.0) -> dict[int, list[Any]]:
    """Every record of ``topic`` per partition, in offset order: (offset, decoded event)."""
    typ = ExceptionEvent if topic.endswith(".exceptions") else SendEvent
    consumer = Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": f"crash-model-{time.time_ns()}",
            "enable.auto.commit": False,
        }
    )
    try:
        parts = range(settings.partitions)
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), 10)[1] for p in parts}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        out: dict[int, list[Any]] = {p: [] for p in parts}
        deadline = time.monotonic() + timeout
        while any(len(out[p]) < ends[p] for p in parts):
            assert time.monotonic() < deadline, "input topic not read to its end"
            for msg in consumer.consume(1000, 0.5):
                if msg.error():
                    continue
                out[msg.partition()].append(
                    (msg.offset(), msgspec.json.decode(msg.value(), type=typ))
                )
        for p in parts:
            out[p].sort(key=lambda r: r[0])
        return out
    finally:
        consumer.close()


@dataclass
class _Cell:
    code: int
    n: int = 0
    senders: set[str] | None = None
    first: int | None = None
    last: int | None = None


def _counted(
    records: list[tuple[int, Any]], size: int, grace: int, dedup_ms: int
) -> list[tuple[int, Any]]:
    """The events of one topic-partition that count (on time, not a duplicate)."""
    st: int | None = None
    history: dict[str, list[tuple[int, int]]] = {}
    out = []
    for offset, ev in records:
        t = ev.event_time_ms
        ws = t - t % size
        late = st is not None and st >= ws + size + grace
        st = t if st is None else max(st, t)
        if late:
            continue
        seen = history.setdefault(ev.event_id, [])
        if any(o < offset and abs(t - t2) < dedup_ms for t2, o in seen):
            continue
        seen.append((t, offset))
        out.append((offset, ev))
    return out


def expected_finals(
    settings: Settings, exceptions: dict[int, list[Any]], sends: dict[int, list[Any]]
) -> dict[str, dict[str, Any]]:
    """window key -> the fields of its final record that follow from the input."""
    size, grace = settings.window_seconds * 1000, settings.grace_seconds * 1000
    dedup_ms = settings.dedup_seconds * 1000
    out: dict[str, dict[str, Any]] = {}
    for p in range(settings.partitions):
        cells: dict[tuple[int, str, str, int], _Cell] = {}
        gsends: dict[tuple[int, str, str], int] = {}
        asends: set[tuple[int, str]] = set()
        for _, ev in _counted(sends.get(p, []), size, grace, dedup_ms):
            ws = ev.event_time_ms - ev.event_time_ms % size
            gk = (ws, ev.sdkappid, ev.group_id)
            gsends[gk] = gsends.get(gk, 0) + 1
            asends.add((ws, ev.sdkappid))
        for _, ev in _counted(exceptions.get(p, []), size, grace, dedup_ms):
            t = ev.event_time_ms
            ws = t - t % size
            cell = cells.setdefault(
                (ws, ev.sdkappid, ev.group_id, ev.error_code), _Cell(ev.error_code, senders=set())
            )
            cell.n += 1
            if ev.from_account:
                assert cell.senders is not None
                cell.senders.add(ev.from_account)
            cell.first = t if cell.first is None else min(cell.first, t)
            cell.last = t if cell.last is None else max(cell.last, t)
        totals: dict[tuple[int, str, str], int] = {}
        for (ws, app, grp, _), cell in cells.items():
            totals[(ws, app, grp)] = totals.get((ws, app, grp), 0) + cell.n
        for (ws, app, grp, code), cell in cells.items():
            failures = totals[(ws, app, grp)]
            if (ws, app) in asends:
                group_sends: int | None = gsends.get((ws, app, grp), 0)
                total = failures + group_sends
                ratio = round(failures / total, 6) if total else None
            else:
                group_sends, ratio = None, None
            assert cell.senders is not None
            out[window_key(app, grp, code, ws)] = {
                "failures": cell.n,
                "senders": len(cell.senders),
                "first_event_time_ms": cell.first,
                "last_event_time_ms": cell.last,
                "group_failures": failures,
                "group_sends": group_sends,
                "failure_ratio": ratio,
                "window_start_ms": ws,
                "updated_at_ms": ws + size + grace,
            }
    return out


def compare(
    expected: dict[str, dict[str, Any]], records: list[tuple[str, dict[str, Any]]]
) -> list[str]:
    """Differences between the expected finals and the final records read (empty: exact).

    Every final of a key must be byte-identical (a re-sent final after a crash), every
    expected key must have one, and no other key may.
    """
    problems: list[str] = []
    expected = {k: v for k, v in expected.items() if ":zz-" not in k}
    got: dict[str, dict[str, Any]] = {}
    for key, value in records:
        if not value.get("final") or value["group_id"].startswith("zz-"):
            continue
        if key in got and got[key] != value:
            problems.append(f"{key}: two different finals {got[key]} / {value}")
        got[key] = value
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    if missing:
        problems.append(f"{len(missing)} windows without a final: {missing[:5]}")
    if extra:
        problems.append(f"{len(extra)} unexpected finals: {extra[:5]}")
    wrong = [
        (k, {f: (v, got[k][f]) for f, v in want.items() if got[k][f] != v})
        for k, want in expected.items()
        if k in got and any(got[k][f] != v for f, v in want.items())
    ]
    if wrong:
        problems.append(f"{len(wrong)} finals with other values: {wrong[:3]}")
    return problems
