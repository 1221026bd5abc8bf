"""Batch application on a real DuckDB file (no Kafka): keys, overrides, idempotence."""

from __future__ import annotations

import itertools
from pathlib import Path

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics.apply import apply_batch, prune_send_ids, stored_offsets
from analytics.batch import RawMessage, collate
from analytics.db import open_writer
from analytics.migrations import LATEST, SchemaTooNewError, current_version, migrate
from groupwatch.contracts import Topics
from groupwatch.contracts.records import FailureWindow, encode
from tests.analytics import reference as ref
from tests.support import events as f

T = Topics.for_prefix("unit")


def fresh(tmp: Path) -> duckdb.DuckDBPyConnection:
    con = open_writer(tmp / "db.duckdb", tmp / "snap.duckdb")
    migrate(con)
    return con


def messages(topic: str, records: list[bytes], start: int = 0) -> list[RawMessage]:
    return [RawMessage(topic, 0, start + i, r) for i, r in enumerate(records)]


def test_migrations_are_versioned_and_idempotent(tmp_path: Path) -> None:
    con = open_writer(tmp_path / "db.duckdb", tmp_path / "snap.duckdb")
    assert current_version(con) == 0
    assert migrate(con) == list(range(1, LATEST + 1))
    assert migrate(con) == []
    names = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    assert {"exceptions", "failure_windows", "sends_minutely", "alerts", "kafka_offsets"} <= names
    views = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views()").fetchall()}
    assert {
        "failure_trend_minute",
        "top_groups_24h",
        "error_breakdown",
        "failure_ratio_by_group",
    } <= views
    types = dict(
        con.execute(
            "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = 'exceptions'"
        ).fetchall()
    )
    assert types["event_time"] == "TIMESTAMP WITH TIME ZONE"
    con.execute("INSERT INTO schema_version VALUES (999, 'future', now())")
    with pytest.raises(SchemaTooNewError, match="999"):
        migrate(con)


def test_writer_connection_is_locked_down(tmp_path: Path) -> None:
    con = fresh(tmp_path)
    with pytest.raises(duckdb.PermissionException):
        con.execute("SELECT * FROM read_csv('/etc/passwd')").fetchall()
    with pytest.raises(duckdb.Error, match="locked"):
        con.execute("SET enable_external_access = true")
    assert con.execute("SELECT current_setting('autoinstall_known_extensions')").fetchall() == [
        (False,)
    ]


def test_a_batch_applied_twice_changes_nothing(tmp_path: Path) -> None:
    con = fresh(tmp_path)
    b = f.BASE_MS
    exc = [f.exception("1", f"g{i % 10 % 3}", "u", i % 10, b + i) for i in range(30)]
    snd = [f.send("1", "g0", "u", i % 5, b + i * 20_000) for i in range(12)]
    batch = collate(
        messages(T.exceptions, [encode(e) for e in exc])
        + messages(T.sends, [encode(e) for e in snd])
        + messages(T.alerts, [b"{broken"]),
        T,
    )
    apply_batch(con, batch)
    first = ref.actual_tables(con)
    apply_batch(con, batch)
    assert ref.actual_tables(con) == first
    assert first["exceptions"] == ref.expected_exceptions(exc)
    assert first["exceptions_rows"] == 10
    assert first["sends"] == ref.expected_sends(snd)
    assert con.execute("SELECT count(*) FROM sink_rejects").fetchall() == [(1,)]
    assert stored_offsets(con) == {(T.exceptions, 0): 30, (T.sends, 0): 12, (T.alerts, 0): 1}


WINDOW = st.builds(
    lambda n, final, upd, code: f.window(
        "1", "g", code, f.BASE_MS, n, final=final, updated_ms=f.BASE_MS + upd
    ),
    st.integers(1, 40),
    st.booleans(),
    st.integers(0, 10_000),
    st.sampled_from([10004, 10006]),
)


@settings(max_examples=40, deadline=None)
@given(records=st.lists(WINDOW, min_size=1, max_size=12), split=st.integers(0, 12))
def test_window_upserts_do_not_depend_on_batching_or_order(
    tmp_path_factory: pytest.TempPathFactory, records: list[FailureWindow], split: int
) -> None:
    con = fresh(tmp_path_factory.mktemp("win"))
    parts = [records[:split], records[split:]]
    offset = 0
    for part in parts:
        if part:
            apply_batch(
                con, collate(messages(T.failure_windows, [encode(r) for r in part], offset), T)
            )
            offset += len(part)
    got = ref.actual_tables(con)["windows"]
    assert got == ref.expected_windows(records)
    # one batch in reverse order gives the same table
    con2 = fresh(tmp_path_factory.mktemp("win"))
    apply_batch(
        con2, collate(messages(T.failure_windows, [encode(r) for r in reversed(records)]), T)
    )
    assert ref.actual_tables(con2)["windows"] == got


def test_final_wins_and_counts_never_go_backwards(tmp_path: Path) -> None:
    con = fresh(tmp_path)
    s = f.BASE_MS
    seq = [
        f.window("1", "g", 10004, s, 5, final=False, updated_ms=s + 1),
        f.window("1", "g", 10004, s, 3, final=False, updated_ms=s + 2),  # backwards: ignored
        f.window("1", "g", 10004, s, 6, final=True, updated_ms=s + 3),
        f.window("1", "g", 10004, s, 60, final=False, updated_ms=s + 4),  # after final
    ]
    seen = []
    for i, r in enumerate(seq):
        apply_batch(con, collate(messages(T.failure_windows, [encode(r)], i), T))
        seen.append(con.execute("SELECT failures, final FROM failure_windows").fetchall()[0])
    assert seen == [(5, False), (5, False), (6, True), (6, True)]


def test_alerts_keep_the_newest_raise(tmp_path: Path) -> None:
    con = fresh(tmp_path)
    s = f.BASE_MS
    alerts = [f.alert("1", "g", s, 30, s + 10), f.alert("1", "g", s, 40, s + 20)]
    for order in itertools.permutations(alerts):
        c = fresh(tmp_path / str(id(order)))
        apply_batch(c, collate(messages(T.alerts, [encode(a) for a in order]), T))
        assert c.execute("SELECT failures FROM alerts").fetchall() == [(40,)]
    apply_batch(con, collate(messages(T.alerts, [encode(alerts[1])]), T))
    apply_batch(con, collate(messages(T.alerts, [encode(alerts[0])], 1), T))
    assert con.execute("SELECT failures, top_error_codes FROM alerts").fetchall() == [
        (40, [{"error_code": 10004, "error_category": "invalid_param", "failures": 40}])
    ]


def test_send_ids_are_forgotten_after_the_retention(tmp_path: Path) -> None:
    con = fresh(tmp_path)
    day = 86_400_000
    old = [f.send("1", "g", "u", i, f.BASE_MS) for i in range(3)]
    new = [f.send("1", "g", "u", 100 + i, f.BASE_MS + 3 * day) for i in range(2)]
    apply_batch(con, collate(messages(T.sends, [encode(e) for e in old + new]), T))
    assert prune_send_ids(con) == 3
    assert con.execute("SELECT count(*) FROM send_ids").fetchall() == [(2,)]
    # the per-minute counts are kept
    assert con.execute("SELECT sum(sends)::BIGINT FROM sends_minutely").fetchall() == [(5,)]


def test_already_stored_ids_in_a_batch_of_distinct_ids_are_inserted_once(
    tmp_path: Path,
) -> None:
    """Distinct ids in the batch, some already stored: the whole batch still applies."""
    con = fresh(tmp_path)
    b = f.BASE_MS
    exc = [f.exception("1", f"g{i % 3}", "u", i, b + i, code=10004 + i % 2) for i in range(8)]
    snd = [f.send("1", "g0", "u", i, b + i * 1000) for i in range(4)]
    apply_batch(con, collate(messages(T.exceptions, [encode(e) for e in exc[:5]]), T))
    # redelivered under new offsets (as an ingest retry would): ids 3 and 4 again, plus
    # new ids, sends and a bad record, in one batch whose event ids are all distinct
    batch = collate(
        messages(T.exceptions, [encode(e) for e in exc[3:]], 5)
        + messages(T.sends, [encode(e) for e in snd])
        + messages(T.alerts, [b"{broken"]),
        T,
    )
    apply_batch(con, batch)
    tables = ref.actual_tables(con)
    assert tables["exceptions"] == ref.expected_exceptions(exc)
    assert tables["exceptions_rows"] == 8
    assert tables["sends"] == ref.expected_sends(snd)
    assert con.execute("SELECT count(*) FROM sink_rejects").fetchall() == [(1,)]
    assert stored_offsets(con) == {(T.exceptions, 0): 10, (T.sends, 0): 4, (T.alerts, 0): 1}
    # and nothing is left registered or open: the next batch applies normally
    apply_batch(con, collate(messages(T.exceptions, [encode(exc[0])], 10), T))
    assert stored_offsets(con)[(T.exceptions, 0)] == 11
    assert ref.actual_tables(con)["exceptions_rows"] == 8
