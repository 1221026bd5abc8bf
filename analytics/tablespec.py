"""The words of the table spec (``analytics/tables.py``) and everything generated from it.

A ``Table`` is one DuckDB table: its columns, its key and its upsert rule. A ``Column``
carries its DuckDB type and, when the sink builds it in Arrow, its Arrow type and the
record field it is built from (or else the SQL that computes it). From these come

* the ``CREATE TABLE`` statement of each table (``create_sql``);
* the batch tables the sink registers with DuckDB (``Stage``: one per record kind, its
  Arrow schema and ``build``, records to Arrow columns);
* the one ``INSERT … ON CONFLICT`` statement per table (``upsert_sql``; ``insert_sql``
  for the plain insert forms).

Every statement first reduces the batch to one row per key: DuckDB collapses duplicate
keys inside one ``INSERT … ON CONFLICT`` without telling (docs/ANALYTICS.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, cast

import msgspec
import pyarrow as pa

from groupwatch.contracts.records import RECORD_TYPES

# Column names that are SQL keywords, quoted wherever SQL names them (``offset`` is
# reserved in DuckDB; ``partition`` is a keyword of window clauses)
QUOTED = frozenset({"offset", "partition"})

# the prefix of the batch tables the sink registers with DuckDB ("_b_exceptions", ...)
STAGE_PREFIX = "_b_"


def ident(name: str) -> str:
    """``name`` as SQL names it (quoted if it is a keyword)."""
    return f'"{name}"' if name in QUOTED else name


@dataclass(frozen=True)
class Column:
    """One column: DuckDB type, and where its values come from.

    ``arrow`` set: the batch table holds it, built from record field ``source`` (default:
    the column's name), through ``convert`` when the field's value is not what Arrow
    takes. ``expr`` set instead: SQL computing it from the batch table's columns.
    A column with neither is computed by the table's rule (``CountOnce``).
    """

    name: str
    sql: str
    arrow: pa.DataType | None = None
    source: str | None = None
    not_null: bool = False
    convert: Callable[[Any], Any] | None = None
    expr: str | None = None

    @property
    def field(self) -> str | None:
        """The record field the column is built from (None: computed in SQL)."""
        if self.arrow is None:
            return None
        return self.source or self.name

    @property
    def ident(self) -> str:
        return ident(self.name)

    @property
    def select(self) -> str:
        """The column in a ``SELECT`` over the batch table."""
        return self.ident if self.expr is None else f"{self.expr} AS {self.ident}"


# --- upsert rules -----------------------------------------------------------------------
@dataclass(frozen=True)
class FirstWins:
    """Insert if absent: a stored row is never replaced; of a key repeated in one batch,
    the first (lowest ``seq``, i.e. offset order) is stored. ``unique_in_batch``: a
    batch never repeats a key (one reject per message), so no de-duplication."""

    unique_in_batch: bool = False


@dataclass(frozen=True)
class GreatestWins:
    """The row greatest by ``order`` (compared left to right) is kept: of a key in one
    batch (ties: the last), and against the stored row, which a lesser or equal row never
    replaces. A max, so the result does not depend on batching or order."""

    order: tuple[str, ...]


@dataclass(frozen=True)
class CountOnce:
    """Column ``column`` counts the batch's rows per key (the other columns are what the
    rows are grouped by) and is added to the stored count. Each row counts once: a row
    repeated in the batch once, and only rows whose ``once_by`` key that batch stored
    anew (registered as ``_b_new_<stage>``)."""

    column: str
    once_by: Table


@dataclass(frozen=True)
class KeepGreatest:
    """Every column takes the new row's value, except ``column``, which never goes back."""

    column: str


@dataclass(frozen=True)
class AddedUp:
    """No key: each write appends its own counts (``column``, per the other columns), and
    a reader sums them per key. Each row must be written once (the writer's own record
    of what it wrote, e.g. ``rollup_state``), since nothing here refuses a repeat."""

    column: str


Rule = FirstWins | GreatestWins | CountOnce | KeepGreatest | AddedUp


@dataclass(frozen=True)
class Table:
    """One DuckDB table, written from batch table ``stage`` (None: from a VALUES list)."""

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    rule: Rule
    record: type[Any] | None = None
    stage: str | None = None

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.name} has no column {name!r}")

    @property
    def registered(self) -> str:
        """The name the batch table is registered under."""
        if self.stage is None:
            raise ValueError(f"{self.name} is not written from a batch table")
        return STAGE_PREFIX + self.stage


# --- DDL ----------------------------------------------------------------------------------
def create_sql(table: Table) -> str:
    """The table's ``CREATE TABLE`` statement (names aligned, as a person writes it)."""
    width = max(len(c.ident) for c in table.columns)
    lines = []
    for c in table.columns:
        line = f"    {c.ident.ljust(width)} {c.sql}"
        if table.key == (c.name,):
            line += " PRIMARY KEY"
        elif c.not_null:
            line += " NOT NULL"
        lines.append(line)
    if len(table.key) > 1:
        lines.append(f"    PRIMARY KEY ({_list(table.key)})")
    body = ",\n".join(lines)
    return f"CREATE TABLE {table.name} (\n{body}\n);\n"


# --- upsert statements ------------------------------------------------------------------
def _list(names: Sequence[str]) -> str:
    return ", ".join(ident(n) for n in names)


def _first_per_key(table: Table, key: Sequence[str]) -> str:
    k = _list(key)
    return f"SELECT DISTINCT ON ({k}) * FROM {table.registered} ORDER BY {k}, seq"


def insert_sql(
    table: Table, *, deduplicate: bool, on_conflict: bool, returning_key: bool = False
) -> str:
    """``INSERT`` of the batch table's rows: ``deduplicate``: the first row per key;
    ``on_conflict``: keys already stored are skipped (else DuckDB raises
    ``ConstraintException``); ``returning_key``: the statement returns the stored keys."""
    cols = _list([c.name for c in table.columns])
    select = ", ".join(c.select for c in table.columns)
    if deduplicate:
        source = f"(\n    {_first_per_key(table, table.key)}\n)"
        sql = f"INSERT INTO {table.name} ({cols})\nSELECT {select} FROM {source}"
    else:
        sql = f"INSERT INTO {table.name} ({cols})\nSELECT {select} FROM {table.registered}"
    if on_conflict:
        sql += " ON CONFLICT DO NOTHING" if deduplicate else "\nON CONFLICT DO NOTHING"
    if returning_key:
        sql += f"\nRETURNING {_list(table.key)}"
    return sql + "\n"


def _greater(table: Table, order: Sequence[str]) -> str:
    """``excluded`` (the new row) is greater than the stored row by ``order``."""
    first, rest = ident(order[0]), order[1:]
    new, old = f"excluded.{first}", f"{table.name}.{first}"
    if not rest:
        return f"{new} > {old}"
    return f"{new} > {old} OR ({new} = {old} AND ({_greater(table, rest)}))"


def _set_all_but(table: Table, keep: Sequence[str] = ()) -> list[str]:
    skip = {*table.key, *keep}
    return [f"{c.ident} = excluded.{c.ident}" for c in table.columns if c.name not in skip]


def upsert_sql(table: Table, *, returning_key: bool = False) -> str:
    """The statement that applies a batch to ``table`` under its rule.

    A table without a batch table (``stage``) gets a template whose ``{rows}`` the
    caller fills with a VALUES list.
    """
    rule = table.rule
    cols = _list([c.name for c in table.columns])
    if isinstance(rule, KeepGreatest):
        c = ident(rule.column)
        updates = [
            f"{c} = greatest({table.name}.{c}, excluded.{c})",
            *_set_all_but(table, keep=[rule.column]),
        ]
        source = (
            "VALUES {rows}"
            if table.stage is None
            else f"SELECT {', '.join(x.select for x in table.columns)} FROM {table.registered}"
        )
        return (
            f"INSERT INTO {table.name} ({cols})\n{source}\n"
            f"ON CONFLICT DO UPDATE SET {', '.join(updates)}\n"
        )
    if isinstance(rule, FirstWins):
        return insert_sql(
            table,
            deduplicate=not rule.unique_in_batch,
            on_conflict=True,
            returning_key=returning_key,
        )
    if isinstance(rule, GreatestWins):
        select = ", ".join(c.select for c in table.columns)
        order = ", ".join(f"{ident(n)} DESC" for n in rule.order)
        return (
            f"INSERT INTO {table.name} ({cols})\n"
            f"SELECT {select} FROM {table.registered}\n"
            "QUALIFY row_number() OVER (\n"
            f"    PARTITION BY {_list(table.key)}\n"
            f"    ORDER BY {order}, seq DESC\n"
            ") = 1\n"
            f"ON CONFLICT DO UPDATE SET {', '.join(_set_all_but(table))}\n"
            f"WHERE {_greater(table, rule.order)}\n"
        )
    if isinstance(rule, AddedUp):
        raise ValueError(f"{table.name} has no key to upsert by: its writer appends")
    # CountOnce
    c = ident(rule.column)
    select = ", ".join("count(*)" if x.name == rule.column else x.select for x in table.columns)
    once = rule.once_by
    return (
        f"INSERT INTO {table.name} ({cols})\n"
        f"SELECT {select}\n"
        f"FROM ({_first_per_key(table, once.key)})\n"
        f"SEMI JOIN {new_keys_name(table)} USING ({_list(once.key)})\n"
        "GROUP BY ALL\n"
        f"ON CONFLICT DO UPDATE SET {c} = {table.name}.{c} + excluded.{c}\n"
    )


def add_sql(table: Table, select: str, into: str = "") -> str:
    """``select`` (one row per key) added to rollup ``table`` (in database ``into``):
    counts summed (``CountOnce``), times kept greatest (``KeepGreatest``)."""
    cols = ", ".join(c.name for c in table.columns)
    rule = table.rule
    if not isinstance(rule, CountOnce | KeepGreatest):
        raise ValueError(f"{table.name}: rows are added to a CountOnce or KeepGreatest table")
    c = rule.column
    if isinstance(rule, CountOnce):
        update = f"{c} = {table.name}.{c} + excluded.{c}"
    else:
        update = f"{c} = excluded.{c} WHERE excluded.{c} > {table.name}.{c}"
    target = f"{into}.{table.name}" if into else table.name
    return f"INSERT INTO {target} ({cols})\n{select}\nON CONFLICT DO UPDATE SET {update}"


def new_keys_name(table: Table) -> str:
    """Where a ``CountOnce`` table reads the keys its ``once_by`` table stored anew."""
    if table.stage is None:
        raise ValueError(f"{table.name} is not written from a batch table")
    return f"{STAGE_PREFIX}new_{table.stage}"


# --- batch tables (Arrow) -----------------------------------------------------------------
@dataclass(frozen=True)
class Stage:
    """One batch table: the Arrow columns every table written from it needs.

    Rows are records of ``record`` (a msgspec Struct or any object with those
    attributes); ``seq`` numbers them in batch (offset) order.
    """

    name: str
    record: type[Any] | None
    columns: tuple[Column, ...]

    @property
    def registered(self) -> str:
        return STAGE_PREFIX + self.name

    @property
    def schema(self) -> pa.Schema:
        return pa.schema([("seq", pa.int64()), *((c.name, c.arrow) for c in self.columns)])

    @property
    def fields(self) -> tuple[str, ...]:
        """The record fields the batch table is built from (in the record's order)."""
        wanted = {c.field for c in self.columns}
        order = getattr(self.record, "__struct_fields__", None)
        if order is None:
            return tuple(dict.fromkeys(c.field for c in self.columns if c.field))
        return tuple(f for f in order if f in wanted)

    def build(self, records: Sequence[Any]) -> pa.Table:
        """The batch table of ``records`` (``seq``: their position)."""
        return self._builder(records)

    @cached_property
    def _builder(self) -> Callable[[Sequence[Any]], pa.Table]:
        return _compile_builder(self)


def _compile_builder(stage: Stage) -> Callable[[Sequence[Any]], pa.Table]:
    """A function building ``stage``'s batch table, one list comprehension per column
    (``[r.<field> for r in records]``), written out as code the way ``dataclasses``
    writes ``__init__``: CPython specialises those attribute reads. Measured at 10,000
    records: a failure window 0.93 us/row (``attrgetter`` per column: 1.11), an exception
    1.2 us/row (transposing each struct's ``astuple``: 1.6).
    """
    env: dict[str, Any] = {"pa": pa, "_seq_type": pa.int64()}
    items = ['"seq": pa.array(range(len(records)), _seq_type)']
    for i, c in enumerate(stage.columns):
        name = c.field
        if name is None or not name.isidentifier():
            raise ValueError(f"batch table {stage.name}: column {c.name!r} has no field")
        env[f"_type{i}"] = c.arrow
        value = f"r.{name}"
        if c.convert is not None:
            env[f"_convert{i}"] = c.convert
            value = f"_convert{i}({value})"
        items.append(f"{c.name!r}: pa.array([{value} for r in records], _type{i})")
    body = "".join(f"        {item},\n" for item in items)
    source = f"def build(records):\n    return pa.table({{\n{body}    }})\n"
    exec(compile(source, f"<batch table {stage.name}>", "exec"), env)
    return cast(Callable[[Sequence[Any]], pa.Table], env["build"])


def stages(tables: Sequence[Table]) -> dict[str, Stage]:
    """Each batch table, with the Arrow columns of every table written from it."""
    found: dict[str, tuple[type[Any] | None, dict[str, Column]]] = {}
    for table in tables:
        if table.stage is None:
            continue
        record, columns = found.setdefault(table.stage, (table.record, {}))
        if record is not table.record:
            raise TypeError(f"batch table {table.stage}: rows of {record} and {table.record}")
        for c in table.columns:
            if c.arrow is None:
                continue
            seen = columns.setdefault(c.name, c)
            if (seen.arrow, seen.field, seen.convert) != (c.arrow, c.field, c.convert):
                raise TypeError(f"batch table {table.stage}: two different columns {c.name!r}")
    return {
        name: Stage(name, record, tuple(columns.values()))
        for name, (record, columns) in found.items()
    }


# --- the spec against the contract ----------------------------------------------------
def _optional(t: Any) -> tuple[Any, bool]:
    """(the type without None, whether None is allowed)."""
    if isinstance(t, msgspec.inspect.UnionType):
        inner = [x for x in t.types if not isinstance(x, msgspec.inspect.NoneType)]
        return (inner[0] if len(inner) == 1 else t), len(inner) < len(t.types)
    return t, False


def _arrow_fits(t: Any, arrow: pa.DataType) -> bool:
    """Whether field type ``t`` (msgspec.inspect) goes into ``arrow`` as it is."""
    i = msgspec.inspect
    if isinstance(t, i.StrType | i.LiteralType):
        return pa.types.is_string(arrow)
    if isinstance(t, i.BoolType):
        return pa.types.is_boolean(arrow)
    if isinstance(t, i.IntType):
        return pa.types.is_integer(arrow) or pa.types.is_timestamp(arrow)
    if isinstance(t, i.FloatType):
        return pa.types.is_floating(arrow)
    if isinstance(t, i.ListType) and pa.types.is_list(arrow):
        return _arrow_fits(t.item_type, arrow.value_type)
    if isinstance(t, i.StructType) and pa.types.is_struct(arrow):
        names = [arrow.field(k).name for k in range(arrow.num_fields)]
        return names == [f.name for f in t.fields] and all(
            _arrow_fits(f.type, arrow.field(f.name).type) for f in t.fields
        )
    return False


def problems(
    tables: Sequence[Table],
    not_stored: dict[type[Any], dict[str, str]],
    not_sunk: dict[type[Any], str],
    record_types: Sequence[type[Any]] | None = None,
) -> list[str]:
    """Where the spec and the contract's records disagree (empty: they agree).

    Every record type of the contract is stored by some table or listed in ``not_sunk``;
    every field of a stored record is some column's source or listed in ``not_stored``
    (with a reason), never both; every column's source is a field whose type its Arrow
    type takes (else it has a ``convert``), and a NOT NULL column's field admits no
    None. Keys and the columns a rule compares are NOT NULL.
    """
    if record_types is None:
        record_types = list(RECORD_TYPES.values())
    out: list[str] = []
    stored: dict[type[Any], set[str]] = {}
    for table in tables:
        for name in table.key:
            c = table.column(name)
            if not c.not_null:
                out.append(f"{table.name}.{name}: a key column must be NOT NULL")
        if isinstance(table.rule, GreatestWins | KeepGreatest):
            compared = (
                table.rule.order if isinstance(table.rule, GreatestWins) else (table.rule.column,)
            )
            for name in compared:
                if not table.column(name).not_null:
                    out.append(f"{table.name}.{name}: the rule compares it, so NOT NULL")
        if isinstance(table.rule, CountOnce) and table.rule.once_by.stage != table.stage:
            out.append(f"{table.name}: counted once by a table of another batch table")
        if table.record is None or not hasattr(table.record, "__struct_fields__"):
            continue
        info = msgspec.inspect.type_info(table.record)
        assert isinstance(info, msgspec.inspect.StructType)
        types = {f.name: f.type for f in info.fields}
        for c in table.columns:
            if c.field is None:
                continue
            where = f"{table.name}.{c.name}"
            if c.field not in types:
                out.append(f"{where}: {table.record.__name__} has no field {c.field!r}")
                continue
            stored.setdefault(table.record, set()).add(c.field)
            t, nullable = _optional(types[c.field])
            if c.not_null and nullable:
                out.append(f"{where}: NOT NULL, but {c.field} may be None")
            if c.convert is None and not _arrow_fits(t, c.arrow):
                out.append(f"{where}: {c.field} ({t}) does not fit Arrow {c.arrow}")
    for record, fields in stored.items():
        listed = not_stored.get(record, {})
        for name in record.__struct_fields__:
            if name in fields and name in listed:
                out.append(f"{record.__name__}.{name}: stored, yet listed as not stored")
            elif name not in fields and not listed.get(name, "").strip():
                out.append(
                    f"{record.__name__}.{name}: no column holds it "
                    "(add one, or list it as not stored with the reason)"
                )
        for name in set(listed) - set(record.__struct_fields__):
            out.append(f"{record.__name__}.{name}: listed as not stored but no such field")
    for record in record_types:
        if record not in stored and not not_sunk.get(record, "").strip():
            out.append(f"{record.__name__}: no table stores it (or list it as not sunk, with why)")
    return out


class SpecError(TypeError):
    """The table spec and the contract's records disagree."""


def verify(
    tables: Sequence[Table],
    not_stored: dict[type[Any], dict[str, str]],
    not_sunk: dict[type[Any], str],
) -> None:
    """Raise ``SpecError`` naming every disagreement (at import of analytics/tables.py)."""
    found = problems(tables, not_stored, not_sunk)
    if found:
        raise SpecError("the table spec disagrees with the contract:\n" + "\n".join(found))
