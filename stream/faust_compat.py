"""The one module that touches private names of faust, aiokafka, mode and Faust's RocksDB store.

The worker goes below Faust's public API in seven places, all of them here:

- **the batch drain** (``install_batch_drain``): Faust's fetcher hands every record to the
  conductor one at a time (a ``ConsumerMessage``, an ``Event``, a ``wait_first`` with new
  tasks per record, the stream's buffers): on this VM that path alone reaches only a few
  thousand records/s. The drain replaces the fetcher's drain loop of the app's consumer
  (``Consumer._drain_messages``): each fetched record map goes to ``handler`` as one list of
  ``(topic, partition, offset, value, key)`` for the batch topics; records of other topics
  (Faust's own) still go through Faust's per-record callback. Faust keeps the group, the
  assignment, pausing during table recovery, flow control on rebalance and the commits:
  the batch's offsets are acknowledged (Faust's ``_acked`` bookkeeping) only after
  ``handler`` returned, so a commit (which flushes the producer first) never covers a
  record whose writes were not handed to the producer. ``lock`` is held while a batch is
  handled; a rebalance handler acquires it to wait for the batch in flight (Faust's
  ``wait_empty`` does not see records it did not track).
- **the producer linger** (``end_linger``): closes the open aiokafka batches of some
  topics and wakes the sender, as aiokafka's ``flush_for_commit`` does for all batches.
- **the producer's open batches** (``Appender``): appends a record to the open aiokafka
  batch of its topic-partition in one call, what ``AIOKafkaProducer.send`` ends in after
  four coroutines (Faust's ``send``, aiokafka's ``send``, its metadata wait and
  ``add_message``); anything else (a full batch, unknown metadata, a record near the
  request size limit, a transactional or idempotent producer, a closed or failed
  accumulator) goes through Faust's ``send``.
- **the consumer's fetch positions** (``fetch_state``, ``committed_offset``).
- **the group membership** (``group_coordinator``, ``membership``, ``watch_membership``):
  the coordinator's generation and member id, whether a rejoin is due, and when the last
  SyncGroup or heartbeat the broker answered was sent (``stream.fence``'s lease).
- **the local table store** (``LocalStore``, ``stored_epoch``): writes to one partition's
  RocksDB without a current event, keeping Faust's key index; the partition's highest
  changelog epoch beside Faust's offset key.
- **the changelog restore** (``install_epoch_filter``): the table's
  ``apply_changelog_batch`` (recovery) skips records of an ended ownership
  (``stream.epochs``).

Every private name (and public name of a private object) these rely on is listed once in
``INTERNALS``; ``require`` checks them and the exact versions in ``BUILT_FOR`` before a
worker starts (a mismatch is one sentence naming the package or the attribute), and the
canary test (tests/stream/test_faust_compat.py) checks the same list. Nothing here falls
back quietly: an internal that changed raises, naming it.
"""

from __future__ import annotations

import ast
import asyncio
import importlib
import inspect
import logging
import re
import sys
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from typing import Any, Final, Literal

from stream import epochs
from stream import metrics as m
from stream.batch import Record
from stream.setup import StreamSetupError

log = logging.getLogger("groupwatch.stream")

# The exact versions the internals below were read from (pinned in pyproject.toml and
# constraints.txt; a test checks the three agree).
BUILT_FOR: Final = {
    "faust-streaming": "0.15.3",
    "aiokafka": "0.14.0",
    "mode-streaming": "0.7.1",
}

# returns the (topic, partition)s whose records it refused: sought back, not acknowledged
Handler = Callable[[list[Record]], Awaitable[Collection[tuple[str, int]] | None]]

Kind = Literal["attribute", "property", "method", "coroutine"]


class FaustCompatError(StreamSetupError):
    """The installed faust / aiokafka / mode is not the one the worker was built for."""


class AgentPathError(RuntimeError):
    """A record reached the Faust agent: the batch drain is not installed."""


@dataclass(frozen=True)
class Internal:
    """One name the adapter relies on: ``owner`` (``module:Class``) has ``name`` of ``kind``.

    ``params`` are a method's parameter names after ``self`` (None: not checked).
    """

    owner: str
    name: str
    kind: Kind
    params: tuple[str, ...] | None = None
    used_for: str = ""

    def __str__(self) -> str:
        return f"{self.owner.replace(':', '.')}.{self.name}"


_CONSUMER = "faust.transport.drivers.aiokafka:Consumer"
_TP_STATE = "aiokafka.consumer.subscription_state:TopicPartitionState"
_ACCUMULATOR = "aiokafka.producer.message_accumulator:MessageAccumulator"
_COORDINATOR = "aiokafka.consumer.group_coordinator:GroupCoordinator"

INTERNALS: Final[tuple[Internal, ...]] = (
    # the batch drain: Faust's consumer (the aiokafka driver's, used for kafka:// brokers)
    Internal(_CONSUMER, "_drain_messages", "coroutine", ("fetcher",), "replaced by the drain"),
    Internal(_CONSUMER, "_stopped", "attribute", None, "the drain loop's stop flag"),
    Internal("faust.transport.consumer:Fetcher", "_stopped", "attribute", None, "stop flag"),
    Internal(_CONSUMER, "_wait_next_records", "coroutine", ("timeout",), "one fetch"),
    Internal(_CONSUMER, "_buffered_partitions", "attribute", None, "fetched while paused"),
    Internal(_CONSUMER, "_read_offset", "attribute", None, "last offset read per tp"),
    Internal(_CONSUMER, "_add_gap", "coroutine", ("tp", "offset_from", "offset_to"), "gaps"),
    Internal(_CONSUMER, "_to_message", "method", ("tp", "record"), "Faust's own topics"),
    Internal(_CONSUMER, "_n_acked", "attribute", None, "acks since the last commit"),
    Internal(_CONSUMER, "_commit_every", "attribute", None, "broker_commit_every"),
    Internal(_CONSUMER, "_committed_offset", "attribute", None, "committed offset per tp"),
    Internal(_CONSUMER, "_acked", "attribute", None, "acked offsets per tp, for commits"),
    Internal(_CONSUMER, "flow_active", "attribute", None, "false during a rebalance"),
    Internal(_CONSUMER, "should_stop", "property", None, "stopping"),
    Internal(_CONSUMER, "perform_seek", "coroutine", (), "seek back to the commit"),
    Internal(_CONSUMER, "callback", "attribute", None, "Faust's per-record path"),
    Internal(_CONSUMER, "commit", "coroutine", ("topics", "start_new_transaction"), "commit"),
    Internal(_CONSUMER, "consumer_stopped_errors", "attribute", None, "stopped driver"),
    # the consumer's fetch positions (idle close)
    Internal(_CONSUMER, "_thread", "attribute", None, "the consumer thread"),
    Internal(
        "faust.transport.drivers.aiokafka:AIOKafkaConsumerThread",
        "_ensure_consumer",
        "method",
        (),
        "the aiokafka consumer",
    ),
    Internal("aiokafka.consumer.consumer:AIOKafkaConsumer", "_subscription", "attribute"),
    Internal("aiokafka.consumer.subscription_state:SubscriptionState", "subscription", "property"),
    Internal("aiokafka.consumer.subscription_state:Subscription", "assignment", "property"),
    Internal("aiokafka.consumer.subscription_state:Assignment", "state_value", "method", ("tp",)),
    Internal(_TP_STATE, "has_valid_position", "property"),
    Internal(_TP_STATE, "paused", "property"),
    Internal(_TP_STATE, "position", "property"),
    Internal(_TP_STATE, "highwater", "attribute", None, "last fetched high watermark"),
    Internal(_TP_STATE, "timestamp", "attribute", None, "time of the last fetch response"),
    # the group membership (stream.fence)
    Internal("aiokafka.consumer.consumer:AIOKafkaConsumer", "_coordinator", "attribute"),
    Internal(_COORDINATOR, "_send_req", "coroutine", ("request",), "group replies: the lease"),
    Internal(_COORDINATOR, "generation", "attribute", None, "the member's generation"),
    Internal(_COORDINATOR, "member_id", "attribute", None, "empty once the broker dropped it"),
    Internal(_COORDINATOR, "_rejoin_needed_fut", "attribute", None, "a rebalance is due"),
    # the producer linger
    Internal("faust.transport.drivers.aiokafka:Producer", "_ensure_producer", "method", ()),
    Internal("aiokafka.producer.producer:AIOKafkaProducer", "_message_accumulator", "attribute"),
    Internal(_ACCUMULATOR, "_batches", "attribute", None, "open batches per tp"),
    Internal(_ACCUMULATOR, "_waiter_future", "attribute", None, "wakes the sender"),
    Internal("aiokafka.producer.message_accumulator:MessageBatch", "_builder", "attribute"),
    Internal("aiokafka.producer.message_accumulator:BatchBuilder", "close", "method", ()),
    # the producer's open batches (Appender)
    Internal("aiokafka.producer.producer:AIOKafkaProducer", "_txn_manager", "attribute"),
    Internal("aiokafka.producer.producer:AIOKafkaProducer", "client", "attribute"),
    Internal("aiokafka.producer.producer:AIOKafkaProducer", "_max_request_size", "attribute"),
    Internal("aiokafka.cluster:ClusterMetadata", "partitions_for_topic", "method", ("topic",)),
    Internal(_ACCUMULATOR, "_closed", "attribute", None, "closed: Faust's send raises"),
    Internal(_ACCUMULATOR, "_exception", "attribute", None, "failed: Faust's send raises"),
    Internal(
        _ACCUMULATOR, "create_builder", "method", ("key_serializer", "value_serializer"), "new"
    ),
    Internal(_ACCUMULATOR, "_append_batch", "method", ("builder", "tp"), "open a batch"),
    Internal(
        "aiokafka.producer.message_accumulator:MessageBatch",
        "append",
        "method",
        ("key", "value", "timestamp_ms", "_create_future", "headers"),
        "None when full",
    ),
    # the local table store
    Internal("faust.stores.rocksdb:Store", "_db_for_partition", "method", ("partition",)),
    Internal("faust.stores.rocksdb:Store", "set_persisted_offset", "method", ("tp", "offset")),
    Internal(
        "faust.tables.base:Collection",
        "apply_changelog_batch",
        "method",
        ("batch",),
        "replaced by the epoch filter",
    ),
    Internal("faust.types.tuples:Message", "headers", "attribute", None, "the record epoch"),
    Internal("rocksdict:Rdict", "get", "method"),
    Internal("faust.stores.rocksdb:Store", "_key_index", "attribute", None, "key -> partition"),
    Internal("rocksdict:Rdict", "write", "method"),
    Internal("rocksdict:WriteBatch", "put", "method"),
    Internal("rocksdict:WriteBatch", "delete", "method"),
    Internal("rocksdict:WriteBatch", "is_empty", "method"),
    Internal("rocksdict:WriteBatch", "clear", "method"),
)


# --- the start-up gate -----------------------------------------------------------------
def version_problems(installed: Callable[[str], str] = metadata.version) -> list[str]:
    """One sentence per package whose installed version is not ``BUILT_FOR``'s."""
    problems = []
    for package, wanted in BUILT_FOR.items():
        try:
            found = installed(package)
        except metadata.PackageNotFoundError:
            found = "not installed"
        if found != wanted:
            problems.append(
                f"the stream worker is built for {package}=={wanted} but found {found}:"
                " install the pinned versions (pip install -c constraints.txt -e .), or read"
                " the new version's internals into stream/faust_compat.py and its canary test"
            )
    return problems


def resolve(owner: str) -> type:
    """The class named ``module:Class``."""
    module_name, _, qualname = owner.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def internal_problem(internal: Internal) -> str | None:
    """Why ``internal`` does not hold in the installed libraries, or None."""
    try:
        cls = resolve(internal.owner)
    except (ImportError, AttributeError) as exc:
        return f"{internal}: cannot import {internal.owner} ({exc})"
    name = internal.name
    static = _static(cls, name)
    if internal.kind == "attribute":
        if static is not _MISSING and (callable(static) or isinstance(static, property)):
            return f"{internal}: expected a plain attribute, found {type(static).__name__}"
        if static is _MISSING and not has_instance_attribute(cls, name):
            return f"{internal}: no such attribute (not set by {cls.__name__} or its bases)"
        return None
    if static is _MISSING:
        return f"{internal}: no such {internal.kind}"
    if internal.kind == "property":
        if not isinstance(static, property):
            return f"{internal}: expected a property, found {type(static).__name__}"
        return None
    func = getattr(cls, name)
    if not callable(func):
        return f"{internal}: expected a {internal.kind}, found {type(func).__name__}"
    is_coroutine = inspect.iscoroutinefunction(func)
    if is_coroutine != (internal.kind == "coroutine"):
        found = "coroutine function" if is_coroutine else "plain function"
        return f"{internal}: expected a {internal.kind}, found a {found}"
    if internal.params is not None:
        params = tuple(inspect.signature(func).parameters)[1:]  # after self
        if params != internal.params:
            return (
                f"{internal}: expected parameters ({', '.join(internal.params)}),"
                f" found ({', '.join(params)})"
            )
    return None


def internal_problems(internals: Iterable[Internal] = INTERNALS) -> list[str]:
    return [p for p in (internal_problem(i) for i in internals) if p is not None]


@cache
def _require() -> None:
    problems = version_problems() or internal_problems()
    if problems:
        raise FaustCompatError(problems[0] + _more(problems))


def require() -> None:
    """Refuse to start unless the exact versions are installed and every internal holds."""
    _require()  # cached once it passed (a failure raises again on the next call)


def _more(problems: list[str]) -> str:
    return f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""


_MISSING: Final = object()


def _static(cls: type, name: str) -> Any:
    try:
        return inspect.getattr_static(cls, name)
    except AttributeError:
        return _MISSING


def has_instance_attribute(cls: type, name: str) -> bool:
    """Whether ``cls`` or a base annotates ``name`` or assigns ``self.<name>`` in its source.

    The cheap places first (annotations, then the ``__init__`` methods); the whole class
    source of every base is parsed only when those do not have it.
    """
    mro = [k for k in cls.__mro__ if k is not object]
    if any(name in inspect.get_annotations(k) for k in mro):
        return True
    assigned = re.compile(rf"\bself\.{re.escape(name)}\s*(?::[^=\n]*)?=(?!=)")
    for klass in mro:
        init = klass.__dict__.get("__init__")
        if inspect.isfunction(init) and assigned.search(inspect.getsource(init)):
            return True
    return any(name in _assigned_in_source(klass) for klass in mro)


@cache
def _assigned_in_source(klass: type) -> frozenset[str]:
    module = sys.modules.get(klass.__module__)
    if module is None or getattr(module, "__file__", None) is None:
        return frozenset()
    for node in ast.parse(inspect.getsource(module)).body:
        if isinstance(node, ast.ClassDef) and node.name == klass.__name__:
            return frozenset(_self_targets(node))
    return frozenset()


def _self_targets(cls_node: ast.ClassDef) -> Iterator[str]:
    for node in ast.walk(cls_node):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign | ast.AugAssign):
            targets = [node.target]
        for target in targets:
            for t in ast.walk(target):
                if (
                    isinstance(t, ast.Attribute)
                    and isinstance(t.value, ast.Name)
                    and t.value.id == "self"
                ):
                    yield t.attr


# --- the batch drain -------------------------------------------------------------------
def install_batch_drain(
    app: Any, topics: Iterable[str], handler: Handler, lock: asyncio.Lock
) -> None:
    """Make ``app``'s fetcher pass whole fetched batches of ``topics`` to ``handler``."""
    require()
    consumer: Any = app.consumer
    if not isinstance(app.consumer, resolve(_CONSUMER)):
        raise FaustCompatError(
            f"the app's consumer is a {type(consumer).__qualname__}, not the"
            f" {_CONSUMER.replace(':', '.')} whose internals the batch drain uses"
        )
    batch_topics = frozenset(topics)

    async def drain(fetcher: Any) -> None:
        consumer_stopped = consumer._stopped.is_set
        fetcher_stopped = fetcher._stopped.is_set
        try:
            while not (consumer_stopped() or fetcher_stopped()):
                await asyncio.sleep(0)
                records, active = await consumer._wait_next_records(1.0)
                if not records or consumer.should_stop:
                    continue
                generation = app.consumer_generation_id
                async with lock:
                    if not consumer.flow_active or generation != app.consumer_generation_id:
                        # a rebalance started while fetching: Faust seeks back to the
                        # committed offsets, the records are fetched again
                        await consumer.perform_seek()
                        continue
                    await _handle(records, active)
        except consumer.consumer_stopped_errors:
            if app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if app.should_stop:
                return
            raise

    async def _handle(records: Any, active: Any) -> None:
        batch: list[Record] = []
        acked: dict[Any, Sequence[int]] = {}
        others: list[tuple[Any, Any]] = []
        buffered = consumer._buffered_partitions
        read_offset = consumer._read_offset
        add = batch.append
        for tp, recs in records.items():
            if active is not None and tp not in active and tp not in buffered:
                continue
            last = read_offset[tp]
            if tp.topic not in batch_topics:
                others.extend((tp, r) for r in recs)
                continue
            topic, partition = tp.topic, tp.partition
            start = len(batch)
            dense = True  # every record taken is the one right after the previous
            for r in recs:
                offset = r.offset
                if last is not None:
                    step = offset - last
                    if step != 1:
                        if step < 0:
                            continue  # already read (Faust drops these too)
                        dense = False
                        if step > 1:
                            await consumer._add_gap(tp, last + 1, offset)
                add((topic, partition, offset, r.value, r.key))
                last = offset
            if len(batch) > start:
                # the offsets to acknowledge: one range when they are consecutive (the
                # usual case), else each one
                acked[tp] = (
                    range(batch[start][2], last + 1) if dense else [rec[2] for rec in batch[start:]]
                )
                read_offset[tp] = last
        if batch:
            refused = await handler(batch) or ()
            m.DRAINED_BATCHES.inc()
            for tp, offsets in acked.items():
                if (tp.topic, tp.partition) in refused:
                    continue  # sought back by the handler: read again
                if offsets and app.topics.acks_enabled_for(tp.topic):
                    _ack(tp, offsets)
        for tp, r in others:  # Faust's own topics: its per-record path
            last = read_offset[tp]
            if last is None or r.offset >= last:
                await consumer.callback(consumer._to_message(tp, r))
                read_offset[tp] = r.offset
        if consumer._n_acked >= (consumer._commit_every or 1 << 62):
            consumer._n_acked = 0
            await consumer.commit()

    def _ack(tp: Any, offsets: Sequence[int]) -> None:
        committed = consumer._committed_offset[tp]
        if committed is not None:
            if isinstance(offsets, range):
                offsets = range(max(offsets.start, committed), offsets.stop)
            else:
                offsets = [o for o in offsets if o >= committed]
        consumer._acked[tp].extend(offsets)
        consumer._n_acked += len(offsets)

    consumer._drain_messages = drain


def refuse_agent_record(topic: str, partition: int, offset: int) -> None:
    """Raise for a record that reached the agent instead of the batch drain."""
    raise AgentPathError(
        f"record {topic}[{partition}]@{offset} reached the Faust agent: the batch drain"
        " (install_batch_drain, replacing faust's Consumer._drain_messages) is not in use"
    )


# --- the producer linger ---------------------------------------------------------------
def end_linger(producer: Any, topics: Collection[str]) -> None:
    """Close the open aiokafka batches of ``topics`` and wake the sender (sent at once)."""
    acc = producer._ensure_producer()._message_accumulator
    for tp, batches in acc._batches.items():
        if tp.topic in topics:
            for open_batch in batches:
                open_batch._builder.close()
    waiter = acc._waiter_future
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


# --- the producer's open batches ------------------------------------------------------
class Appender:
    """Appends records of known topic-partitions to aiokafka's open batch, in one call.

    ``append(topic, partition, key, value)`` returns the record's delivery future, as
    Faust's ``Producer.send`` would, or None when the direct append does not apply: then
    the caller sends the record through Faust's ``send`` (which waits, raises or fetches
    metadata as it always did). Order, batching, linger, acks and retries are the
    sender's, unchanged; only the per-record coroutines in front of the accumulator are
    skipped.
    """

    __slots__ = ("append",)

    def __init__(self, producer: Any) -> None:
        from aiokafka.structs import TopicPartition

        aio = producer._ensure_producer()
        acc = aio._message_accumulator
        batches, known = acc._batches, aio.client.cluster.partitions_for_topic
        new_batch, new_builder = acc._append_batch, acc.create_builder
        tps: dict[tuple[str, int], Any] = {}
        no_headers: list[tuple[str, bytes]] = []
        # near the request limit, Faust's send does aiokafka's exact size check (and raises)
        direct_max = aio._max_request_size - 1024

        def append(
            topic: str,
            partition: int,
            key: bytes | None,
            value: bytes | None,
            headers: list[tuple[str, bytes]] | None = None,
        ) -> Any:
            if aio._txn_manager is not None or acc._closed or acc._exception is not None:
                return None
            if len(key or b"") + len(value or b"") > direct_max:
                return None
            tp = tps.get((topic, partition))
            if tp is None:
                if partition not in (known(topic) or ()):
                    return None  # Faust's send waits for the metadata
                tp = tps[(topic, partition)] = TopicPartition(topic, partition)
            pending = batches.get(tp)
            batch = pending[-1] if pending else new_batch(new_builder(), tp)
            # None when full; aiokafka's record builder takes a list
            return batch.append(key, value, None, headers=headers or no_headers)

        self.append: Callable[..., Any] = append


# --- the consumer's positions ----------------------------------------------------------
@dataclass(frozen=True, slots=True)
class FetchState:
    """What the consumer last knew of one assigned topic-partition."""

    position: int | None  # the next offset to fetch (None: not known yet)
    highwater: int | None  # of the last fetch response
    fetched_ms: int | None  # when the last fetch response came (ms since the epoch)
    paused: bool


def consumer_assignment(app: Any) -> Any | None:
    """The aiokafka consumer's current assignment, or None before it started or assigned."""
    from faust.exceptions import ConsumerNotStarted

    try:
        consumer = app.consumer._thread._ensure_consumer()
    except ConsumerNotStarted:
        return None
    subscription = consumer._subscription.subscription
    return None if subscription is None else subscription.assignment


def fetch_state(assignment: Any, tp: Any) -> FetchState | None:
    """``tp``'s fetch state in ``assignment`` (``consumer_assignment``), None if unassigned."""
    state = assignment.state_value(tp)
    if state is None:
        return None
    valid = state.has_valid_position
    return FetchState(
        position=state.position if valid else None,
        highwater=state.highwater,
        fetched_ms=state.timestamp,
        paused=state.paused,
    )


# --- the group membership --------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Membership:
    """What the consumer's group coordinator knows of this member."""

    generation: int  # -1 once the broker no longer knows the member
    member_id: str  # empty once the broker no longer knows the member
    rejoining: bool  # a rebalance is due (the member learnt it, the callbacks follow)


def group_coordinator(app: Any) -> Any | None:
    """The aiokafka consumer's group coordinator, or None before the consumer started."""
    from faust.exceptions import ConsumerNotStarted

    try:
        consumer = app.consumer._thread._ensure_consumer()
    except ConsumerNotStarted:
        return None
    return consumer._coordinator


def membership(coordinator: Any) -> Membership:
    """The coordinator's view of the membership (read from another thread: plain values)."""
    return Membership(
        generation=coordinator.generation,
        member_id=coordinator.member_id,
        rejoining=coordinator._rejoin_needed_fut.done(),
    )


def watch_membership(coordinator: Any, on_ok: Callable[[float], None]) -> None:
    """Call ``on_ok(sent)`` (``time.monotonic()`` when it was sent) per SyncGroup or
    heartbeat request the group coordinator answered without error: the broker knew the
    member then and restarted its session (aiokafka keeps those times to itself)."""
    from aiokafka.protocol.group import HeartbeatRequest, SyncGroupRequest

    watchers: list[Callable[[float], None]] | None
    watchers = getattr(coordinator, "_groupwatch_watchers", None)
    if watchers is None:
        watchers = coordinator._groupwatch_watchers = []
        original = coordinator._send_req

        async def send_req(request: Any) -> Any:
            sent = time.monotonic()
            response = await original(request)
            if isinstance(request, HeartbeatRequest | SyncGroupRequest) and not getattr(
                response, "error_code", 1
            ):
                for watcher in watchers:
                    watcher(sent)
            return response

        coordinator._send_req = send_req
    if on_ok not in watchers:
        watchers.append(on_ok)


def committed_offset(consumer: Any, tp: Any) -> int | None:
    """The offset Faust last committed for ``tp`` (None: none yet)."""
    offset: int | None = consumer._committed_offset.get(tp)
    return offset


# --- the local table store -------------------------------------------------------------
class LocalStore:
    """Writes to one partition of a Faust RocksDB table's local store, without an event.

    Faust finds a key's partition through the current event or its key index; a batch has
    no current event, so the key index is kept here as Faust's own ``_set`` does. Puts and
    deletes are collected in one RocksDB ``WriteBatch`` (as Faust's own changelog recovery
    writes) and applied, in order, by ``write``.
    """

    __slots__ = ("delete", "put", "put_epoch", "write")

    def __init__(self, table: Any, partition: int) -> None:
        from rocksdict import WriteBatch

        store = table.data
        db = store._db_for_partition(partition)
        key_index = store._key_index
        batch = [WriteBatch(raw_mode=True)]  # a written WriteBatch cannot be used again
        forget = key_index.pop

        def put(key: bytes, value: bytes) -> None:
            key_index[key] = partition
            batch[0].put(key, value)

        def delete(key: bytes) -> None:
            forget(key, None)
            batch[0].delete(key)

        def put_epoch(epoch: int) -> None:  # not a table key: no key index entry
            batch[0].put(epochs.STORE_KEY, epochs.encode_stored(epoch))

        def write() -> None:
            if not batch[0].is_empty():
                db.write(batch[0])
                batch[0] = WriteBatch(raw_mode=True)

        self.put: Callable[[bytes, bytes], None] = put
        self.delete: Callable[[bytes], None] = delete
        self.put_epoch: Callable[[int], None] = put_epoch
        self.write: Callable[[], None] = write


def stored_epoch(table: Any, partition: int) -> int | None:
    """The highest changelog epoch applied to ``partition``'s local store (None: none)."""
    return _db_epoch(table.data._db_for_partition(partition))


def _db_epoch(db: Any) -> int | None:
    return epochs.decode_stored(db.get(epochs.STORE_KEY))


def install_epoch_filter(table: Any) -> None:
    """Restore batches of ``table``'s changelog skip records of an ended
    ownership (``stream.epochs``).

    Replaces the table's ``apply_changelog_batch`` (Faust's recovery calls it with each
    buffer of changelog events) with the RocksDB store's own, per record in log order, plus
    the epoch gate: each partition's puts and deletes, and its new highest epoch, in one
    ``WriteBatch``; then the persisted offsets, as Faust does (an ignored record counts as
    read).
    """
    from rocksdict import WriteBatch

    def apply_changelog_batch(batch: Iterable[Any]) -> None:
        store = table.data
        gate = epochs.EpochGate()
        writes: dict[int, Any] = {}
        offsets: dict[Any, int] = {}
        for event in batch:
            msg = event.message
            tp, offset, partition = msg.tp, msg.offset, msg.partition
            if offsets.get(tp, -1) < offset:
                offsets[tp] = offset
            if not gate.known(partition):
                gate.start(partition, _db_epoch(store._db_for_partition(partition)))
            if not gate.admit(partition, epochs.record_epoch(msg.headers)):
                continue
            wb = writes.get(partition)
            if wb is None:
                wb = writes[partition] = WriteBatch(raw_mode=True)
            if msg.value is None:
                wb.delete(msg.key)
            else:
                wb.put(msg.key, msg.value)
        for partition in gate.changed:
            wb = writes.get(partition)
            if wb is None:
                wb = writes[partition] = WriteBatch(raw_mode=True)
            epoch = gate.current[partition]
            assert epoch is not None  # it rose
            wb.put(epochs.STORE_KEY, epochs.encode_stored(epoch))
        for partition, wb in writes.items():
            store._db_for_partition(partition).write(wb)
        for tp, offset in offsets.items():
            store.set_persisted_offset(tp, offset)
        if gate.ignored:
            m.CHANGELOG_IGNORED.inc(gate.ignored)
            log.warning(
                "changelog restore: %d records of an ended ownership ignored (partitions"
                " %s now at epoch %s)",
                gate.ignored, sorted(gate.current), gate.current,
            )  # fmt: skip

    table.apply_changelog_batch = apply_changelog_batch
