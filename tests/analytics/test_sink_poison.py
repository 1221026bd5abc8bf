"""No poison pill: records no column can hold, produced straight to every topic the sink reads.

The real sink process against the real broker: it stays up, stores every good record,
keeps each bad one in ``sink_rejects`` with its exact bytes, and counts every consumed
record exactly once (``groupwatch_sink_records_total``).
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import msgspec
import orjson
import pytest
import requests

from groupwatch.contracts import Settings, Topics
from groupwatch.contracts.records import Alert, ExceptionEvent, FailureWindow, SendEvent, encode
from tests.analytics.test_sink import sink_settings
from tests.support import events as f
from tests.support.kafka import produce
from tests.support.sink import SinkProcess

pytestmark = pytest.mark.kafka

TYPES: dict[str, type[msgspec.Struct]] = {
    "exceptions": ExceptionEvent,
    "sends": SendEvent,
    "failure-windows": FailureWindow,
    "alerts": Alert,
}


def with_fields(record: msgspec.Struct, **fields: object) -> bytes:
    """The record's JSON with fields replaced by raw JSON values (any size, any type)."""
    data = orjson.loads(encode(record))
    text = orjson.dumps(data)
    for name, value in fields.items():
        data[name] = f"@@{name}@@"
        text = orjson.dumps(data)
        raw = value if isinstance(value, bytes) else str(value).encode()
        text = text.replace(f'"@@{name}@@"'.encode(), raw)
    return text


def poison() -> dict[str, list[bytes]]:
    """Bad or odd records per topic suffix; each gets a distinct event id / key."""
    e = [f.exception("1400000001", f"p{i}", "u", i, f.BASE_MS + i, 10004) for i in range(40)]
    s = [f.send("1400000001", f"p{i}", "u", i, f.BASE_MS + i) for i in range(10)]
    w = [
        f.window("1400000001", f"pw{i}", 10004, f.BASE_MS, 3, final=False, updated_ms=f.BASE_MS)
        for i in range(6)
    ]
    a = f.alert("1400000001", "pa", f.BASE_MS, 50, f.BASE_MS + 60_000)
    year_5000, year_10000 = 95_617_584_000_000, 253_402_300_800_000
    exceptions = [
        b"not json at all {",
        b"",
        b"[1, 2, 3]",
        b"null",
        b'{"event_id": {"nested": [[[{"deep": [1, {"x": null}]}]]]}}',
        with_fields(e[0], error_code=2**31),
        with_fields(e[1], error_code=2**40),
        with_fields(e[2], error_code=-(2**31) - 1),
        with_fields(e[3], event_time_ms=year_5000),
        with_fields(e[4], event_time_ms=-1),
        with_fields(e[5], event_time_ms=year_10000),
        with_fields(e[6], event_time_ms=2**62),
        with_fields(e[7], received_at_ms=2**63 - 1),
        with_fields(e[8], error_code='"10004"'),
        with_fields(e[9], event_time_ms='"soon"'),
        with_fields(e[10], random=2**64 - 1),
        with_fields(e[11], random=2**70),
        with_fields(e[12], group_id=b'"\xff\xfe bad utf-8"'),
        with_fields(e[13], error_info=orjson.dumps("x" * 900_000)),
        with_fields(e[14], extra=b'{"a": [{"b": {"c": [1, [2, [3, {"d": null}]]]}}]}'),
        with_fields(e[15], msg_types=b'[1, {"x": 2}]'),
        with_fields(e[16], error_category='"no such category"'),
        with_fields(e[17], group_id=b'"\\ud800 lone surrogate"'),
        with_fields(e[18], event_id=b'""'),
    ]
    sends = [
        b"\x00\x01\x02 binary",
        with_fields(s[0], random=2**70),
        with_fields(s[1], event_time_ms=2**62),
        with_fields(s[2], event_time_ms=year_10000),
        with_fields(s[3], msg_seq='"seq"'),
    ]
    windows = [
        b'{"garbage": true}',
        with_fields(w[0], error_code=2**40),
        with_fields(w[1], window_start_ms=2**62),
        with_fields(w[2], failures=2**64 - 1),
        with_fields(w[3], failures_per_minute='"fast"'),
        b"\xff\xfe\xfd",
    ]
    codes = b'[{"error_code": 1099511627776, "error_category": "internal", "failures": 1}]'
    alerts = [b"{", b'{"reason": "threshold"}', with_fields(a, top_error_codes=codes)]
    return {"exceptions": exceptions, "sends": sends, "failure-windows": windows, "alerts": alerts}


def good(n: int) -> dict[str, list[bytes]]:
    e = [f.exception("1400000002", f"g{i % 7}", f"u{i}", i, f.BASE_MS + i, 10006) for i in range(n)]
    s = [f.send("1400000002", f"g{i % 7}", f"u{i}", i, f.BASE_MS + i) for i in range(n)]
    w = [
        f.window("1400000002", f"gw{i}", 10006, f.BASE_MS, i + 1, final=True, updated_ms=f.BASE_MS)
        for i in range(n // 4)
    ]
    return {
        "exceptions": [encode(x) for x in e],
        "sends": [encode(x) for x in s],
        "failure-windows": [encode(x) for x in w],
        "alerts": [],
    }


def storable(kind: str, raw: bytes) -> bool:
    """What the sink must do with ``raw``: the contract decides, then the column ranges."""
    try:
        record = msgspec.json.decode(raw, type=TYPES[kind])
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError):
        return False
    limits = {
        "error_code": (-(2**31), 2**31 - 1),
        "random": (-(2**63), 2**63 - 1),
        "failures": (-(2**63), 2**63 - 1),
    }
    if not isinstance(record, ExceptionEvent):
        del limits["random"]  # a send's random is not stored
    for name, (low, high) in limits.items():
        value = getattr(record, name, None)
        if isinstance(value, int) and not low <= value <= high:
            return False
    for name in record.__struct_fields__:
        value = getattr(record, name)
        if not (name.endswith("_ms") and isinstance(value, int)):
            continue
        if not -62_135_596_800_000 <= value <= 253_402_300_799_999:
            return False
    if isinstance(record, Alert):
        return all(-(2**31) <= c.error_code < 2**31 for c in record.top_error_codes)
    return True


def topic_of(topics: Topics, kind: str) -> str:
    return {
        "exceptions": topics.exceptions,
        "sends": topics.sends,
        "failure-windows": topics.failure_windows,
        "alerts": topics.alerts,
    }[kind]


def interleave(goods: list[bytes], bads: list[bytes]) -> list[bytes]:
    out: list[bytes] = []
    step = max(1, len(goods) // max(1, len(bads)))
    for i, bad in enumerate(bads):
        out.extend(goods[i * step : (i + 1) * step])
        out.append(bad)
    out.extend(goods[len(bads) * step :])
    return out


def records_metric(sink: SinkProcess) -> dict[tuple[str, str], float]:
    text = requests.get(f"{sink.url}/metrics", timeout=10).text
    out: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        if line.startswith("groupwatch_sink_records_total{"):
            labels, value = line[len("groupwatch_sink_records_total{") :].split("} ")
            parts = dict(p.split("=") for p in labels.split(","))
            out[(parts["topic"].strip('"'), parts["outcome"].strip('"'))] = float(value)
    return out


def test_poison_records_on_every_topic_become_rejects_and_the_sink_stays_up(
    make_settings: Callable[..., Settings], topics: Topics, tmp_path: Path
) -> None:
    settings = sink_settings(make_settings, sink_batch_rows=500, sink_batch_ms=100)
    bad, fine = poison(), good(200)
    produced: dict[str, list[bytes]] = {}
    for kind in TYPES:
        values = interleave(fine[kind], bad[kind])
        produced[kind] = values
        # null keys where the topic allows them (the compacted ones refuse keyless records)
        keyless = kind in ("exceptions", "sends")
        keys = [None if keyless and i % 3 == 0 else b"k%d" % i for i in range(len(values))]
        produce(
            settings.bootstrap_servers, topic_of(topics, kind), list(zip(keys, values, strict=True))
        )
    want_rejects = Counter(
        (topic_of(topics, kind), raw)
        for kind, values in produced.items()
        for raw in values
        if not storable(kind, raw)
    )
    sink = SinkProcess(settings, tmp_path / "sink.log").start()
    try:
        sink.wait_caught_up()
        assert sink.alive(), sink.log_tail()
        rows = sink.sql('SELECT topic, to_base64(raw), error FROM sink_rejects ORDER BY "offset"')
        got = Counter(
            (t, base64.b64decode(r) if r is not None else b"") for t, r, _ in rows["rows"]
        )
        assert got == want_rejects
        assert all(err for _, _, err in rows["rows"])
        stored_ids = {r[0] for r in sink.sql("SELECT event_id FROM exceptions")["rows"]}
        want_ids = {
            msgspec.json.decode(raw, type=ExceptionEvent).event_id
            for raw in produced["exceptions"]
            if storable("exceptions", raw)
        }
        assert stored_ids == want_ids
        sends = sink.sql("SELECT count(*) FROM send_ids")["rows"][0][0]
        assert sends == sum(storable("sends", raw) for raw in produced["sends"])
        windows = sink.sql("SELECT count(*) FROM failure_windows")["rows"][0][0]
        assert windows == sum(storable("failure-windows", r) for r in produced["failure-windows"])
        # the accounting identity, per topic: every consumed record counted exactly once
        metric = records_metric(sink)
        stats = sink.stats()["records"]
        for kind, values in produced.items():
            n_rejects = sum(not storable(kind, raw) for raw in values)
            outcome = {o: metric.get((kind, o), 0) for o in ("stored", "duplicate", "rejected")}
            assert outcome == {
                "stored": len(values) - n_rejects,
                "duplicate": 0,
                "rejected": n_rejects,
            }, (kind, outcome)
            assert {o: n for o, n in stats.get(kind, {}).items() if n} == {
                o: n for o, n in outcome.items() if n
            }
        # a served query reads every stored row, the year-5000 one included
        assert sink.sql("SELECT max(event_time) FROM exceptions")["rows"]
    finally:
        sink.stop()
    # restart: nothing is re-applied, nothing counted again
    sink = SinkProcess(settings, tmp_path / "sink2.log").start()
    try:
        sink.wait_caught_up()
        again = sink.sql("SELECT count(*) FROM sink_rejects")["rows"][0][0]
        assert again == sum(want_rejects.values())
        assert sink.stats()["records"] == {}
    finally:
        sink.stop()
