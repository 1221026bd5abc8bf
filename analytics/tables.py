"""The sink's tables, declared once: columns, keys and upsert rules.

Each column names its DuckDB type, its Arrow type in the batch table and the contract
field it comes from. The ``CREATE TABLE`` statements (``analytics/migrations.py``), the
batch tables and their conversion from records (``analytics/batch.py``) and the
``INSERT … ON CONFLICT`` statements (``analytics/apply.py``) are generated from these
declarations (``analytics/tablespec.py``). Every field of a record the sink consumes is
a column or listed in ``NOT_STORED`` with the reason; that is checked when this module
is imported, and ``tests/analytics/test_tables.py`` checks the migrated database too.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec
import orjson
import pyarrow as pa

from analytics.tablespec import (
    Column,
    CountOnce,
    FirstWins,
    GreatestWins,
    KeepGreatest,
    Stage,
    Table,
    create_sql,
    stages,
    verify,
)
from groupwatch.contracts.records import (
    Alert,
    DlqRecord,
    ErrorCount,
    ExceptionEvent,
    FailureWindow,
    LateEvent,
    NotifyFailure,
    SendEvent,
)

TS = pa.timestamp("ms", tz="UTC")  # every TIMESTAMPTZ column, from a *_ms field
TOP_CODES = pa.list_(
    pa.struct(
        [("error_code", pa.int32()), ("error_category", pa.string()), ("failures", pa.int64())]
    )
)
# a reject's error text is cut to this many characters
REJECT_ERROR_MAX_CHARS: Final = 2000


def _json(value: object) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def _extra_json(value: dict[str, Any]) -> str | None:
    return _json(value) if value else None  # {} (nothing unknown came) is stored as NULL


def _error_counts(counts: list[ErrorCount]) -> list[dict[str, Any]]:
    return [msgspec.structs.asdict(c) for c in counts]


def _cut_error(value: str) -> str:
    return value[:REJECT_ERROR_MAX_CHARS]


def varchar(name: str, *, not_null: bool = False, source: str | None = None) -> Column:
    return Column(name, "VARCHAR", pa.string(), source, not_null)


def integer(name: str, *, not_null: bool = False) -> Column:
    return Column(name, "INTEGER", pa.int32(), None, not_null)


def bigint(name: str, *, not_null: bool = False, source: str | None = None) -> Column:
    return Column(name, "BIGINT", pa.int64(), source, not_null)


def double(name: str, *, not_null: bool = False) -> Column:
    return Column(name, "DOUBLE", pa.float64(), None, not_null)


def boolean(name: str, *, not_null: bool = False) -> Column:
    return Column(name, "BOOLEAN", pa.bool_(), None, not_null)


def timestamp(name: str, source: str, *, not_null: bool = False) -> Column:
    """A TIMESTAMPTZ column from the integer milliseconds of ``source``."""
    return Column(name, "TIMESTAMPTZ", TS, source, not_null)


# One row per ExceptionEvent (every field)
EXCEPTIONS = Table(
    "exceptions",
    record=ExceptionEvent,
    stage="exceptions",
    columns=(
        varchar("event_id", not_null=True),
        varchar("sdkappid", not_null=True),
        varchar("callback_command", not_null=True),
        varchar("group_id", not_null=True),
        varchar("group_type"),
        varchar("from_account"),
        varchar("operator_account"),
        bigint("random"),
        boolean("online_only"),
        Column("msg_types", "VARCHAR[]", pa.list_(pa.string())),
        integer("error_code", not_null=True),
        varchar("error_info"),
        varchar("error_category", not_null=True),
        timestamp("event_time", "event_time_ms", not_null=True),
        timestamp("received_at", "received_at_ms", not_null=True),
        varchar("client_ip"),
        varchar("platform"),
        Column("extra", "JSON", pa.string(), convert=_extra_json),
        Column("msg_body", "JSON", pa.string(), convert=_json),
        varchar("cloud_custom_data"),
    ),
    key=("event_id",),
    rule=FirstWins(),
)

# The sends counted (ids older than the retention are forgotten)
SEND_IDS = Table(
    "send_ids",
    record=SendEvent,
    stage="sends",
    columns=(
        varchar("event_id", not_null=True),
        timestamp("event_time", "event_time_ms", not_null=True),
    ),
    key=("event_id",),
    rule=FirstWins(),
)

# Successful sends per group and minute
SENDS_MINUTELY = Table(
    "sends_minutely",
    record=SendEvent,
    stage="sends",
    columns=(
        varchar("sdkappid", not_null=True),
        varchar("group_id", not_null=True),
        Column("minute", "TIMESTAMPTZ", not_null=True, expr="date_trunc('minute', event_time)"),
        Column("sends", "BIGINT", not_null=True),
    ),
    key=("sdkappid", "group_id", "minute"),
    rule=CountOnce("sends", once_by=SEND_IDS),
)

# The newest state of each stream window
FAILURE_WINDOWS = Table(
    "failure_windows",
    record=FailureWindow,
    stage="windows",
    columns=(
        varchar("sdkappid", not_null=True),
        varchar("group_id", not_null=True),
        varchar("group_type"),
        integer("error_code", not_null=True),
        varchar("error_category", not_null=True),
        timestamp("window_start", "window_start_ms", not_null=True),
        timestamp("window_end", "window_end_ms", not_null=True),
        bigint("failures", not_null=True),
        double("failures_per_minute", not_null=True),
        bigint("senders", not_null=True),
        timestamp("first_event_time", "first_event_time_ms", not_null=True),
        timestamp("last_event_time", "last_event_time_ms", not_null=True),
        bigint("group_failures", not_null=True),
        bigint("group_sends"),
        double("failure_ratio"),
        boolean("final", not_null=True),
        timestamp("updated_at", "updated_at_ms", not_null=True),
        bigint("updated_at_ms", not_null=True),
    ),
    key=("sdkappid", "group_id", "error_code", "window_start"),
    # a final beats any update, counts never go backwards, and a non-final arriving
    # after the final never overrides it
    rule=GreatestWins(("final", "failures", "updated_at_ms")),
)

# The newest raise of each alert
ALERTS = Table(
    "alerts",
    record=Alert,
    stage="alerts",
    columns=(
        varchar("sdkappid", not_null=True),
        varchar("group_id", not_null=True),
        varchar("group_type"),
        timestamp("window_start", "window_start_ms", not_null=True),
        timestamp("window_end", "window_end_ms", not_null=True),
        varchar("reason", not_null=True),
        bigint("failures", not_null=True),
        bigint("threshold", not_null=True),
        double("baseline"),
        double("baseline_factor", not_null=True),
        Column(
            "top_error_codes",
            "STRUCT(error_code INTEGER, error_category VARCHAR, failures BIGINT)[]",
            TOP_CODES,
            convert=_error_counts,
        ),
        bigint("group_sends"),
        double("failure_ratio"),
        timestamp("raised_at", "raised_at_ms", not_null=True),
        bigint("raised_at_ms", not_null=True),
    ),
    key=("sdkappid", "group_id", "window_start", "reason"),
    rule=GreatestWins(("raised_at_ms", "failures")),
)

# The next offset to read per partition, committed with the rows
KAFKA_OFFSETS = Table(
    "kafka_offsets",
    columns=(
        Column("topic", "VARCHAR", not_null=True),
        Column("partition", "INTEGER", not_null=True),
        Column("next_offset", "BIGINT", not_null=True),
        Column("updated_at", "TIMESTAMPTZ", not_null=True),
    ),
    key=("topic", "partition"),
    rule=KeepGreatest("next_offset"),
)

# Records the sink cannot store, with the error and the raw bytes
SINK_REJECTS = Table(
    "sink_rejects",
    record=None,  # analytics.batch.Reject
    stage="rejects",
    columns=(
        varchar("topic", not_null=True),
        integer("partition", not_null=True),
        bigint("offset", not_null=True),
        Column("error", "VARCHAR", pa.string(), not_null=True, convert=_cut_error),
        Column("raw", "BLOB", pa.binary()),
        Column("rejected_at", "TIMESTAMPTZ", not_null=True, expr="now()"),
    ),
    key=("topic", "partition", "offset"),
    rule=FirstWins(unique_in_batch=True),  # one reject per message
)

TABLES: Final[tuple[Table, ...]] = (
    EXCEPTIONS,
    SEND_IDS,
    SENDS_MINUTELY,
    FAILURE_WINDOWS,
    ALERTS,
    KAFKA_OFFSETS,
    SINK_REJECTS,
)

# The fields of the stored records that no column holds, and why.
NOT_STORED: Final[dict[type[Any], dict[str, str]]] = {
    SendEvent: {
        "callback_command": "always Group.CallbackAfterSendMsg: the tables are the sends",
        "group_type": "sends are counted per app, group and minute only",
        "from_account": "sends are counted per app, group and minute only",
        "random": "sends are counted per app, group and minute only",
        "msg_seq": "sends are counted per app, group and minute only",
        "received_at_ms": "sends are counted by event time",
    },
    FailureWindow: {
        "window_start": "the ISO text of window_start_ms (column window_start)",
        "window_end": "the ISO text of window_end_ms (column window_end)",
        "updated_at": "the ISO text of updated_at_ms (column updated_at)",
    },
    Alert: {
        "window_start": "the ISO text of window_start_ms (column window_start)",
        "window_end": "the ISO text of window_end_ms (column window_end)",
        "raised_at": "the ISO text of raised_at_ms (column raised_at)",
    },
}

# The contract's records the sink does not consume at all, and why.
NOT_SUNK: Final[dict[type[Any], str]] = {
    DlqRecord: "payloads the ingress or the stream refused stay on the DLQ topic",
    LateEvent: "late events stay on their topic (the stream counts them in its metrics)",
    NotifyFailure: "undelivered notifications stay on their topic (notify counts them)",
}

STAGES: Final[dict[str, Stage]] = stages(TABLES)


def schema_sql() -> str:
    """Every table's ``CREATE TABLE`` statement, in declaration order."""
    return "\n".join(create_sql(t) for t in TABLES)


verify(TABLES, NOT_STORED, NOT_SUNK)
