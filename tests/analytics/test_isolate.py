"""Isolating records the store refuses (real DuckDB): only the bad ones become rejects."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import duckdb
import msgspec
import pyarrow as pa
import pytest

from analytics.apply import StoreBroken, isolate
from analytics.batch import RawMessage, constraints_of, contract_violations, unstorable_reason
from analytics.db import open_writer
from analytics.migrations import migrate
from groupwatch.contracts import Settings, Topics
from groupwatch.contracts.records import ExceptionEvent, encode
from tests.support import events as f


def raw_exceptions(topic: str, n: int) -> list[RawMessage]:
    out = []
    for i in range(n):
        e = f.exception("1", "g", f"u{i}", i, f.BASE_MS + i)
        out.append(RawMessage(topic, 0, i, encode(e)))
    return out


def test_only_the_bad_record_is_rejected_and_offsets_cover_all(tmp_path: Path) -> None:
    topics = Topics.from_settings(Settings())
    con = open_writer(tmp_path / "db.duckdb", tmp_path / "snap.duckdb", threads=1)
    migrate(con)
    raws = raw_exceptions(topics.exceptions, 50)
    bad = raws[17]._replace(
        value=raws[17].value.replace(b'"error_code":10004', b'"error_code":2147483648')
    )
    raws[17] = bad
    out = isolate(con, raws, topics, ValueError("the batch failed"))
    # a reject at decode when the contract bounds error_code, else one isolated here
    assert [r.offset for r in out.rejected] in ([17], [])
    assert con.execute("SELECT count(*) FROM exceptions").fetchall() == [(49,)]
    assert con.execute('SELECT "offset", raw FROM sink_rejects').fetchall() == [(17, bad.value)]
    assert con.execute("SELECT next_offset FROM kafka_offsets").fetchall() == [(50,)]


def test_a_broken_store_stops_instead_of_rejecting(tmp_path: Path) -> None:
    topics = Topics.from_settings(Settings())
    con = open_writer(tmp_path / "db.duckdb", tmp_path / "snap.duckdb", threads=1)
    migrate(con)
    con.execute("DROP VIEW IF EXISTS exceptions_by_minute")
    con.execute("ALTER TABLE exceptions RENAME TO gone")  # every insert now fails
    with pytest.raises(StoreBroken, match="control record"):
        isolate(con, raw_exceptions(topics.exceptions, 4), topics, ValueError("failed"))
    assert con.execute("SELECT count(*) FROM sink_rejects").fetchall() == [(0,)]


def test_the_fast_path_honours_the_contracts_constraints() -> None:
    class Ranged(msgspec.Struct):
        n: Annotated[int, msgspec.Meta(ge=0, le=10)]
        s: Annotated[str, msgspec.Meta(min_length=1, max_length=3)] | None = None
        items: Annotated[
            list[Annotated[str, msgspec.Meta(max_length=2)]], msgspec.Meta(max_length=2)
        ] = []

    checks = constraints_of(Ranged)
    ok = pa.table({"n": [0, 10], "s": ["a", None], "items": [["ab"], []]})
    assert contract_violations(ok, checks) == []
    bad = pa.table({"n": [11, 0], "s": ["", "abcd"], "items": [["abc"], ["a", "b", "c"]]})
    assert contract_violations(bad, checks) == ["n", "s", "items", "items"]
    # the real contract only uses constraint kinds the fast path can check
    constraints_of(ExceptionEvent)


def test_a_record_the_database_refuses_is_isolated_in_the_database(tmp_path: Path) -> None:
    topics = Topics.from_settings(Settings())
    con = open_writer(tmp_path / "db.duckdb", tmp_path / "snap.duckdb", threads=1)
    migrate(con)
    # a constraint only the database checks: every stage before it accepts the record
    con.execute("ALTER TABLE exceptions ALTER COLUMN error_info SET NOT NULL")
    raws = raw_exceptions(topics.exceptions, 40)
    for i in (3, 30):
        raws[i] = raws[i]._replace(
            value=raws[i].value.replace(b'"error_info":"error 10004"', b'"error_info":null')
        )
    out = isolate(con, raws, topics, duckdb.ConstraintException("NOT NULL"))
    assert [r.offset for r in out.rejected] == [3, 30]
    assert all("ConstraintException" in r.error for r in out.rejected)
    assert con.execute("SELECT count(*) FROM exceptions").fetchall() == [(38,)]
    assert con.execute("SELECT next_offset FROM kafka_offsets").fetchall() == [(40,)]


def test_a_batch_of_only_unbuildable_records_costs_one_transaction(tmp_path: Path) -> None:
    topics = Topics.from_settings(Settings())
    con = open_writer(tmp_path / "db.duckdb", tmp_path / "snap.duckdb", threads=1)
    migrate(con)
    # failure windows the contract accepts (it bounds no window field) but no column holds
    raws = []
    for i in range(2000):
        w = f.window("1", f"g{i}", 10004, f.BASE_MS, 1, final=False, updated_ms=f.BASE_MS)
        bad = msgspec.structs.replace(w, window_start_ms=2**62) if i % 2 else w
        bad = msgspec.structs.replace(bad, failures=2**64 - 1) if i % 3 == 0 else bad
        raws.append(RawMessage(topics.failure_windows, 0, i, encode(bad)))
    want = [i for i in range(2000) if i % 2 or i % 3 == 0]
    out = isolate(con, raws, topics, ValueError("the batch failed"))
    assert sorted(r.offset for r in out.rejected) == want
    assert all("cannot be stored" in r.error for r in out.rejected)
    assert con.execute("SELECT count(*) FROM sink_rejects").fetchall() == [(len(want),)]
    assert con.execute("SELECT count(*) FROM failure_windows").fetchall() == [(2000 - len(want),)]
    assert len(out.applied) == 1  # good records and every reject in one transaction
    assert con.execute("SELECT next_offset FROM kafka_offsets").fetchall() == [(2000,)]


def test_the_python_screen_checks_what_the_tables_store() -> None:
    from analytics.batch import _STORED_FIELDS, sends_table
    from groupwatch.contracts.records import SendEvent

    send = f.send("1", "g", "u", 1, f.BASE_MS)
    columns = set(sends_table([send]).column_names) - {"seq"}
    stored = {"event_time" if n == "event_time_ms" else n for n in _STORED_FIELDS[SendEvent]}
    assert columns == stored
    # a send's random and receive time are not stored: no reason to refuse them
    odd = SendEvent(**{**msgspec.structs.asdict(send), "random": 2**70, "received_at_ms": 2**62})
    assert unstorable_reason(odd) is None
    assert "outside years" in str(
        unstorable_reason(msgspec.structs.replace(send, event_time_ms=2**62))
    )


def test_every_control_record_is_valid_under_the_contract() -> None:
    from analytics.apply import _controls
    from analytics.batch import record_type

    topics = Topics.from_settings(Settings())
    for topic, raw in _controls(topics).items():
        kind = record_type(topics, topic)
        assert kind is not None
        record = msgspec.json.decode(raw, type=kind)
        assert unstorable_reason(record) is None, topic
