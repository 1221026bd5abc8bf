"""The rollups (analytics/rollups.py) over a real DuckDB fed through the sink's own batch
path, with redelivered and overlapping batches: the tables equal a rollup of the raw rows
computed from scratch, and every dashboard answer read from them equals the same answer
from the raw rows, at every range."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import msgspec
import pytest

from analytics import group_rollup, rollups
from analytics.apply import apply_batch
from analytics.batch import RawMessage, collate
from analytics.dashboard import queries
from analytics.dashboard.filters import RANGES
from analytics.db import open_writer, staging_dir
from analytics.migrations import migrate
from analytics.snapshot import take_snapshot
from groupwatch.contracts import Topics
from groupwatch.contracts.records import ExceptionEvent, SendEvent, encode
from tests.support import events as f

T = Topics.for_prefix("rollups")
NOW = datetime(2026, 12, 7, 10, 37, 23, 456000, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
SPAN_MS = 7 * 24 * 3600 * 1000 + 20 * 60 * 1000  # a bit more than the longest range
APPS = ("1400000001", "1400000002")
CODES = (10004, 10006, 10017, 80001)


def workload(n: int, seed: int = 7) -> tuple[list[ExceptionEvent], list[SendEvent]]:
    rng = random.Random(seed)
    exceptions = []
    for i in range(n):
        # more of them lately, so the short ranges have rows too; a few without a sender
        t = NOW_MS - int(SPAN_MS * rng.random() ** 3)
        e = f.exception(
            rng.choice(APPS), f"g{rng.randrange(12)}", f"u{rng.randrange(40)}", i, t,
            rng.choice(CODES),
        )  # fmt: skip
        if i % 97 == 0:
            e = msgspec.structs.replace(e, from_account=None)
        exceptions.append(e)
    sends = [
        f.send(rng.choice(APPS), f"g{rng.randrange(12)}", "s", i,
               NOW_MS - int(SPAN_MS * rng.random() ** 3))
        for i in range(n // 2)
    ]  # fmt: skip
    return exceptions, sends


class Sink:
    """Batches through ``apply_batch``, offsets per topic as the sink numbers them."""

    def __init__(self, path: Path) -> None:
        self.con = open_writer(path, path.with_name("snap.duckdb"))
        migrate(self.con)

    def apply(self, topic: str, records: list[Any], start: int) -> None:
        raws = [RawMessage(topic, 0, start + i, encode(r)) for i, r in enumerate(records)]
        apply_batch(self.con, collate(raws, T))


def feed(sink: Sink, exceptions: list[ExceptionEvent], sends: list[SendEvent]) -> None:
    """Every record in batches of 100, with redeliveries: each fourth batch again whole,
    each fifth overlapping the one before by half, one batch repeating records inside
    it; a refresh (as before a snapshot) now and then."""
    for topic, records in ((T.exceptions, exceptions), (T.sends, sends)):
        for k, lo in enumerate(range(0, len(records), 100)):
            sink.apply(topic, records[lo : lo + 100], lo)
            if k % 4 == 3:
                sink.apply(topic, records[lo : lo + 100], lo)
            if k % 5 == 4:
                sink.apply(topic, records[lo - 50 : lo + 150], lo - 50)
            if k == 2:
                sink.apply(topic, records[lo : lo + 30] * 2 + records[lo + 30 : lo + 160], lo)
            if k % 3 == 0 and topic == T.exceptions:
                rollups.refresh(sink.con)


def runner(con: duckdb.DuckDBPyConnection) -> queries.Run:
    def run(sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        cur = con.execute(sql, params)
        names = [d[0] for d in cur.description or ()]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    return run


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """The live database after the workload, and a snapshot taken by the sink's code."""
    d = tmp_path_factory.mktemp("rollups")
    sink = Sink(d / "live.duckdb")
    feed(sink, *workload(3000))
    take_snapshot(sink.con.cursor(), d / "snap.duckdb")
    sink.con.close()
    yield d / "live.duckdb", d / "snap.duckdb"


ROLLED = {
    "failures_minutely": "SELECT sdkappid, date_trunc('minute', event_time), error_code, "
    "error_category, count(*) FROM exceptions GROUP BY ALL",
    "group_hourly": "SELECT sdkappid, date_trunc('hour', event_time), group_id, count(*) "
    "FROM exceptions GROUP BY ALL",
    "group_daily": "SELECT sdkappid, date_trunc('day', event_time), group_id, count(*) "
    "FROM exceptions GROUP BY ALL",
    "code_groups_seen": "SELECT sdkappid, error_code, group_id, max(event_time) "
    "FROM exceptions GROUP BY ALL",
    "senders_seen": "SELECT sdkappid, from_account, max(event_time) FROM exceptions "
    "WHERE from_account IS NOT NULL GROUP BY ALL",
    "code_senders_seen": "SELECT sdkappid, error_code, from_account, max(event_time) "
    "FROM exceptions WHERE from_account IS NOT NULL GROUP BY ALL",
    "sends_app_minutely": "SELECT sdkappid, minute, sum(sends) FROM sends_minutely GROUP BY ALL",
    "group_sends_hourly": "SELECT sdkappid, date_trunc('hour', minute), group_id, sum(sends) "
    "FROM sends_minutely GROUP BY ALL",
}
# the group rollup, its ids named and its appended counts summed per key
GROUP_ROLLED = (
    "SELECT g.sdkappid, g.group_id, m.minute, s.from_account, m.error_code, "
    "sum(m.failures)::BIGINT FROM group_senders_minutely m JOIN group_ids g USING (gid) "
    "LEFT JOIN sender_ids s USING (sid) GROUP BY ALL ORDER BY ALL",
    "SELECT sdkappid, group_id, date_trunc('minute', event_time), from_account, error_code, "
    "count(*) FROM exceptions GROUP BY ALL ORDER BY ALL",
)


def check_group_rollup(con: duckdb.DuckDBPyConnection) -> None:
    """The group rollup counts each row once, each id names one group / sender."""
    have, want = (con.execute(sql).fetchall() for sql in GROUP_ROLLED)
    assert have == want, "group_senders_minutely"
    for table, key, ident in (("group_ids", "sdkappid, group_id", "gid"),
                              ("sender_ids", "from_account", "sid")):  # fmt: skip
        dupes = con.execute(
            f"SELECT count(*) - count(DISTINCT {ident}), count(*) - count(DISTINCT ({key})) "
            f"FROM {table}"
        ).fetchall()
        assert dupes == [(0, 0)], table


def test_each_rollup_counts_every_stored_row_once(fed: tuple[Path, Path]) -> None:
    for path in fed:
        con = duckdb.connect(str(path), read_only=True)
        con.execute("SET TimeZone = 'UTC'")
        try:
            stored = con.execute("SELECT count(*) FROM exceptions").fetchall()[0][0]
            assert stored == 3000  # the redeliveries stored nothing twice
            assert con.execute("SELECT rows FROM rollup_state").fetchall() == [(stored,)]
            for table, sql in ROLLED.items():
                have = con.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()
                assert have == con.execute(f"{sql} ORDER BY ALL").fetchall(), table
            check_group_rollup(con)
        finally:
            con.close()


def test_the_snapshots_per_group_rollups_are_in_group_order(fed: tuple[Path, Path]) -> None:
    """take_snapshot rewrites the copy's per-group rollups in group order, same columns
    and keys."""
    live, snap = (duckdb.connect(str(p), read_only=True) for p in fed)
    try:
        columns = (
            "SELECT column_name, data_type, is_nullable FROM duckdb_columns() "
            "WHERE table_name = 'group_senders_minutely' ORDER BY column_index"
        )
        assert snap.execute(columns).fetchall() == live.execute(columns).fetchall()
        for order in (
            "SELECT gid, minute FROM group_senders_minutely ORDER BY rowid",
            "SELECT sdkappid, group_id, hour FROM group_sends_hourly ORDER BY rowid",
        ):
            rows = snap.execute(order).fetchall()
            assert rows == sorted(rows)
            assert live.execute(order).fetchall() != rows  # the live one in write order
        keys = "SELECT * FROM duckdb_constraints() WHERE table_name = 'group_sends_hourly'"
        assert len(snap.execute(keys).fetchall()) == len(live.execute(keys).fetchall())
    finally:
        live.close()
        snap.close()


def answers(run: queries.Run, rng: str, rollups_on: bool) -> dict[str, Any]:
    w = RANGES[rng].window(NOW)
    out: dict[str, Any] = {}
    for app in APPS:
        out[app] = {
            "overview": queries.overview(run, app, w, rollups_on),
            "groups": [
                queries.group(run, app, w, g, rollups_on) for g in ("g0", "g5", "g11", "g99")
            ],
            "codes": [queries.code(run, app, w, c, rollups_on) for c in (*CODES, 10002)],
        }
    return out


@pytest.mark.parametrize("rng", list(RANGES))
def test_answers_from_the_rollups_equal_the_raw_rows(fed: tuple[Path, Path], rng: str) -> None:
    con = duckdb.connect(str(fed[1]), read_only=True)
    con.execute("SET TimeZone = 'UTC'")
    try:
        run = runner(con)
        assert queries.rollups_whole(run)
        assert queries.rollups_whole(run)
        w = RANGES[rng].window(NOW)
        assert queries.reading(run, APPS[0], w) == queries.Reading(rollups=True, seen=True)
        rolled = answers(run, rng, True)
        assert rolled == answers(run, rng, False)
        # and the totals against the plain statements
        for app in APPS:
            raw = con.execute(
                "SELECT count(*), count(DISTINCT group_id), count(DISTINCT from_account) "
                "FROM exceptions WHERE sdkappid = $a AND event_time >= $s AND event_time <= $u",
                {"a": app, "s": w.since, "u": w.until},
            ).fetchall()[0]
            t = rolled[app]["overview"]["totals"]
            assert (t["failures"], t["groups"], t["senders"]) == raw
            assert raw[0] > 0
            # and a group's page against the plain statements
            g = rolled[app]["groups"][0]
            plain = con.execute(
                "SELECT count(*), count(DISTINCT from_account) FROM exceptions "
                "WHERE sdkappid = $a AND group_id = 'g0' AND event_time >= $s "
                "AND event_time <= $u",
                {"a": app, "s": w.since, "u": w.until},
            ).fetchall()[0]
            assert (g["totals"]["failures"], g["totals"]["senders"]) == plain
            assert bool(g["top_senders"]) == (plain[0] > 0)
            assert rng != "7d" or plain[0] > queries.LATEST  # the latest rows' bound used
            newest = {"app": app, "group": "g0", "since": w.since, "until": w.until}
            assert g["latest"] == runner(con)(queries.LATEST_EXCEPTIONS, newest)
    finally:
        con.close()


def test_a_group_is_known_from_the_rollups_as_from_the_raw_rows(fed: tuple[Path, Path]) -> None:
    con = duckdb.connect(str(fed[1]), read_only=True)
    try:
        run = runner(con)
        assert queries.rollups_whole(run)
        only_sent = con.execute(  # a group with sends but no exception, if the data has one
            "SELECT sdkappid, group_id FROM sends_minutely "
            "ANTI JOIN exceptions USING (sdkappid, group_id) LIMIT 1"
        ).fetchall()
        cases = [(a, g) for a in APPS for g in ("g0", "g11", "nope", "g0'")] + only_sent
        known = {case: queries.group_known(run, *case, rollups=True) for case in cases}
        assert known == {case: queries.group_known(run, *case, rollups=False) for case in cases}
        assert known[(APPS[0], "g0")] and not known[(APPS[0], "nope")]
        assert queries.group_known(run, APPS[0], "g0")  # whole rollups: read by default
    finally:
        con.close()


def test_a_group_rollup_counting_rows_twice_is_caught(
    fed: tuple[Path, Path], tmp_path: Path
) -> None:
    """The checks above have teeth: the group rollup's statements run again over rows it
    already holds (a refresh that did not record its range) make them fail."""
    copy = tmp_path / "twice.duckdb"
    copy.write_bytes(fed[1].read_bytes())
    con = duckdb.connect(str(copy))
    con.execute("SET TimeZone = 'UTC'")
    try:
        rows = "(SELECT * FROM exceptions WHERE rowid >= 2000 AND rowid < 2100)"
        con.execute(";\n".join(group_rollup.refresh_sql(rows))).fetchall()
        with pytest.raises(AssertionError, match="group_senders_minutely"):
            check_group_rollup(con)
        run = runner(con)
        assert queries.rollups_whole(run)  # rollup_state cannot see it
        assert answers(run, "7d", True) != answers(run, "7d", False)
    finally:
        con.close()


def test_rows_dated_after_the_range_and_stale_rollups_fall_back_to_raw_rows(
    tmp_path: Path,
) -> None:
    sink = Sink(tmp_path / "live.duckdb")
    exceptions, sends = workload(600, seed=3)
    feed(sink, exceptions, sends)
    # a sender whose clock is ahead: seen after the range's end, not in it
    ahead = f.exception(APPS[0], "g1", "u-ahead", 10**6, NOW_MS + 120_000)
    late = f.exception(APPS[0], "g1", "u-ahead", 10**6 + 1, NOW_MS - 3 * 3600_000)
    sink.apply(T.exceptions, [ahead, late], 10_000)
    run = runner(sink.con)
    assert not queries.rollups_whole(run)  # rows after the last refresh
    stale = {rng: answers(run, rng, False) for rng in RANGES}
    assert {rng: answers(run, rng, None) for rng in RANGES} == stale
    rollups.refresh(sink.con)
    assert queries.rollups_whole(run)
    for rng in RANGES:
        w = RANGES[rng].window(NOW)
        assert not queries.seen_valid(run, APPS[0], w)
        assert queries.seen_valid(run, APPS[1], w)
        assert answers(run, rng, True) == stale[rng]
    sink.con.close()


def test_a_copy_gets_the_rows_committed_after_the_live_refresh(tmp_path: Path) -> None:
    """What take_snapshot does inside its transaction, with the live rollups behind."""
    sink = Sink(tmp_path / "live.duckdb")
    exceptions, sends = workload(400, seed=5)
    feed(sink, exceptions[:300], sends)
    rollups.refresh(sink.con)
    sink.apply(T.exceptions, exceptions[300:], 300)
    copy = staging_dir(tmp_path / "snap.duckdb").resolve() / "copy.duckdb"  # writable there
    copy.parent.mkdir(parents=True, exist_ok=True)
    cur = sink.con.cursor()
    cur.execute(f"ATTACH '{copy}' AS gw_snapshot")
    cur.execute("BEGIN TRANSACTION")
    cur.execute("COPY FROM DATABASE live TO gw_snapshot")
    assert rollups.refresh(cur, into="gw_snapshot", own=False) > 0
    cur.execute("COMMIT")
    cur.execute("DETACH gw_snapshot")
    assert cur.execute("SELECT rows FROM rollup_state").fetchall() == [(300,)]
    sink.con.close()
    con = duckdb.connect(str(copy), read_only=True)
    con.execute("SET TimeZone = 'UTC'")
    try:
        run = runner(con)
        assert queries.rollups_whole(run)
        for rng in ("24h", "7d"):
            assert answers(run, rng, True) == answers(run, rng, False)
    finally:
        con.close()


def test_no_rollups_means_raw_rows(tmp_path: Path) -> None:
    """A database older than migration 3: the dashboard reads the raw rows."""
    con = duckdb.connect(str(tmp_path / "old.duckdb"))
    con.execute("CREATE TABLE exceptions (event_time TIMESTAMPTZ)")
    try:
        assert not queries.rollups_whole(runner(con))
    finally:
        con.close()


def test_migration_3_backfills_an_existing_database(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    sink = Sink(path)
    feed(sink, *workload(300, seed=11))
    con = sink.con
    for t in rollups.TABLES:  # as version 2 left it, with the rows stored
        con.execute(f"DROP TABLE {t.name}")
    con.execute("DELETE FROM schema_version WHERE version = 3")
    for t in group_rollup.TABLES:
        con.execute(f"DROP TABLE {t.name}")
    con.execute("DELETE FROM schema_version WHERE version = 4")
    assert migrate(con) == [3, 4]  # (the writer's connection is in UTC)
    for table, sql in ROLLED.items():
        have = con.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()
        assert have == con.execute(f"{sql} ORDER BY ALL").fetchall(), table
    check_group_rollup(con)
    assert queries.rollups_whole(runner(con))
    con.close()


def test_migration_4_fills_the_group_rollup_with_what_rollup_state_covers(
    tmp_path: Path,
) -> None:
    """Rows stored after the last refresh are left to the next one, for every rollup."""
    sink = Sink(tmp_path / "old.duckdb")
    exceptions, sends = workload(400, seed=13)
    feed(sink, exceptions[:300], sends)
    rollups.refresh(sink.con)
    sink.apply(T.exceptions, exceptions[300:], 300)  # not rolled up yet
    con = sink.con
    for t in group_rollup.TABLES:  # as version 3 left it
        con.execute(f"DROP TABLE {t.name}")
    con.execute("DELETE FROM schema_version WHERE version = 4")
    assert migrate(con) == [4]
    covered = con.execute("SELECT sum(failures) FROM group_senders_minutely").fetchall()
    assert covered == con.execute("SELECT rows FROM rollup_state").fetchall() == [(300,)]
    run = runner(con)
    assert not queries.rollups_whole(run)
    assert answers(run, "7d", None) == answers(run, "7d", False)  # read raw meanwhile
    assert rollups.refresh(con) > 0
    check_group_rollup(con)
    assert queries.rollups_whole(run)
    assert answers(run, "7d", True) == answers(run, "7d", False)
    con.close()


def test_a_database_at_migration_3_means_raw_rows(tmp_path: Path) -> None:
    """A sink older than the dashboard: without migration 4's tables every statement
    reads the raw rows."""
    sink = Sink(tmp_path / "v3.duckdb")
    feed(sink, *workload(200, seed=17))
    rollups.refresh(sink.con)
    run = runner(sink.con)
    assert queries.rollups_whole(run)
    for t in group_rollup.TABLES:
        sink.con.execute(f"DROP TABLE {t.name}")
    assert not queries.rollups_whole(run)
    assert answers(run, "7d", None) == answers(run, "7d", False)
    sink.con.close()


def test_windows_end_where_expected() -> None:
    """The edges: whole minutes up to until's minute, whole hours inside the range."""
    w = RANGES["24h"].window(NOW)
    e = queries.Edges.of(w)
    assert e.m1 == NOW.replace(second=0, microsecond=0)
    assert (e.h0, e.h1) == (w.since.replace(minute=0) + timedelta(hours=1), NOW.replace(
        minute=0, second=0, microsecond=0))  # fmt: skip
    assert e.d0 == e.d1 == e.h0  # no whole day: every whole hour by the hour
    short = queries.Edges.of(RANGES["15m"].window(NOW))
    assert short.h0 == short.h1  # no whole hour: everything raw
    week = queries.Edges.of(RANGES["7d"].window(NOW))
    assert week.h0 == RANGES["7d"].window(NOW).since  # on an hour: 1-hour buckets
    assert (week.d0, week.d1) == (NOW.replace(day=1, hour=0, minute=0, second=0,
                                              microsecond=0), NOW.replace(
        hour=0, minute=0, second=0, microsecond=0))  # fmt: skip
