"""Apply one batch to DuckDB in ONE transaction: rows, rejects and Kafka offsets together.

Every table is written from an Arrow table with one ``INSERT … ON CONFLICT`` after
grouping by the key inside the batch (DuckDB silently collapses duplicate keys within
one statement, so each key must appear once):

* ``exceptions``: insert-once by event_id (first occurrence in the batch wins). Each batch
  is first tried with a plain ``INSERT`` (the primary key still checks every id, against
  the table and within the batch; measured 1.4 to 3 us/row cheaper than ``ON CONFLICT``).
  If an id is already stored or repeats in the batch, DuckDB aborts that transaction;
  it is rolled back and the whole batch applied again with ``DISTINCT ON`` + ``ON
  CONFLICT DO NOTHING``.
* ``send_ids`` + ``sends_minutely``: a send counts once per event_id; only newly stored
  ids are added to the per-minute counts (and to the sends rollups of
  ``analytics/rollups.py``; the exception rollups are refreshed by rowid instead).
* ``failure_windows``: the stored record is the greatest by (final, failures,
  updated_at_ms): a final beats any update, counts never go backwards, a non-final
  arriving after the final never overrides it.
* ``alerts``: the newest raise per key (raised_at_ms).
* ``kafka_offsets``: the next offset to read per (topic, partition), never moved back
  (a handful of rows per batch: a VALUES list in the transaction's script, no Arrow).

``apply_batch`` returns how many exceptions and sends were new (the rest of them were
duplicates); failure windows and alerts are merged states, every decoded one counts as
stored.

A batch the store refuses (``isolate``): if building its Arrow tables or its transaction
fails with an error that can be the data's (see ``_never_data``), its messages are
bisected, each half re-collated and built (then the good ones applied in one
transaction), or, for a failing transaction, applied on its own, until the failing part
is one record. That record is stored in ``sink_rejects`` (with its offset) only if a
*control* record of the same topic (a fixed valid record) passes the very same path
(built and applied in a transaction that is rolled back) at the first such record of
the topic in that isolation. If the control fails too, the
fault is the database's or the code's, not the record's: ``StoreBroken`` stops the sink
loudly instead of turning every record into a reject.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import duckdb
import msgspec
import pyarrow as pa

from analytics import batch as b
from analytics import rollups, tables
from analytics.tablespec import insert_sql, new_keys_name, upsert_sql
from groupwatch.contracts import Topics
from groupwatch.contracts.records import (
    Alert,
    ExceptionEvent,
    FailureWindow,
    SendEvent,
    decode,
    encode,
)

# The statements, generated from the table spec (analytics/tables.py) under each
# table's rule; ``_b_<stage>`` is the batch table registered for it.
INSERT_EXCEPTIONS = upsert_sql(tables.EXCEPTIONS)
# the optimistic form: raises duckdb.ConstraintException if an event_id is already stored
INSERT_EXCEPTIONS_NEW = insert_sql(tables.EXCEPTIONS, deduplicate=False, on_conflict=False)
INSERT_SEND_IDS = upsert_sql(tables.SEND_IDS, returning_key=True)
ADD_SENDS = upsert_sql(tables.SENDS_MINUTELY)
NEW_SENDS = new_keys_name(tables.SENDS_MINUTELY)  # the ids INSERT_SEND_IDS stored
UPSERT_WINDOWS = upsert_sql(tables.FAILURE_WINDOWS)
UPSERT_ALERTS = upsert_sql(tables.ALERTS)
INSERT_REJECTS = upsert_sql(tables.SINK_REJECTS)
# One VALUES row per partition of the batch (a handful), as literals: this statement runs
# in the same execute() as the rest of the transaction (see ``_apply``), and DuckDB binds
# parameters only for the last statement of a script.
UPSERT_OFFSETS = upsert_sql(tables.KAFKA_OFFSETS)


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def upsert_offsets_sql(next_offsets: dict[tuple[str, int], int]) -> str:
    """The statement moving each (topic, partition)'s stored next offset forward.

    A row per partition: (topic, partition, next_offset, updated_at), the columns of
    ``kafka_offsets`` in order.
    """
    rows = ", ".join(
        f"({_sql_str(topic)}, {int(part)}, {int(offset)}, now())"
        for (topic, part), offset in sorted(next_offsets.items())
    )
    return UPSERT_OFFSETS.format(rows=rows)


def _run(con: duckdb.DuckDBPyConnection, name: str, table: object, sql: str) -> None:
    """Run one statement over an Arrow table registered as ``name``.

    On error the name stays registered: an aborted transaction refuses even
    ``unregister``; ``_apply`` unregisters after its ROLLBACK.
    """
    con.register(name, table)
    con.execute(sql).fetchall()
    con.unregister(name)


_EXCEPTIONS = tables.EXCEPTIONS.registered
_SENDS = tables.SEND_IDS.registered
_NAMES = (*(stage.registered for stage in tables.STAGES.values()), NEW_SENDS)


@dataclass
class Applied:
    """What one committed batch stored: new exceptions and sends (the rest: duplicates)."""

    new_exceptions: int = 0
    new_sends: int = 0


def apply_batch(
    con: duckdb.DuckDBPyConnection, batch: b.Batch | b.Prepared, commit: bool = True
) -> Applied:
    """Write the batch and its offsets atomically (all or nothing).

    ``commit=False`` runs the same statements and rolls them back (the control of
    ``isolate``).
    """
    prepared = batch if isinstance(batch, b.Prepared) else b.prepare(batch)
    if "exceptions" in prepared.tables:
        try:
            return _apply(con, prepared, INSERT_EXCEPTIONS_NEW, commit)
        except duckdb.ConstraintException:
            # an event_id already stored, or repeated inside the batch: DuckDB aborted
            # the transaction, it was rolled back; redo it with the de-duplicating form
            # (any other constraint error is raised again by that attempt)
            pass
    return _apply(con, prepared, INSERT_EXCEPTIONS, commit)


# (batch table, registered name, statement) written by one script, in this order
_SCRIPTED = tuple(
    (t.stage, t.registered, sql)
    for t, sql in (
        (tables.FAILURE_WINDOWS, UPSERT_WINDOWS),
        (tables.ALERTS, UPSERT_ALERTS),
        (tables.SINK_REJECTS, INSERT_REJECTS),
    )
)


def _apply(
    con: duckdb.DuckDBPyConnection, prepared: b.Prepared, insert_exceptions: str, commit: bool
) -> Applied:
    """One transaction: every table of the batch, then its offsets; rolled back on error.

    Everything but the sends (whose second statement needs the first one's result) runs
    as ONE script, ``BEGIN`` to ``COMMIT``, in one ``execute()``: each DuckDB call hands
    the GIL back and forth with the fetch thread, and on a busy host every hand-back
    waited milliseconds (see docs/PERFORMANCE-analytics.md).
    """
    batch_tables = prepared.tables
    script: list[str] = []
    registered: list[str] = []
    applied = Applied()
    # the de-duplicating insert runs on its own (its count of new rows is needed); the
    # optimistic one stores every row or fails
    separate_exceptions = "exceptions" in batch_tables and insert_exceptions is INSERT_EXCEPTIONS
    try:
        if "exceptions" in batch_tables:
            con.register(_EXCEPTIONS, batch_tables["exceptions"])
            registered.append(_EXCEPTIONS)
            if not separate_exceptions:
                script.append(insert_exceptions)
                applied.new_exceptions = batch_tables["exceptions"].num_rows
        for key, name, sql in _SCRIPTED:
            if key in batch_tables:
                con.register(name, batch_tables[key])
                registered.append(name)
                script.append(sql)
        if prepared.next_offsets:
            script.append(upsert_offsets_sql(prepared.next_offsets))
        script.append("COMMIT" if commit else "ROLLBACK")
        if "sends" in batch_tables or separate_exceptions:
            con.execute("BEGIN TRANSACTION")
        else:
            script.insert(0, "BEGIN TRANSACTION")
        if separate_exceptions:
            rows = con.execute(insert_exceptions).fetchall()
            applied.new_exceptions = int(rows[0][0]) if rows else 0
        if "sends" in batch_tables:
            con.register(_SENDS, batch_tables["sends"])
            registered.append(_SENDS)
            new_ids = [row[0] for row in con.execute(INSERT_SEND_IDS).fetchall()]
            applied.new_sends = len(new_ids)
            if new_ids:
                table = pa.table({"event_id": pa.array(new_ids, pa.string())})
                # the same new ids added to the sends rollups (analytics/rollups.py)
                _run(con, NEW_SENDS, table, f"{ADD_SENDS}; {rollups.ADD_NEW_SENDS}")
        con.execute(";\n".join(script)).fetchall()
    except BaseException:
        # the error came before BEGIN, or a failed COMMIT already rolled back
        with contextlib.suppress(duckdb.TransactionException):
            con.execute("ROLLBACK")
        for name in _NAMES:
            con.unregister(name)  # a no-op for names not registered
        raise
    for name in registered:
        con.unregister(name)
    return applied


# --- isolating the records the store refuses --------------------------------------------
class StoreBroken(RuntimeError):
    """A write failed where a known-good control record fails too: not the data's fault."""


# Errors that are never one record's fault: the file, the disk, the transaction manager
# or the process (an interrupted or out-of-memory process is not a bad record either).
_NEVER_DATA: tuple[type[BaseException], ...] = (
    duckdb.IOException,
    duckdb.FatalException,
    duckdb.InternalException,
    duckdb.TransactionException,
    duckdb.OutOfMemoryException,
    duckdb.InterruptException,
    duckdb.PermissionException,
    MemoryError,
)


def _never_data(exc: BaseException) -> bool:
    return isinstance(exc, _NEVER_DATA) or not isinstance(exc, Exception)


def _controls(topics: Topics) -> dict[str, bytes]:
    """A fixed valid record per topic the sink reads (never committed anywhere)."""
    t = 1_700_000_000_000
    exception = ExceptionEvent(
        event_id="groupwatch-control",
        sdkappid="1400000000",
        group_id="control",
        group_type="Public",
        from_account="control",
        random=1,
        msg_types=["TIMTextElem"],
        error_code=10004,
        error_info="control",
        error_category="rate_limited",
        event_time_ms=t,
        received_at_ms=t,
        extra={"Control": 1},
    )
    send = SendEvent(
        event_id="groupwatch-control", sdkappid="1400000000", group_id="control",
        event_time_ms=t, received_at_ms=t,
    )  # fmt: skip
    window = FailureWindow(
        sdkappid="1400000000", group_id="control", error_code=10004,
        error_category="rate_limited", window_start="2023-11-14T22:13:00Z",
        window_end="2023-11-14T22:14:00Z", window_start_ms=t, window_end_ms=t + 60_000,
        failures=1, failures_per_minute=1.0, senders=1, first_event_time_ms=t,
        last_event_time_ms=t, group_failures=1, final=False,
        updated_at="2023-11-14T22:13:20Z", updated_at_ms=t,
    )  # fmt: skip
    alert = Alert(
        sdkappid="1400000000", group_id="control", window_start="2023-11-14T22:13:00Z",
        window_end="2023-11-14T22:14:00Z", window_start_ms=t, window_end_ms=t + 60_000,
        reason="threshold", failures=1, threshold=1, baseline_factor=1.0,
        raised_at="2023-11-14T22:13:20Z", raised_at_ms=t,
    )  # fmt: skip
    return {
        topics.exceptions: encode(exception),
        topics.sends: encode(send),
        topics.failure_windows: encode(window),
        topics.alerts: encode(alert),
    }


@dataclass
class Isolated:
    """The outcome of isolating a refused batch: every transaction applied (rejects
    included, in their ``Prepared``), and the records it rejected itself."""

    applied: list[tuple[b.Prepared, Applied]] = field(default_factory=list)
    rejected: list[b.Reject] = field(default_factory=list)


def _describe(exc: BaseException) -> str:
    return f"cannot be stored: {type(exc).__name__}: {exc}"


def isolate(
    con: duckdb.DuckDBPyConnection,
    raws: Sequence[b.RawMessage],
    topics: Topics,
    error: BaseException,
) -> Isolated:
    """Apply ``raws`` (which failed as one batch with ``error``), bisecting to the bad ones.

    First without the database: when building the batch's tables fails, halves are built
    (not applied) down to the records that cannot be built; the rest and those rejects
    are then applied as one transaction. When the transaction itself fails, halves are
    applied in order, so each partition's stored offset only moves forward over records
    stored or rejected. Raises ``error`` itself if it is never the data's fault, and
    ``StoreBroken`` if a control record fails where a record did.
    """
    if _never_data(error):
        raise error
    iso = _Isolation(con, topics)
    raws = list(raws)
    try:
        b.prepare(b.collate(raws, topics))
    except Exception as exc:
        if _never_data(exc):
            raise
        good: list[b.RawMessage] = []
        rejects: list[b.Reject] = []
        iso.split_unbuildable(iso.screen(raws, exc, rejects), exc, good, rejects)
        rejects.sort(key=lambda r: (r.topic, r.partition, r.offset))
        batch = b.collate(good, topics)
        batch.rejects.extend(rejects)
        batch.next_offsets = b.next_offsets_of(raws)
        prepared = b.prepare(batch)
        try:
            iso.out.applied.append((prepared, apply_batch(con, prepared)))
            iso.out.rejected.extend(rejects)
            return iso.out
        except Exception as exc2:  # rolled back: isolate in the database, record by record
            if _never_data(exc2):
                raise
            error = exc2
    iso.bisect(raws, error)
    return iso.out


class _Isolation:
    def __init__(self, con: duckdb.DuckDBPyConnection, topics: Topics) -> None:
        self.con, self.topics = con, topics
        self.controls = _controls(topics)
        self.controlled: set[str] = set()  # topics whose control passed in this isolation
        self.out = Isolated()

    def attempt(self, raws: Sequence[b.RawMessage], commit: bool) -> tuple[b.Prepared, Applied]:
        prepared = b.prepare(b.collate(raws, self.topics))
        return prepared, apply_batch(self.con, prepared, commit=commit)

    def control(self, raw: b.RawMessage, error: BaseException) -> None:
        """Raise StoreBroken unless a valid record of ``raw``'s topic passes the same path."""
        control = self.controls.get(raw.topic)
        if control is None or raw.topic in self.controlled:
            return
        try:
            self.attempt([b.RawMessage(raw.topic, raw.partition, 0, control)], commit=False)
        except Exception as exc:
            raise StoreBroken(
                f"{raw.topic}[{raw.partition}]@{raw.offset} failed ({_describe(error)}) and so "
                f"did a known-good control record ({type(exc).__name__}: {exc}): the "
                "database or the sink, not the record, is at fault"
            ) from exc
        self.controlled.add(raw.topic)

    def screen(
        self, raws: list[b.RawMessage], error: BaseException, rejects: list[b.Reject]
    ) -> list[b.RawMessage]:
        """The records without a value their column cannot hold (``unstorable_reason``,
        checked in Python: microseconds a record, where building each alone costs a
        millisecond); the others go to ``rejects``."""
        kept: list[b.RawMessage] = []
        errors = (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError)
        for raw in raws:
            kind = b.record_type(self.topics, raw.topic)
            reason = None
            if kind is not None and raw.value is not None:
                with contextlib.suppress(*errors):  # undecodable: collate rejects it
                    reason = b.unstorable_reason(decode(raw.value, kind))
            if reason is None:
                kept.append(raw)
                continue
            self.control(raw, error)
            message = f"cannot be stored: {reason}"
            rejects.append(b.Reject(raw.topic, raw.partition, raw.offset, message, raw.value))
        return kept

    def split_unbuildable(
        self,
        raws: list[b.RawMessage],
        error: BaseException,
        good: list[b.RawMessage],
        rejects: list[b.Reject],
    ) -> None:
        """Sort ``raws`` (in order) into those whose tables can be built and rejects."""
        if len(raws) == 1:
            self.control(raws[0], error)
            raw = raws[0]
            rejects.append(
                b.Reject(raw.topic, raw.partition, raw.offset, _describe(error), raw.value)
            )
            return
        middle = len(raws) // 2
        for half in (raws[:middle], raws[middle:]):
            try:
                b.prepare(b.collate(half, self.topics))
                good.extend(half)
            except Exception as exc:
                if _never_data(exc):
                    raise
                self.split_unbuildable(half, exc, good, rejects)

    def bisect(self, raws: list[b.RawMessage], error: BaseException) -> None:
        if len(raws) == 1:
            self.reject_one(raws[0], error)
            return
        middle = len(raws) // 2
        for half in (raws[:middle], raws[middle:]):
            try:
                self.out.applied.append(self.attempt(half, commit=True))
            except Exception as exc:
                if _never_data(exc):
                    raise
                self.bisect(half, exc)

    def reject_one(self, raw: b.RawMessage, error: BaseException) -> None:
        self.control(raw, error)
        reject = b.Reject(raw.topic, raw.partition, raw.offset, _describe(error), raw.value)
        key = (raw.topic, raw.partition)
        batch = b.Batch(rejects=[reject], next_offsets={key: raw.offset + 1})
        prepared = b.prepare(batch)
        # a failure here is the store's: it propagates
        self.out.applied.append((prepared, apply_batch(self.con, prepared)))
        self.out.rejected.append(reject)


# Sends are de-duplicated by event_id within this much event time (duplicates come from
# producer retries and spool replays: minutes, not days). Older ids are forgotten.
SEND_ID_RETENTION_HOURS = 48

PRUNE_SEND_IDS = f"""
DELETE FROM send_ids
WHERE event_time < (SELECT max(event_time) FROM send_ids)
                   - INTERVAL {SEND_ID_RETENTION_HOURS} HOUR
"""


def prune_send_ids(con: duckdb.DuckDBPyConnection) -> int:
    """Forget send ids older than the retention (relative to the newest send seen)."""
    rows = con.execute(PRUNE_SEND_IDS).fetchall()
    return int(rows[0][0]) if rows else 0


def stored_offsets(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, int], int]:
    """Every (topic, partition) -> next offset the database has applied."""
    rows = con.execute('SELECT topic, "partition", next_offset FROM kafka_offsets').fetchall()
    return {(str(t), int(p)): int(o) for t, p, o in rows}
