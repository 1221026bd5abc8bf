"""One sink batch: Kafka messages decoded by topic into Arrow tables (pure, no I/O).

Undecodable messages become rejects (kept with topic, partition, offset, error and raw
bytes) instead of being dropped. ``next_offsets`` is what the batch moves each
partition's applied position to.

Raw exceptions (the bulk of the traffic) are first parsed all at once by Arrow's JSON
reader in C++, without the GIL (``exceptions_from_json``); a batch with any value that
reader does not take exactly as the contract does is decoded record by record with the
contract instead, so a bad record gets the same reject as ever. The fast path checks the
contract's own constraints too (``msgspec.Meta`` ranges and lengths, read from the type,
``contract_violations``): a value the contract refuses never passes the fast path.

``prepare`` refuses (``Unstorable``) a batch with a timestamp outside what DuckDB and
Python's ``datetime`` can hold (years 1 to 9999: a row beyond would break every served
query that reads it); the sink then isolates the record (``analytics.apply.isolate``).
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import msgspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from analytics.raws import RawMessage, RawMessages
from analytics.tables import STAGES, TS
from groupwatch.contracts import Topics
from groupwatch.contracts.catalog import CATEGORIES
from groupwatch.contracts.records import Alert, ExceptionEvent, FailureWindow, SendEvent, decode

# What a TIMESTAMPTZ column may hold (ms since the epoch): 0001-01-01 .. 9999-12-31,
# the range of Python's datetime (served JSON and every client convert through it).
TS_MIN_MS = -62_135_596_800_000
TS_MAX_MS = 253_402_300_799_999


class Unstorable(ValueError):
    """A decoded record holds a value its column cannot store (the data's fault)."""


@dataclass(frozen=True)
class Reject:
    topic: str
    partition: int
    offset: int
    error: str
    raw: bytes | None


@dataclass
class Batch:
    exceptions: list[ExceptionEvent] = field(default_factory=list)
    sends: list[SendEvent] = field(default_factory=list)
    windows: list[FailureWindow] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    next_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    # the exceptions as one Arrow table when the whole batch took the C++ JSON path
    exception_table: pa.Table | None = None
    # the messages the batch was collated from (the sink re-collates parts of them to
    # isolate a record that cannot be stored)
    raws: Sequence[RawMessage] = ()

    def counts(self) -> dict[str, int]:
        return {
            "exceptions": self.exception_count,
            "sends": len(self.sends),
            "failure_windows": len(self.windows),
            "alerts": len(self.alerts),
        }

    @property
    def exception_count(self) -> int:
        table = self.exception_table
        return len(self.exceptions) + (0 if table is None else table.num_rows)

    @property
    def size(self) -> int:
        return (
            self.exception_count
            + len(self.sends)
            + len(self.windows)
            + len(self.alerts)
            + len(self.rejects)
        )


def collate(messages: Iterable[RawMessage], topics: Topics) -> Batch:
    """Decode every message by its topic; bad ones become rejects.

    Hot path (every record): the topic's kind looked up only when the topic changes;
    offsets tracked per partition as the maximum. Raw exceptions are collected and parsed
    together at the end (``exceptions_from_json``), every other record with the
    contract's ``decode``. A batch of raw exceptions only, as columns (``RawMessages``,
    the sink's usual batch), skips the loop per record: its values go to the JSON
    reader as they are.
    """
    if not isinstance(messages, Sequence):
        messages = list(messages)
    batch = Batch(raws=messages)
    if (
        isinstance(messages, RawMessages)
        and messages.only_topic() == topics.exceptions
        and None not in messages.values
    ):
        batch.next_offsets = messages.next_offsets()
        _decode_exceptions(batch, messages, cast(list[bytes], messages.values))
        return batch
    pending: list[RawMessage] = []  # raw exceptions
    kinds: dict[str, tuple[type[Any], list[Any]]] = {
        topics.exceptions: (ExceptionEvent, pending),
        topics.sends: (SendEvent, batch.sends),
        topics.failure_windows: (FailureWindow, batch.windows),
        topics.alerts: (Alert, batch.alerts),
    }
    next_offsets = batch.next_offsets
    # msgspec raises UnicodeDecodeError for invalid UTF-8 inside a string
    errors = (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError)
    last_topic: str | None = None
    kind_entry: tuple[type[Any], list[Any]] | None = None
    for msg in messages:
        topic, partition, offset, value = msg
        key = (topic, partition)
        if next_offsets.get(key, 0) <= offset:
            next_offsets[key] = offset + 1
        if topic != last_topic:
            last_topic, kind_entry = topic, kinds.get(topic)
        if kind_entry is None:
            error = f"topic {topic!r} is not one the sink consumes"
        elif value is None:
            error = "empty value (tombstone): no record to store"
        elif kind_entry[1] is pending:
            pending.append(msg)
            continue
        else:
            try:
                kind_entry[1].append(decode(value, kind_entry[0]))
                continue
            except errors as exc:
                error = f"{kind_entry[0].__name__}: {exc}"
        batch.rejects.append(Reject(topic, partition, offset, error, value))
    if pending:
        # pending holds no tombstones (rejected above): every value is bytes
        _decode_exceptions(batch, pending, cast(list[bytes], [m.value for m in pending]))
    return batch


def _decode_exceptions(batch: Batch, messages: Sequence[RawMessage], values: list[bytes]) -> None:
    """The raw exceptions ``messages`` (whose values are ``values``) into ``batch``: one
    Arrow table if the JSON fast path takes them all, else record by record."""
    if len(values) >= JSON_FAST_PATH_MIN_ROWS:
        batch.exception_table = exceptions_from_json(values)
    if batch.exception_table is None:
        errors = (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError)
        for (topic, partition, offset, _), value in zip(messages, values, strict=True):
            try:
                batch.exceptions.append(decode(value, ExceptionEvent))
            except errors as exc:
                error = f"ExceptionEvent: {exc}"
                batch.rejects.append(Reject(topic, partition, offset, error, value))


_EXC_STAGE = STAGES["exceptions"]
_EXC_FIELDS = ExceptionEvent.__struct_fields__
# Arrow column (name, type) per struct field (the *_ms integers become TIMESTAMPTZ columns)
_EXC_COLUMNS: dict[str, tuple[str, pa.DataType]] = {
    c.field: (c.name, c.arrow) for c in _EXC_STAGE.columns if c.field is not None
}
if set(_EXC_COLUMNS) != set(_EXC_FIELDS):  # the JSON fast path reads every field
    raise TypeError(
        "the exceptions JSON fast path needs a column for every ExceptionEvent field; "
        f"none for {sorted(set(_EXC_FIELDS) - set(_EXC_COLUMNS))}"
    )


# What Arrow's JSON reader is told: the contract's types; ``extra`` must be an empty object
# and ``msg_body`` null (anything else is an unexpected field / a type change: an error,
# so the batch takes the per-record path, whose JSON text of those fields is the
# reference); integers stay integers (a float, a string or an overflow is an error).
_EXC_JSON_TYPES = {
    **{name: pa.int64() if t == TS else t for name, (_, t) in _EXC_COLUMNS.items()},
    "extra": pa.struct([]),
    "msg_body": pa.null(),
}
_EXC_JSON_PARSE = pajson.ParseOptions(
    explicit_schema=pa.schema([(name, _EXC_JSON_TYPES[name]) for name in _EXC_FIELDS]),
    unexpected_field_behavior="error",
)
_EXC_JSON_READ = pajson.ReadOptions(use_threads=False)
# The fields whose type does not admit null (a null or a missing one: the contract decides)
_EXC_NOT_NULL = tuple(
    f.name
    for f in cast(msgspec.inspect.StructType, msgspec.inspect.type_info(ExceptionEvent)).fields
    if not isinstance(f.type, msgspec.inspect.UnionType)
)
_CATEGORY_SET = pa.array(CATEGORIES, pa.string())
# Arrow's JSON reader costs ~1.6 ms per call whatever the size: fewer raw exceptions than
# this are decoded with the contract (the same result, faster; isolating a bad record
# re-collates many small parts, analytics/apply.py)
JSON_FAST_PATH_MIN_ROWS = 64
_BOM = b"\xef\xbb\xbf"


def exceptions_from_json(values: list[bytes]) -> pa.Table | None:
    """The exceptions table of raw ``ExceptionEvent`` JSON values, parsed in C++.

    None unless every value is one record the contract accepts as is, with ``extra``
    empty and no ``msg_body``: then the caller decodes each value with the contract.
    Lines are values (a JSON value holds no raw newline): no value is blank and there
    are as many rows as values, so row i is value i.
    """
    if not values or values[0].startswith(_BOM) or not all(map(bytes.strip, values)):
        return None
    try:
        raw = pajson.read_json(
            io.BytesIO(b"\n".join(values)),
            read_options=_EXC_JSON_READ,
            parse_options=_EXC_JSON_PARSE,
        )
    except (pa.ArrowException, ValueError):  # not JSON, a wrong type, an unknown field
        return None
    n = len(values)
    if raw.num_rows != n or any(raw.column(name).null_count for name in _EXC_NOT_NULL):
        return None
    if pc.list_flatten(raw.column("msg_types")).null_count:
        return None
    if not pc.all(pc.is_in(raw.column("error_category"), value_set=_CATEGORY_SET)).as_py():
        return None
    try:
        if contract_violations(raw, _EXC_CONSTRAINTS):
            return None
    except (pa.ArrowException, TypeError, ValueError):  # a column the checks cannot read
        return None
    columns: dict[str, Any] = {"seq": pa.array(range(n), pa.int64())}
    for name, (column, arrow) in _EXC_COLUMNS.items():
        if name in ("extra", "msg_body"):
            columns[column] = pa.nulls(n, arrow)  # {} and null are stored as NULL
        elif arrow == TS:
            columns[column] = raw.column(name).cast(TS)
        else:
            columns[column] = raw.column(name)
    return pa.table(columns)


# --- the contract's constraints, checked on Arrow columns -------------------------------
_Check = tuple[str, str, Any, Any]  # (field, "value" | "length" | "item_length", low, high)


def _bounds(info: Any) -> tuple[Any, Any]:
    low = info.ge if info.ge is not None else (None if info.gt is None else info.gt + 1)
    high = info.le if info.le is not None else (None if info.lt is None else info.lt - 1)
    return low, high


def constraints_of(struct: type[msgspec.Struct]) -> list[_Check]:
    """Every ``msgspec.Meta`` constraint of ``struct``'s fields, as column checks.

    Supported: integer ge/gt/le/lt, string and list min/max_length, and those of a list's
    string items. Any other constraint (a pattern, multiple_of, float bounds) raises: the
    JSON fast path could not honour it, so the type change must be mapped here first
    (tests/analytics/test_batch_json.py checks the contract's types).
    """
    checks: list[_Check] = []
    info = msgspec.inspect.type_info(struct)
    assert isinstance(info, msgspec.inspect.StructType)
    for f in info.fields:
        t = f.type
        if isinstance(t, msgspec.inspect.UnionType):
            inner = [x for x in t.types if not isinstance(x, msgspec.inspect.NoneType)]
            t = inner[0] if len(inner) == 1 else t
        if isinstance(t, msgspec.inspect.IntType):
            if t.multiple_of is not None:
                raise TypeError(f"{struct.__name__}.{f.name}: multiple_of is not supported")
            low, high = _bounds(t)
            if low is not None or high is not None:
                checks.append((f.name, "value", low, high))
        elif isinstance(t, msgspec.inspect.StrType):
            if t.pattern is not None:
                raise TypeError(f"{struct.__name__}.{f.name}: a pattern is not supported")
            if t.min_length is not None or t.max_length is not None:
                checks.append((f.name, "length", t.min_length, t.max_length))
        elif isinstance(t, msgspec.inspect.ListType):
            if t.min_length is not None or t.max_length is not None:
                checks.append((f.name, "length", t.min_length, t.max_length))
            item = t.item_type
            if isinstance(item, msgspec.inspect.StrType):
                if item.pattern is not None:
                    raise TypeError(f"{struct.__name__}.{f.name}: a pattern is not supported")
                if item.min_length is not None or item.max_length is not None:
                    checks.append((f.name, "item_length", item.min_length, item.max_length))
        elif isinstance(t, msgspec.inspect.FloatType) and any(
            v is not None for v in (t.ge, t.gt, t.le, t.lt, t.multiple_of)
        ):
            raise TypeError(f"{struct.__name__}.{f.name}: float bounds are not supported")
    return checks


def contract_violations(table: pa.Table, checks: list[_Check]) -> list[str]:
    """The fields of ``table`` (raw JSON columns) where some value breaks a constraint."""
    bad: list[str] = []
    for name, kind, low, high in checks:
        column = table.column(name)
        if column.null_count == len(column) or pa.types.is_null(column.type):
            continue  # no value (msg_body is read as null on the fast path)
        if kind == "value":
            values = column
        elif kind == "length":
            values = (
                pc.utf8_length(column)
                if pa.types.is_string(column.type)
                else pc.list_value_length(column)
            )
        else:
            values = pc.utf8_length(pc.list_flatten(column))
        if len(values) == 0 or values.null_count == len(values):
            continue
        extremes = pc.min_max(values).as_py()
        if (low is not None and extremes["min"] < low) or (
            high is not None and extremes["max"] > high
        ):
            bad.append(name)
    return bad


_EXC_CONSTRAINTS = constraints_of(ExceptionEvent)


_INT32_FIELDS = frozenset(
    c.field for stage in STAGES.values() for c in stage.columns if c.arrow == pa.int32()
)
# the fields a record type stores (``sends_table`` stores four of a send's)
_STORED_FIELDS: dict[type[Any], tuple[str, ...]] = {
    stage.record: stage.fields for stage in STAGES.values() if stage.record is not None
}


def unstorable_reason(record: msgspec.Struct) -> str | None:
    """Why a decoded record cannot be stored (a value its column cannot hold), or None.

    The same limits as the tables (int32 error codes, int64 integers, timestamps within
    TS_MIN/MAX_MS), checked in Python record by record: how the sink finds the bad
    records of a batch whose tables could not be built without building each one.
    """
    for name in _STORED_FIELDS.get(type(record), record.__struct_fields__):
        value = getattr(record, name)
        if name == "top_error_codes":
            for count in value:
                if not -(2**31) <= count.error_code < 2**31:
                    return f"top_error_codes: error_code {count.error_code} is outside 32 bits"
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            continue
        if name.endswith("_ms"):
            if not TS_MIN_MS <= value <= TS_MAX_MS:
                return f"{name} {value} is outside years 1..9999"
        elif name in _INT32_FIELDS:
            if not -(2**31) <= value < 2**31:
                return f"{name} {value} is outside 32 bits"
        elif not -(2**63) <= value < 2**63:
            return f"{name} {value} is outside 64 bits"
    return None


def record_type(topics: Topics, topic: str) -> type[Any] | None:
    return {
        topics.exceptions: ExceptionEvent,
        topics.sends: SendEvent,
        topics.failure_windows: FailureWindow,
        topics.alerts: Alert,
    }.get(topic)


def check_storable(name: str, table: pa.Table) -> None:
    """Raise ``Unstorable`` if a timestamp column of ``table`` is outside TS_MIN/MAX_MS."""
    for column_name, column in zip(table.column_names, table.columns, strict=True):
        if column.type != TS or column.null_count == len(column):
            continue
        extremes = pc.min_max(column.cast(pa.int64())).as_py()
        if extremes["min"] < TS_MIN_MS or extremes["max"] > TS_MAX_MS:
            raise Unstorable(
                f"{name}.{column_name}: a timestamp outside years 1..9999 "
                f"(ms {extremes['min']}..{extremes['max']})"
            )


def exceptions_table(events: list[ExceptionEvent]) -> pa.Table:
    return _EXC_STAGE.build(events)


def sends_table(events: list[SendEvent]) -> pa.Table:
    return STAGES["sends"].build(events)


def windows_table(records: list[FailureWindow]) -> pa.Table:
    return STAGES["windows"].build(records)


def alerts_table(records: list[Alert]) -> pa.Table:
    return STAGES["alerts"].build(records)


def rejects_table(rejects: list[Reject]) -> pa.Table:
    return STAGES["rejects"].build(rejects)


@dataclass
class Prepared:
    """A batch turned into the Arrow tables one transaction inserts (built off the lock)."""

    tables: dict[str, pa.Table]
    counts: dict[str, int]
    rejects: int
    next_offsets: dict[tuple[str, int], int]
    generation: int = 0
    # the messages it came from (to isolate a record the store refuses) and the rejects
    # by topic (for the records counter)
    raws: Sequence[RawMessage] = ()
    reject_topics: dict[str, int] = field(default_factory=dict)
    # set when building the tables failed: the sink isolates the bad records
    failure: Exception | None = None

    @property
    def size(self) -> int:
        return sum(self.counts.values()) + self.rejects


def next_offsets_of(messages: Iterable[RawMessage]) -> dict[tuple[str, int], int]:
    """Each partition's next offset after ``messages``."""
    out: dict[tuple[str, int], int] = {}
    for topic, partition, offset, _ in messages:
        if out.get((topic, partition), 0) <= offset:
            out[(topic, partition)] = offset + 1
    return out


def prepare(batch: Batch, generation: int = 0) -> Prepared:
    """Build every Arrow table of the batch (only the non-empty ones)."""
    tables: dict[str, pa.Table] = {}
    if batch.exception_table is not None:
        tables["exceptions"] = batch.exception_table
    elif batch.exceptions:
        tables["exceptions"] = exceptions_table(batch.exceptions)
    if batch.sends:
        tables["sends"] = sends_table(batch.sends)
    if batch.windows:
        tables["windows"] = windows_table(batch.windows)
    if batch.alerts:
        tables["alerts"] = alerts_table(batch.alerts)
    for name, table in tables.items():
        check_storable(name, table)
    reject_topics: dict[str, int] = {}
    if batch.rejects:
        tables["rejects"] = rejects_table(batch.rejects)
        for r in batch.rejects:
            reject_topics[r.topic] = reject_topics.get(r.topic, 0) + 1
    return Prepared(
        tables,
        batch.counts(),
        len(batch.rejects),
        dict(batch.next_offsets),
        generation,
        batch.raws,
        reject_topics,
    )
