"""The table spec, the migrated database and the contract's records agree.

``analytics/tables.py`` declares every table once; these tests hold it to the database
the migrations build (from nothing, and from a database the released schema built) and
to every field of the records the sink consumes.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import duckdb
import pytest

from analytics import group_rollup, rollups, tables
from analytics.batch import Reject
from analytics.migrations import LATEST, MIGRATIONS, current_version, migrate
from analytics.tablespec import QUOTED, Column, Table, problems
from groupwatch.contracts.records import ExceptionEvent, FailureWindow, SendEvent

RELEASED = Path(__file__).with_name("schema_released.sql")

Catalog = dict[str, Any]


def released_migrations() -> dict[int, str]:
    """Each released migration's SQL, by version, from schema_released.sql."""
    text = RELEASED.read_text(encoding="utf-8")
    parts = re.split(r"^-- migration (\d+): .*$", text, flags=re.MULTILINE)
    return {int(v): sql.strip() for v, sql in zip(parts[1::2], parts[2::2], strict=True)}


def create_released(path: Path) -> None:
    """A database as the released sink created it (its migrate, its SQL)."""
    con = duckdb.connect(str(path))
    con.execute(
        "CREATE TABLE schema_version ("
        "version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, applied_at TIMESTAMPTZ NOT NULL)"
    )
    for version, sql in released_migrations().items():
        con.execute("BEGIN TRANSACTION")
        con.execute(sql)
        con.execute("INSERT INTO schema_version VALUES ($v, 'released', now())", {"v": version})
        con.execute("COMMIT")
    con.close()


def catalog(con: duckdb.DuckDBPyConnection) -> Catalog:
    """Every table's columns (name, type, nullable), constraints, and every view's SQL."""
    names = [
        row[0]
        for row in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main' "
            "AND table_name <> 'schema_version' ORDER BY table_name"
        ).fetchall()
    ]
    out: Catalog = {}
    for name in names:
        columns = con.execute(
            "SELECT column_name, data_type, is_nullable FROM duckdb_columns() "
            "WHERE schema_name = 'main' AND table_name = $t ORDER BY column_index",
            {"t": name},
        ).fetchall()
        constraints = con.execute(
            "SELECT constraint_type, constraint_column_names FROM duckdb_constraints() "
            "WHERE schema_name = 'main' AND table_name = $t",
            {"t": name},
        ).fetchall()
        out[name] = {
            "columns": columns,
            "constraints": sorted((kind, tuple(cols)) for kind, cols in constraints),
        }
    out["views"] = con.execute(
        "SELECT view_name, sql FROM duckdb_views() WHERE NOT internal ORDER BY view_name"
    ).fetchall()
    return out


def duckdb_type(con: duckdb.DuckDBPyConnection, sql_type: str) -> str:
    return str(con.execute(f"SELECT typeof(NULL::{sql_type})").fetchall()[0][0])


def spec_catalog(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """What the spec says each table's catalog entry is."""
    out: dict[str, Any] = {}
    for t in (*tables.TABLES, *rollups.TABLES, *group_rollup.TABLES):
        constraints = [("NOT NULL", (c.name,)) for c in t.columns if c.not_null]
        if t.key:
            constraints.append(("PRIMARY KEY", t.key))
        out[t.name] = {
            "columns": [(c.name, duckdb_type(con, c.sql), not c.not_null) for c in t.columns],
            "constraints": sorted(constraints),
        }
    return out


@pytest.fixture
def fresh(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(tmp_path / "fresh.duckdb"))
    assert migrate(con) == [m.version for m in MIGRATIONS]
    yield con
    con.close()


def test_released_migrations_are_unchanged() -> None:
    """A migration once released keeps its SQL: a change to a table is a new migration."""
    current = {m.version: m.sql.strip() for m in MIGRATIONS}
    for version, sql in released_migrations().items():
        assert current[version] == sql, (
            f"migration {version} differs from its released SQL (tests/analytics/"
            "schema_released.sql): keep its text and change the schema in a new migration"
        )


def test_a_fresh_database_is_what_the_spec_declares(fresh: duckdb.DuckDBPyConnection) -> None:
    found = catalog(fresh)
    want = spec_catalog(fresh)
    assert {name: found[name] for name in want} == want
    assert set(found) - {"views"} == set(want), "a table the spec does not declare"


def test_a_released_database_migrates_to_the_same_schema(
    tmp_path: Path, fresh: duckdb.DuckDBPyConnection
) -> None:
    path = tmp_path / "released.duckdb"
    create_released(path)
    con = duckdb.connect(str(path))
    try:
        have = current_version(con)
        assert migrate(con) == [m.version for m in MIGRATIONS if m.version > have]
        assert current_version(con) == LATEST
        assert catalog(con) == catalog(fresh)
    finally:
        con.close()


def test_every_batch_table_column_has_its_table_column_type(
    fresh: duckdb.DuckDBPyConnection,
) -> None:
    """DuckDB reads each Arrow column as the type its table column has (JSON is stored
    from its text)."""
    for stage in tables.STAGES.values():
        fresh.register("_b", stage.schema.empty_table())
        arrow_as = {row[0]: row[1] for row in fresh.execute("DESCRIBE SELECT * FROM _b").fetchall()}
        fresh.unregister("_b")
        assert arrow_as.pop("seq") == "BIGINT"
        for table in tables.TABLES:
            if table.stage != stage.name:
                continue
            for c in table.columns:
                if c.arrow is None:
                    continue
                want = duckdb_type(fresh, c.sql)
                assert arrow_as[c.name] == ("VARCHAR" if want == "JSON" else want), (
                    f"{table.name}.{c.name}"
                )


def test_the_spec_agrees_with_every_contract_record() -> None:
    assert problems(tables.TABLES, tables.NOT_STORED, tables.NOT_SUNK) == []
    # the rejects' batch table is built from analytics.batch.Reject
    fields = {f.name for f in dataclasses.fields(Reject)}
    assert {c.field for c in tables.STAGES["rejects"].columns} <= fields


def _replace(table: Table, **changes: Any) -> tuple[Table, ...]:
    changed = dataclasses.replace(table, **changes)
    return tuple(changed if t is table else t for t in tables.TABLES)


def test_a_field_without_a_column_or_a_reason_is_named() -> None:
    ex = tables.EXCEPTIONS
    without_platform = _replace(ex, columns=tuple(c for c in ex.columns if c.name != "platform"))
    assert problems(without_platform, tables.NOT_STORED, tables.NOT_SUNK) == [
        "ExceptionEvent.platform: no column holds it "
        "(add one, or list it as not stored with the reason)"
    ]
    reasons = {**tables.NOT_STORED, ExceptionEvent: {"platform": "not needed"}}
    assert problems(without_platform, reasons, tables.NOT_SUNK) == []
    blank = {**tables.NOT_STORED, SendEvent: {**tables.NOT_STORED[SendEvent], "random": " "}}
    assert problems(tables.TABLES, blank, tables.NOT_SUNK) == [
        "SendEvent.random: no column holds it (add one, or list it as not stored with the reason)"
    ]


def test_the_spec_names_each_disagreement() -> None:
    fw = tables.FAILURE_WINDOWS
    nullable_key = Column("window_start", "TIMESTAMPTZ", tables.TS, "window_start_ms")
    changed = {
        "window_start": nullable_key,
        "group_type": dataclasses.replace(fw.column("group_type"), not_null=True),
        "sdkappid": dataclasses.replace(fw.column("sdkappid"), arrow=tables.TS),
    }
    bad_columns = (
        *(changed.get(c.name, c) for c in fw.columns),
        Column("nope", "BIGINT", tables.TS, "nope_ms"),
    )
    stored_twice = {
        **tables.NOT_STORED,
        FailureWindow: {**tables.NOT_STORED[FailureWindow], "final": "x", "gone": "y"},
    }
    found = problems(_replace(fw, columns=bad_columns), stored_twice, tables.NOT_SUNK)
    assert sorted(found) == sorted(
        [
            "failure_windows.window_start: a key column must be NOT NULL",
            "failure_windows.group_type: NOT NULL, but group_type may be None",
            "failure_windows.sdkappid: sdkappid (StrType(min_length=None, max_length=None, "
            "pattern=None)) does not fit Arrow timestamp[ms, tz=UTC]",
            "failure_windows.nope: FailureWindow has no field 'nope_ms'",
            "FailureWindow.final: stored, yet listed as not stored",
            "FailureWindow.gone: listed as not stored but no such field",
        ]
    )
    unsunk = {k: v for k, v in tables.NOT_SUNK.items() if k.__name__ != "LateEvent"}
    assert problems(tables.TABLES, tables.NOT_STORED, unsunk) == [
        "LateEvent: no table stores it (or list it as not sunk, with why)"
    ]


def test_every_keyword_column_is_quoted(fresh: duckdb.DuckDBPyConnection) -> None:
    reserved = {
        row[0]
        for row in fresh.execute(
            "SELECT keyword_name FROM duckdb_keywords() WHERE keyword_category = 'reserved'"
        ).fetchall()
    }
    names = {c.name for t in tables.TABLES for c in t.columns}
    assert names & reserved <= QUOTED
