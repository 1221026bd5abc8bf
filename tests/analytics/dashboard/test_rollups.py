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

from analytics import rollups
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
        finally:
            con.close()


def answers(run: queries.Run, rng: str, rollups_on: bool) -> dict[str, Any]:
    w = RANGES[rng].window(NOW)
    out: dict[str, Any] = {}
    for app in APPS:
        out[app] = {
            "overview": queries.overview(run, app, w, rollups_on),
            "groups": [queries.group(run, app, w, g) for g in ("g0", "g5", "g11")],
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
    assert migrate(con) == [3]  # (the writer's connection is in UTC)
    for table, sql in ROLLED.items():
        have = con.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()
        assert have == con.execute(f"{sql} ORDER BY ALL").fetchall(), table
    assert queries.rollups_whole(runner(con))
    con.close()


def test_windows_end_where_expected() -> None:
    """The edges: whole minutes up to until's minute, whole hours inside the range."""
    w = RANGES["24h"].window(NOW)
    e = queries.Edges.of(w)
    assert e.m1 == NOW.replace(second=0, microsecond=0)
    assert (e.h0, e.h1) == (w.since.replace(minute=0) + timedelta(hours=1), NOW.replace(
        minute=0, second=0, microsecond=0))  # fmt: skip
    short = queries.Edges.of(RANGES["15m"].window(NOW))
    assert short.h0 == short.h1  # no whole hour: everything raw
