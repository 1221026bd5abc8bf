"""The sink's DuckDB writer leaves a core to the fetch thread unless told otherwise."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from analytics import db
from analytics.sink import Sink
from groupwatch.contracts import Settings


@pytest.mark.parametrize(("cpus", "expected"), [(1, 1), (2, 1), (8, 7)])
def test_default_is_cpus_minus_one_at_least_one(
    cpus: int, expected: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "usable_cpus", lambda: cpus)
    assert db.writer_threads(None) == expected
    assert db.writer_threads(3) == 3  # configured wins, even above the CPU count


def test_open_writer_sets_and_locks_threads_and_checkpoint_threshold(tmp_path: Path) -> None:
    con = db.open_writer(tmp_path / "w.duckdb", tmp_path / "s.duckdb", threads=3, checkpoint_mb=7)
    try:
        assert con.execute("SELECT current_setting('threads')").fetchone() == (3,)
        threshold = con.execute("SELECT current_setting('checkpoint_threshold')").fetchone()
        assert threshold is not None and threshold[0] == "7.0 MiB"
        with pytest.raises(Exception, match=r"(?i)configuration"):
            con.execute("SET threads = 1")
    finally:
        con.close()


def test_env_setting_reaches_the_sink_connection(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GROUPWATCH_SINK_DUCKDB_THREADS", "5")
    settings = make_settings()
    assert settings.sink_duckdb_threads == 5
    sink = Sink(settings, serve=False, snapshots=False)
    try:
        assert sink.con.execute("SELECT current_setting('threads')").fetchone() == (5,)
    finally:
        sink.close()
