"""``groupwatch sink``: the one process that writes the DuckDB file, exactly once.

Each batch (up to ``sink_batch_rows`` records or ``sink_batch_ms``) is applied with its
Kafka offsets in one DuckDB transaction. A fetch thread consumes, decodes and builds the
Arrow tables of the next batch while this one is applied (DuckDB releases the GIL while
it inserts and commits); at most ``PREPARED_AHEAD`` (one) prepared batch waits.
Checkpoints run between batches (``analytics/checkpoints.py``), never inside a batch's
commit. On partition assignment the
consumer seeks to the offsets stored in DuckDB; a batch fetched before that assignment is
dropped unapplied (``generation``). Kafka's committed offsets are written afterwards only
so lag tools see progress and are never read back.
"""

from __future__ import annotations

import gc
import ipaddress
import logging
import operator
import queue
import signal
import threading
import time
from collections.abc import Callable, Sequence
from itertools import repeat
from types import FrameType
from typing import cast

import duckdb
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition

from analytics.apply import Applied, apply_batch, isolate, prune_send_ids, stored_offsets
from analytics.batch import Prepared, collate, next_offsets_of, prepare
from analytics.checkpoints import Checkpoints, automatic_threshold_mb
from analytics.db import open_writer, writer_threads
from analytics.metrics import SinkStats
from analytics.migrations import migrate
from analytics.raws import RawMessage, RawMessages
from analytics.server import QueryServer, create_app
from analytics.snapshot import Snapshotter, take_snapshot
from analytics.worker import ForkGate, Limits
from groupwatch.contracts import Settings, Topics
from groupwatch.contracts.membership import MembershipWatchdog, close_within
from groupwatch.contracts.startup import list_topics

log = logging.getLogger(__name__)

PRUNE_EVERY_SECONDS = 600

SESSION_TIMEOUT_MS = 10000
# A consumer holding no partition while the cluster has answered for this long is rebuilt
# (groupwatch/contracts/membership.py): nine session timeouts, well past the longest join
# seen (~35 s after the broker's return from a SIGKILL, in the fault suite).
WATCHDOG_AFTER_S = 9 * SESSION_TIMEOUT_MS / 1000

# While automatic garbage collection is off (``groupwatch sink`` turns it off, see
# ``sink_process_tuning`` in analytics/commands.py), the loop collects between batches,
# every GC_EVERY_SECONDS, for the few cycles other code (HTTP handlers, errors) may leave.
GC_EVERY_SECONDS = 5.0

# Prepared batches the fetch thread may have waiting for the apply loop. 8 (to keep it busy
# through a checkpoint between batches) was slower: at 500,000 rows 139-147k vs 151-157k
# rows/s with 1, CPU 10.5 vs 9.8-10.0 us/row (a fetch thread that never waits takes the
# cores the transactions and the checkpoint need; docs/PERFORMANCE-analytics.md).
PREPARED_AHEAD = 1


def check_loopback(host: str, allow_non_loopback: bool = False) -> None:
    """The SQL endpoint is for this machine only (or, explicitly, for a container's host)."""
    if host == "localhost" or allow_non_loopback:
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise ValueError(
        f"GROUPWATCH_QUERY_HOST must be a loopback address, got {host!r} (inside a container "
        "whose port is published on 127.0.0.1, set GROUPWATCH_QUERY_ALLOW_NON_LOOPBACK=1)"
    )


class Sink:
    """Consumer loop + served SQL + snapshots around one writer connection."""

    def __init__(self, settings: Settings, serve: bool = True, snapshots: bool = True) -> None:
        check_loopback(settings.query_host, settings.query_allow_non_loopback)
        self.settings = settings
        self.topics = Topics.from_settings(settings)
        t = self.topics
        # the records counter's topic label: the topic's suffix
        self.labels = {
            t.exceptions: "exceptions",
            t.sends: "sends",
            t.failure_windows: "failure-windows",
            t.alerts: "alerts",
        }
        self.stats = SinkStats()
        self.stopping = threading.Event()
        self.con = open_writer(
            settings.duckdb_path,
            settings.snapshot_path,
            threads=writer_threads(settings.sink_duckdb_threads),
            # DuckDB's own checkpoint (inside a commit) only as a safety net: the sink
            # checkpoints between batches at sink_checkpoint_mb
            checkpoint_mb=automatic_threshold_mb(settings.sink_checkpoint_mb),
            lock=False,  # each served query's worker sets its limits, then locks its copy
        )
        self.checkpoints = Checkpoints(
            self.con, settings.duckdb_path, settings.sink_checkpoint_mb, self.stats
        )
        # set by the fetch thread: its last consume() filled a whole batch (catching up)
        self.backlogged = False
        migrate(self.con)
        # Served queries (forked, analytics/worker.py) and snapshots use cursors of this
        # connection, never self.con. Every thread that enters DuckDB holds gate.shared;
        # a served query forks under gate.exclusive.
        self.gate = ForkGate()
        self.reader_parent = self.con.cursor()
        self.offsets_reader = self.con.cursor()
        self.apply_lock = threading.Lock()
        self.generation = 0
        self.positions: dict[tuple[str, int], int] = {}
        self.lag_offsets: dict[tuple[str, int], int] = {}
        self.lag_lock = threading.Lock()  # lag_offsets: written by apply, read by fetch
        self.server: QueryServer | None = None
        if serve:
            limits = Limits(
                timeout_s=settings.query_timeout_seconds,
                max_rows=settings.query_max_rows,
                memory_mb=settings.query_memory_mb,
                max_response_bytes=settings.query_max_response_bytes,
                temp_mb=0,  # the temp dir is the writer's: a forked query never spills
            )
            app = create_app(
                self.reader_parent,
                self.stats,
                limits,
                self.gate.exclusive,
                [*settings.query_allowed_hosts, settings.query_host],
                settings.query_max_body_bytes,
            )
            self.server = QueryServer(app, settings.query_host, settings.query_port)
        self.snapshotter: Snapshotter | None = None
        if snapshots:
            self.snapshotter = Snapshotter(
                self.reader_parent.cursor(),
                settings.snapshot_path,
                settings.snapshot_interval_seconds,
                self.stats,
                self.gate.long,
            )
        self.watchdog = MembershipWatchdog(t.exceptions, after_s=WATCHDOG_AFTER_S)
        self.consumer_rebuilds = 0
        self.consumer = self._new_consumer()

    def _new_consumer(self) -> Consumer:
        return Consumer(
            {
                "bootstrap.servers": self.settings.bootstrap_servers,
                "group.id": self.settings.sink_group_id,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
                "allow.auto.create.topics": False,
                # No static membership (group.instance.id): after a broker restart the
                # broker fenced the sink's own rejoined member ("Static consumer fenced by
                # other consumer with same group.instance.id", a fatal consumer error), and
                # after a 30 s broker freeze the static member never rejoined
                # (tests/e2e/test_faults.py, bench/e2e/consumer_freeze_repro.py). A
                # restarted sink instead waits for the dead member's session timeout.
                "session.timeout.ms": SESSION_TIMEOUT_MS,
                # an OffsetCommit in flight when the broker froze held the coordinator
                # connection for the default 60 s request timeout; 10 s rejoins sooner
                "socket.timeout.ms": 10000,
                # librdkafka's default (1000 ms) postpones a partition's next fetch once
                # its local queue is over the thresholds, and a sink catching up then
                # waited for records: 113k vs 155k rows/s with 10 ms at 20,000-row
                # batches (docs/PERFORMANCE-analytics.md)
                "fetch.queue.backoff.ms": 10,
                # 4 MiB per partition per fetch (librdkafka's default: 1 MiB): fewer,
                # larger fetch responses while catching up; 200k rows 177k vs 160k rows/s,
                # CPU 8.7 vs 9.1 us/row, interleaved (docs/PERFORMANCE-analytics.md)
                "max.partition.fetch.bytes": 4 << 20,
            }
        )

    def _subscribe(self) -> None:
        t = self.topics
        self.consumer.subscribe(
            [t.exceptions, t.sends, t.failure_windows, t.alerts],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        self.watchdog.restarted()

    def _rebuild_consumer(self) -> None:
        """Replace a consumer wedged out of its group (``groupwatch.contracts.membership``):
        close it (bounded: a wedged one may block in close), subscribe a new one. The new
        assignment seeks to the offsets in DuckDB: nothing is skipped or applied twice."""
        self.consumer_rebuilds += 1
        log.warning("rebuilding the sink's consumer (rebuild %d)", self.consumer_rebuilds)
        close_within(self.consumer)
        self.consumer = self._new_consumer()
        self._subscribe()

    # --- partition assignment (called inside consume()) ---------------------------------
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Under the apply lock: no batch is half-applied while the stored offsets are read,
        # and a batch fetched before this assignment (older generation) is never applied.
        with self.apply_lock, self.gate.shared():
            self.generation += 1
            stored = stored_offsets(self.offsets_reader)
        self.positions = dict(stored)
        for tp in partitions:
            tp.offset = stored.get((tp.topic, tp.partition), OFFSET_BEGINNING)
        consumer.assign(partitions)
        self.watchdog.assigned(len(partitions))
        log.info(
            "assigned %s",
            ", ".join(f"{tp.topic}[{tp.partition}]@{tp.offset}" for tp in partitions),
        )

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.watchdog.revoked()
        log.info("revoked %s", ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions))

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # the session expired (or the member was fenced): the partitions may already be
        # someone else's; the next assignment seeks to the offsets in DuckDB again
        self.watchdog.revoked()
        log.warning("lost %s", ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions))

    # --- consume, decode, build Arrow (outside the transaction) --------------------------
    def _fresh(self, messages: list[Message]) -> Sequence[RawMessage]:
        """The messages not yet in DuckDB, as columns (``RawMessages``).

        The usual batch (no error, nothing already stored) costs one C-level pass per
        column; a batch with an error or a redelivered record takes ``_fresh_each``.
        """
        # (by identity: a KafkaError compared with None raises)
        if any(map(operator.is_not, map(Message.error, messages), repeat(None))):
            return self._fresh_each(messages)
        topics = list(map(Message.topic, messages))
        partitions = list(map(Message.partition, messages))
        offsets = list(map(Message.offset, messages))
        if None in topics or None in partitions or None in offsets:
            return self._fresh_each(messages)
        raws = RawMessages(
            cast(list[str], topics),
            cast(list[int], partitions),
            cast(list[int], offsets),
            list(map(Message.value, messages)),
        )
        positions = self.positions
        low, _ = raws.offset_bounds()
        if all(offset >= positions.get(key, 0) for key, offset in low.items()):
            return raws
        return self._fresh_each(messages)  # some are already in DuckDB (a redelivery)

    def _fresh_each(self, messages: list[Message]) -> list[RawMessage]:
        """``_fresh`` record by record: errors raised or logged, stored records dropped."""
        out: list[RawMessage] = []
        positions = self.positions
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    # a fatal error leaves the consumer unusable; it arrives as a message
                    # whose code is _FATAL (its fatal() flag is not always set)
                    if err.fatal() or err.code() == KafkaError._FATAL:
                        raise RuntimeError(
                            f"fatal Kafka error, the consumer cannot continue: {err}"
                        )
                    log.warning("kafka: %s", err)
                continue
            topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
            if topic is None or partition is None or offset is None:
                continue
            if offset < positions.get((topic, partition), 0):
                # already in DuckDB: a redelivery never applies twice
                self.stats.count_records(self.labels.get(topic, "other"), "duplicate", 1)
                continue
            out.append(RawMessage(topic, partition, offset, msg.value()))
        return out

    def fetch_once(self) -> Prepared | None:
        """Consume up to sink_batch_rows records / sink_batch_ms and prepare them."""
        if self.watchdog.stale(self.consumer):
            self._rebuild_consumer()
        self._commit_for_lag()
        s = self.settings
        messages = self.consumer.consume(
            num_messages=s.sink_batch_rows, timeout=s.sink_batch_ms / 1000
        )
        self.backlogged = len(messages) >= s.sink_batch_rows
        fresh = self._fresh(messages)
        if not fresh:
            return None
        try:
            batch = collate(fresh, self.topics)
            self.positions.update(batch.next_offsets)
            return prepare(batch, self.generation)
        except Exception as exc:  # a value no column can hold: the apply loop isolates it
            next_offsets = next_offsets_of(fresh)
            self.positions.update(next_offsets)
            return Prepared({}, {}, 0, next_offsets, self.generation, fresh, {}, exc)

    def _commit_for_lag(self) -> None:
        with self.lag_lock:
            pending, self.lag_offsets = self.lag_offsets, {}
        if not pending:
            return
        tps = [TopicPartition(t, p, o) for (t, p), o in pending.items()]
        try:
            self.consumer.commit(offsets=tps, asynchronous=True)
        except Exception as exc:  # lag visibility only; DuckDB holds the truth
            log.debug("kafka commit for lag visibility failed: %s", exc)

    # --- one transaction per batch ------------------------------------------------------
    def apply_once(self, prepared: Prepared) -> int:
        """Apply one prepared batch with its offsets; returns the records applied."""
        with self.apply_lock, self.gate.shared():
            if prepared.generation != self.generation:
                return 0  # fetched before a reassignment; re-read from the stored offsets
            started, cpu_started = time.perf_counter(), time.thread_time()
            parts: list[tuple[Prepared, Applied]] = []
            error = prepared.failure
            if error is None:
                try:
                    parts = [(prepared, apply_batch(self.con, prepared))]
                except Exception as exc:  # rolled back; isolate() re-raises the store's own
                    error = exc
            if error is not None:
                log.warning(
                    "a batch of %d records was refused (%s: %s); isolating the bad ones",
                    len(prepared.raws),
                    type(error).__name__,
                    str(error)[:300],
                )
                isolated = isolate(self.con, prepared.raws, self.topics, error)
                parts = isolated.applied  # its rejects are counted with these parts
                for reject in isolated.rejected:
                    log.warning(
                        "%s[%d]@%d stored in sink_rejects: %s",
                        reject.topic,
                        reject.partition,
                        reject.offset,
                        reject.error[:300],
                    )
            elapsed = time.perf_counter() - started
            cpu = time.thread_time() - cpu_started
        for part, applied in parts:
            self._count(part, applied)
        rejected = sum(p.rejects for p, _ in parts)
        counts: dict[str, int] = {}
        for part, _ in parts:
            for kind, n in part.counts.items():
                counts[kind] = counts.get(kind, 0) + n
        self.stats.record_batch(elapsed, cpu, counts, rejected)
        log.debug("batch of %d records applied in %.1f ms", prepared.size, elapsed * 1000)
        if rejected:
            log.warning("%d records stored in sink_rejects", rejected)
        with self.lag_lock:
            self.lag_offsets.update(prepared.next_offsets)
        return len(prepared.raws) or prepared.size

    def _count(self, prepared: Prepared, applied: Applied) -> None:
        """Each record of one committed (part of a) batch: stored, duplicate or rejected."""
        count = self.stats.count_records
        counts = prepared.counts
        count("exceptions", "stored", applied.new_exceptions)
        count("exceptions", "duplicate", counts.get("exceptions", 0) - applied.new_exceptions)
        count("sends", "stored", applied.new_sends)
        count("sends", "duplicate", counts.get("sends", 0) - applied.new_sends)
        count("failure-windows", "stored", counts.get("failure_windows", 0))
        count("alerts", "stored", counts.get("alerts", 0))
        for topic, n in prepared.reject_topics.items():
            count(self.labels.get(topic, "other"), "rejected", n)

    def _fetch_loop(self, ready: queue.Queue[Prepared | BaseException]) -> None:
        """The fetch thread: the only user of the consumer while the sink runs."""
        try:
            while not self.stopping.is_set():
                prepared = self.fetch_once()
                if prepared is not None:
                    self._hand_over(ready, prepared)
        except BaseException as exc:  # handed to the apply loop, which raises it
            self._hand_over(ready, exc)

    def _hand_over(
        self, ready: queue.Queue[Prepared | BaseException], item: Prepared | BaseException
    ) -> None:
        """Queue an item for the apply loop; give up once the sink is stopping."""
        while not self.stopping.is_set():
            try:
                ready.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def run(self, until: Callable[[], bool] | None = None) -> None:
        """Serve, snapshot and consume until ``stop()`` (SIGTERM/SIGINT) or ``until()``.

        Changes no process-wide setting: ``groupwatch sink`` runs it inside
        ``sink_process_tuning`` (analytics/commands.py), an in-process test does not.
        """
        # the broker answers before the sink subscribes (a bounded wait at start, then
        # BrokerNotReady in one sentence)
        list_topics(self.consumer, self.settings)
        self._subscribe()
        if self.server is not None:
            self.server.start()
            log.info("served SQL on http://%s:%d", self.settings.query_host, self.server.port)
        if self.snapshotter is not None:
            self.snapshotter.start()
        last_log = last_prune = last_gc = time.monotonic()
        ready: queue.Queue[Prepared | BaseException] = queue.Queue(maxsize=PREPARED_AHEAD)
        fetcher = threading.Thread(
            target=self._fetch_loop, args=(ready,), name="sink-fetch", daemon=True
        )
        fetcher.start()
        try:
            while not self.stopping.is_set():
                if until is not None and until():
                    break
                try:
                    item = ready.get(timeout=0.05)
                except queue.Empty:
                    item = None
                if isinstance(item, BaseException):
                    raise RuntimeError("the sink's fetch thread failed") from item
                if item is not None:
                    self.apply_once(item)
                self._checkpoint_if_due(idle=item is None and not self.backlogged)
                if not gc.isenabled() and time.monotonic() - last_gc >= GC_EVERY_SECONDS:
                    gc.collect()  # between batches: no transaction is open
                    last_gc = time.monotonic()
                if time.monotonic() - last_prune >= PRUNE_EVERY_SECONDS:
                    last_prune = time.monotonic()
                    with self.apply_lock, self.gate.shared():
                        forgotten = prune_send_ids(self.con)
                    log.info("forgot %d send ids older than the dedup retention", forgotten)
                if time.monotonic() - last_log >= 10:
                    last_log = time.monotonic()
                    summary = self.stats.summary(since=time.time() - 10)
                    log.info(
                        "sink: %d batches, %d rows; last 10 s max batch %s ms",
                        summary["batches"],
                        summary["rows"],
                        summary["max_batch_ms"],
                    )
        finally:
            log.info("sink stopping")
            self.stopping.set()
            fetcher.join()  # it returns within one consume() timeout
            self.close()

    def _checkpoint_if_due(self, idle: bool) -> None:
        """Between batches: checkpoint once the WAL reaches the bound (a quarter of it
        while idle); the fetch thread prepares the next batch meanwhile."""
        if self.checkpoints.due(idle):
            with self.apply_lock, self.gate.shared():
                self.checkpoints.run()

    def stop(self, *_: object) -> None:
        self.stopping.set()

    def install_signal_handlers(self) -> None:
        def handler(signum: int, frame: FrameType | None) -> None:
            self.stop()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
        if self.snapshotter is not None:
            self.snapshotter.stop()
            self.snapshotter.join(timeout=30)
        try:
            self.consumer.close()
        except Exception as exc:
            log.debug("consumer close: %s", exc)
        if self.snapshotter is not None:  # (a forked query still running has its own copy)
            try:
                with self.gate.long():
                    take_snapshot(self.reader_parent.cursor(), self.settings.snapshot_path)
            except duckdb.Error:
                log.exception("final snapshot failed")
        self.con.close()
