"""The Faust app: one agent over both input topics (+ ticks), one plain RocksDB table.

The agent is thin: it reads a batch of records, applies them to their partitions' states
in memory (``stream.batch``) and carries out each partition's ``Effects`` in order
(outputs acknowledged, table writes, meta, deletions). All writes of
partition p go to changelog partition p of the one table, so they are stored in the order
they were made.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from functools import partial
from pathlib import Path
from typing import Any, cast

import faust
from faust.types import TP
from prometheus_client import generate_latest

from groupwatch.contracts import Settings, Topics
from groupwatch.contracts.records import EventKind
from stream import epochs, faust_compat, keys
from stream import metrics as m
from stream.alerts import AlertRules
from stream.batch import Record, apply_batch
from stream.effects import Effects, Output
from stream.faust_compat import install_batch_drain
from stream.fence import Fence
from stream.setup import ticks_topic
from stream.state import Config, PartitionState
from stream.windows import WindowSpec

log = logging.getLogger("groupwatch.stream")

TICK_SECONDS = 1.0
# Faust's take_events batching as bench/stream/faust_ceiling.py measures it (the worker's
# agent takes no records: they arrive through the batch drain)
BATCH_MAX = 2000
BATCH_WITHIN_S = 0.05
CHANGELOG_LINGER_MS = 20  # producer linger: produce requests carry many records
PRODUCER_MAX_BATCH_BYTES = 1 << 20
COMMIT_EVERY = 200_000  # records; the commit timer (1 s) usually commits first
# The local RocksDB (one per partition) is a cache of the changelog: the worker writes
# each key once per batch and reads it only at start. Faust's defaults (64 MiB memtables,
# up to 3 per DB, a 2 GiB block cache) are sized for a read-heavy store and held ~1/3 of
# the worker's peak RSS in the peer bench; small memtables flush sooner, same contents.
ROCKSDB_OPTIONS = {
    "write_buffer_size": 4 << 20,
    "max_write_buffer_number": 2,
    "block_cache_size": 16 << 20,
}
CONSUMER_FETCH_BYTES = 256 * 1024
METRICS_TYPE = "text/plain; version=0.0.4"  # aiohttp sets the charset itself
# a topic-partition whose last fetch response is older than this counts as unread
# (paused, or the broker is unreachable: its high watermark is not known to be current)
FETCH_FRESH_MS = 10_000
# the DLQ topic accepts records up to 4 MiB (a rejected 1 MiB record in base64 fits)
PRODUCER_MAX_REQUEST_BYTES = 5 * 1024 * 1024
HEARTBEAT_S = 2.0  # at most a third of the session
# No standby copies of other workers' partitions: a worker taking a partition over restores
# it from the changelog itself (from its own store's persisted offset, or from the start)
# instead of trusting a copy kept up in the background (docs/RELIABILITY.md, cluster
# faults: the short-final run diagnosed on 2026-12-08 took a partition over from such a
# copy, which lacked changelog records it had passed). The state is the open windows
# only, so a full restore is small.
STANDBY_REPLICAS = 0


def config_from_settings(settings: Settings) -> Config:
    return Config(
        spec=WindowSpec.from_seconds(settings.window_seconds, settings.grace_seconds),
        rules=AlertRules(
            threshold=settings.alert_threshold,
            baseline_factor=settings.alert_baseline_factor,
            ewma_alpha=settings.alert_ewma_alpha,
            min_failures=settings.alert_min_failures,
        ),
        dedup_ms=settings.dedup_seconds * 1000,
        update_interval_ms=int(settings.update_interval_seconds * 1000),
        idle_close_ms=settings.idle_close_seconds * 1000,
        max_future_ms=settings.max_future_seconds * 1000,
    )


def broker_url(bootstrap: str) -> str:
    return ";".join(f"kafka://{server.strip()}" for server in bootstrap.split(",") if server)


class StreamWorker:
    """Builds the Faust app and holds the per-partition states of this process."""

    def __init__(
        self,
        settings: Settings,
        *,
        web_port: int,
        worker_dir: Path,
        seen: dict[int, dict[EventKind, bool]],
    ) -> None:
        self.settings = settings
        self.cfg = config_from_settings(settings)
        self.topics = Topics.from_settings(settings)
        self.ticks = ticks_topic(settings)
        self.seen = seen
        self.states: dict[int, PartitionState] = {}
        self.positions: dict[tuple[str, int], int] = {}
        self._gap_seeks: dict[tuple[str, int, int], int] = {}  # (topic, p, offset) -> seeks
        n = settings.partitions
        session_s = settings.stream_session_timeout_seconds
        heartbeat_s = min(HEARTBEAT_S, session_s / 3)
        self.app = faust.App(
            settings.stream_app_id,
            broker=broker_url(settings.bootstrap_servers),
            store="rocksdb://",
            datadir=str(worker_dir),
            topic_partitions=n,
            topic_replication_factor=settings.replication_factor or 1,
            web_port=web_port,
            web_bind="127.0.0.1",
            web_host="127.0.0.1",
            consumer_auto_offset_reset="earliest",
            key_serializer="raw",  # the changelog's codecs come from these defaults
            value_serializer="raw",
            autodiscover=False,
            topic_disable_leader=True,
            producer_acks=-1,
            producer_linger_ms=CHANGELOG_LINGER_MS,
            producer_max_batch_size=PRODUCER_MAX_BATCH_BYTES,
            producer_max_request_size=PRODUCER_MAX_REQUEST_BYTES,
            # like librdkafka's default (check.crcs=false): TCP checksums the transfer
            broker_check_crcs=False,
            # per partition and fetch (Faust's default 1 MiB): six input partitions' fetch
            # buffers and their record objects were ~1/5 of the peak RSS while catching up,
            # at no throughput gain; a larger record still arrives (the broker returns at
            # least one batch per partition whatever the limit)
            consumer_max_fetch_size=CONSUMER_FETCH_BYTES,
            broker_commit_interval=1.0,
            # commits come from the 1 s timer (alongside the processing): a commit
            # inside the batch drain (Faust's default, every 10,000 records) first
            # flushes the producer and holds the drain for the changelog's linger
            broker_commit_every=COMMIT_EVERY,
            # a SIGKILLed member leaves the group after this (Faust's default: 60 s); a
            # longer pause than this of the worker or the cluster ends the membership
            # (``stream.fence`` keeps the worker from writing after that)
            broker_session_timeout=session_s,
            broker_heartbeat_interval=heartbeat_s,
            table_standby_replicas=STANDBY_REPLICAS,
        )
        self.fence = Fence(
            lambda: faust_compat.group_coordinator(self.app),
            session_s=session_s,
            heartbeat_s=heartbeat_s,
            rebalance_s=float(self.app.conf.broker_rebalance_timeout),
        )
        self.source = self.app.topic(
            self.topics.exceptions,
            self.topics.sends,
            self.ticks,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
        )
        self.table = self.app.Table(
            "state",
            partitions=n,
            key_type=bytes,
            value_type=bytes,
            options=ROCKSDB_OPTIONS,
        )
        self._changelog = self.table.changelog_topic.get_topic_name()
        faust_compat.install_epoch_filter(self.table)  # restores skip ended ownerships
        # (partition, generation) -> the epoch this worker writes its changelog under
        self._epochs: dict[tuple[int, int], list[tuple[str, bytes]]] = {}
        self._out = {
            "failure_windows": self.topics.failure_windows,
            "late_events": self.topics.late_events,
            "alerts": self.topics.alerts,
            "dlq": self.topics.dlq,
        }
        self._out_topics = frozenset(self._out.values())
        self._batch_lock = asyncio.Lock()  # held while a fetched batch is handled
        self._register()
        install_batch_drain(
            self.app,
            [self.topics.exceptions, self.topics.sends, self.ticks],
            self._handle_or_exit,
            self._batch_lock,
        )

    # --- wiring ----------------------------------------------------------------------
    def _register(self) -> None:
        app = self.app

        @app.agent(self.source, name="windows")
        async def windows(stream: Any) -> None:
            # The agent subscribes the topics (group, assignment, table partitions); the
            # records themselves reach handle_batch through the batch drain
            # (stream.faust_compat), never through this stream: one that arrives here
            # means the drain is not in use, and the worker stops rather than take
            # Faust's ~10x slower per-record path.
            async for event in stream.events():
                msg = event.message
                try:
                    faust_compat.refuse_agent_record(msg.topic, msg.partition, msg.offset)
                except faust_compat.AgentPathError:
                    log.exception("exiting without committing the record")
                    logging.shutdown()
                    os._exit(70)

        @app.timer(TICK_SECONDS)
        async def tick() -> None:
            now = str(int(time.time() * 1000)).encode()
            for p in range(self.settings.partitions):
                await app.producer.send(self.ticks, None, now, p, None, None)

        async def revoked(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
            self.fence.watch()  # before the join: its SyncGroup reply renews the lease
            async with self._batch_lock:  # the batch in flight finishes first
                await app.producer.flush()  # its writes reach the changelog
                self.states.clear()  # reloaded from the (recovered) table on next use
                self._epochs.clear()

        async def assigned(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
            self.fence.watch()
            async with self._batch_lock:
                self.states.clear()
                self._epochs.clear()

        app.on_partitions_revoked.connect(revoked)  # type: ignore[arg-type]
        app.on_partitions_assigned.connect(assigned)  # type: ignore[arg-type]

        @app.page("/metrics")
        async def metrics_page(web: Any, request: Any) -> Any:
            self._refresh_gauges()
            return web.bytes(generate_latest(m.REGISTRY), content_type=METRICS_TYPE)

        @app.page("/healthz")
        async def health_page(web: Any, request: Any) -> Any:
            assigned = sorted({tp.partition for tp in app.consumer.assignment()})
            return web.json({"status": "ok", "app_id": app.conf.id, "partitions": assigned})

    def _refresh_gauges(self) -> None:
        m.OPEN_WINDOWS.set(sum(len(s.open_windows()) for s in self.states.values()))
        consumer = self.app.consumer
        m.LAG.clear()
        for tp in consumer.assignment():
            pos = self.positions.get((tp.topic, tp.partition))
            high = consumer.highwater(tp)
            if high is not None and tp.topic in (self.topics.exceptions, self.topics.sends):
                committed = faust_compat.committed_offset(consumer, tp) or 0
                done = max(pos + 1 if pos is not None else 0, committed)
                m.LAG.labels(tp.topic, str(tp.partition)).set(max(0, high - done))

    # --- processing ------------------------------------------------------------------
    def _state(self, partition: int) -> PartitionState:
        state = self.states.get(partition)
        if state is None:
            state = PartitionState(partition, self.cfg, seen=self.seen.get(partition))
            prefix = keys.prefix(partition)
            for key, value in self.table.items():
                k = key.decode() if isinstance(key, bytes) else str(key)
                if k.startswith(prefix):
                    state.load(k, value)
            state.finish_load()
            self.states[partition] = state
        return state

    async def _handle_or_exit(self, batch: list[Record]) -> set[tuple[str, int]] | None:
        try:
            return await self.handle_batch(batch)
        except BaseException:
            # the batch is not acknowledged; stop the process before anything could
            # commit past it (a restart replays it)
            log.exception("batch failed; exiting without committing it")
            logging.shutdown()
            os._exit(70)

    def unread(self, partition: int) -> dict[EventKind, bool]:
        """Per input kind: whether partition ``partition`` may hold records not yet read.

        Nothing is unread when the consumer's fetch position reached the high watermark
        of the last fetch response and that response is recent (``FETCH_FRESH_MS``);
        anything unknown (no position or response yet, paused, broker away) is unread.
        Called after a batch's records were applied (so every record the consumer
        returned was read).
        """
        out = dict.fromkeys(EventKind, True)
        assignment = faust_compat.consumer_assignment(self.app)
        if assignment is None:  # not started or not assigned yet: unknown
            return out
        now = int(time.time() * 1000)
        for kind, topic in (
            (EventKind.EXCEPTION, self.topics.exceptions),
            (EventKind.SEND, self.topics.sends),
        ):
            state = faust_compat.fetch_state(assignment, TP(topic, partition))
            if state is None or state.position is None or state.paused:
                continue
            high, fetched = state.highwater, state.fetched_ms
            if high is None or fetched is None or now - fetched > FETCH_FRESH_MS:
                continue
            out[kind] = state.position < high
        return out

    def _skips_input(self, topic: str, partition: int, offset: int, applied: int) -> bool:
        """Whether a run starting at ``offset`` would skip records never applied.

        The state's per-topic offset says every record up to it was applied, and replay
        skips records at or below it; so the next record must be the one right after it,
        or one this process already handled (an undecodable record leaves the offset).
        Anything else (the consumer's position moved past records no batch handled, e.g.
        records dropped while a rebalance began, then sought to "committed offsets" that
        do not exist yet) would lose those records for good: the run is refused and the
        partition sought back. After 3 seeks to the same offset the records are taken to
        be gone (retention) and the gap is accepted, logged as an error.
        """
        expected = applied + 1
        if offset <= expected:
            return False
        handled = self.positions.get((topic, partition))
        if handled is not None and handled >= offset - 1:
            return False
        key = (topic, partition, expected)
        tries = self._gap_seeks.get(key, 0)
        m.INPUT_GAPS.labels(topic).inc()
        if tries >= 3:
            log.error(
                "%s[%d]: records %d..%d could not be read (deleted by retention?): skipped",
                topic, partition, expected, offset - 1,
            )  # fmt: skip
            return False
        self._gap_seeks[key] = tries + 1
        log.warning(
            "%s[%d]: fetched from %d but applied up to %d: seeking back to %d",
            topic, partition, offset, applied, expected,
        )  # fmt: skip
        return True

    async def handle_batch(self, records: list[Record]) -> set[tuple[str, int]] | None:
        """Apply a batch of records in order, then carry out the merged effects.

        Per partition, every record is applied to the in-memory state in offset order
        into one ``Effects`` (``stream.batch.apply_batch``), then carried out: acknowledged
        outputs, key writes, meta, deletions. A record that cannot be applied
        (``stream.guard``) becomes a DLQ output of the batch. Ticks are applied after the
        batch's records (updates, idle close).

        Returns the input topic-partitions whose records were refused (a run that would
        skip records never applied, ``_skips_input``): they were sought back to the first
        record not applied, and their offsets must not be acknowledged.

        Nothing goes out (outputs, state writes) unless the worker still holds the group
        generation the batch was fetched under (``stream.fence``); a batch fenced off is
        dropped whole (``_drop``).
        """
        generation = self.app.consumer_generation_id  # the drain checked it under the lock
        positions = dict(self.positions)  # a few entries: restored if the batch is dropped
        applied = apply_batch(
            records,
            exceptions=self.topics.exceptions,
            ticks=self.ticks,
            now_ms=int(time.time() * 1000),
            state_for=self._state,
            positions=self.positions,
            skips=self._skips_input,
            unread=self.unread,
        )
        batches, refused = applied.effects, applied.refused
        outputs = [out for b in batches.values() for out in b.outputs]
        fenced = await self.fence.hold(generation)
        if fenced is None and outputs:
            pending = [await self._send(out) for out in outputs]
            self._send_now()  # awaited: they need not linger for more records
            await asyncio.gather(*pending)  # acknowledged before the state says "done"
            fenced = await self.fence.hold(generation)  # the acks may have taken long
        if fenced is not None:
            return await self._drop(records, positions, generation, fenced)
        m.count_records(applied.read, list(batches.values()))  # once: not for a dropped batch
        for partition, batch in batches.items():
            await self._carry_out(partition, batch, generation)
        if refused:
            try:  # on the consumer's thread, like Faust's own seeks
                await self.app.consumer.seek_wait(
                    {TP(topic, partition): offset for (topic, partition), offset in refused.items()}
                )
            except Exception:  # no longer assigned: its next owner reads from the commit
                log.warning("cannot seek back %s", refused, exc_info=True)
        return set(refused) or None

    async def _drop(
        self,
        records: list[Record],
        positions: dict[tuple[str, int], int],
        generation: int,
        reason: str,
    ) -> set[tuple[str, int]]:
        """Forget a batch fenced off before its state was written: nothing acknowledged.

        The in-memory states (which hold the batch) are reloaded from the local store on
        next use, the handled positions put back. When the generation goes on (the lease
        timed out), the partitions are sought back to the batch's first records; when it
        is over, the rebalance seeks every partition to its committed offset.
        """
        first: dict[tuple[str, int], int] = {}
        for topic, partition, offset, _value, _key in records:
            first.setdefault((topic, partition), offset)
        self.states.clear()
        self._epochs.clear()
        self.positions.clear()
        self.positions.update(positions)
        m.FENCED_BATCHES.inc()
        log.warning(
            "fenced: a batch of %d records (%s) not written or acknowledged: %s",
            len(records), ", ".join(f"{t}[{p}]@{o}" for (t, p), o in sorted(first.items())),
            reason,
        )  # fmt: skip
        if self.fence.lost(generation) is None:
            try:
                await self.app.consumer.seek_wait(
                    {TP(topic, partition): offset for (topic, partition), offset in first.items()}
                )
            except Exception:
                log.warning("cannot seek back %s", first, exc_info=True)
        return set(first)

    def _send_now(self) -> None:
        """End the linger of the output topics' open producer batches (sent at once).

        The producer lingers ``CHANGELOG_LINGER_MS`` so the changelog goes out in large
        requests; a batch's outputs, whose acks it awaits, would wait that long too. This
        closes their open batches and wakes aiokafka's sender, as its
        ``flush_for_commit`` does for all batches; order and acks are unchanged.
        """
        faust_compat.end_linger(self.app.producer, self._out_topics)

    async def _send(self, out: Output) -> Any:
        return await self.app.producer.send(
            self._out[out.topic], out.key.encode(), out.value, None, None, None
        )

    def _persisted(self, generation: int, fut: Any) -> None:
        """The batch's last changelog write was acknowledged: the local store is current
        up to it, unless the membership the batch was written under may have ended
        before the acknowledgement. Then another worker may have owned the partition and
        written between this worker's earlier writes and this one: the local store is not
        marked past them, so the next restore reads them (``stream.epochs``)."""
        if fut.cancelled() or fut.exception() is not None:
            return
        meta = fut.result()
        if not self.fence.held(generation):
            m.LATE_CHANGELOG_ACKS.inc()
            log.warning(
                "%s[%d]@%d: state writes acknowledged after generation %d may have ended:"
                " not marked persisted locally",
                meta.topic_partition.topic, meta.topic_partition.partition, meta.offset,
                generation,
            )  # fmt: skip
            return
        cast(Any, self.table.data).set_persisted_offset(meta.topic_partition, meta.offset)

    def _epoch_headers(
        self, partition: int, generation: int, store: faust_compat.LocalStore
    ) -> list[tuple[str, bytes]]:
        """The changelog headers of this worker's writes to ``partition`` in
        ``generation`` (``stream.epochs``); the local store's highest epoch raised to it."""
        found = self._epochs.get((partition, generation))
        if found is None:
            stored = faust_compat.stored_epoch(self.table, partition)
            epoch = epochs.writer_epoch(generation, stored)
            if epoch != stored:
                store.put_epoch(epoch)  # written with the batch's own puts
            log.info(
                "partition %d: writing under epoch %d (generation %d, store at %s)",
                partition, epoch, generation, stored,
            )  # fmt: skip
            found = self._epochs[(partition, generation)] = epochs.headers(epoch)
        return found

    async def _carry_out(self, partition: int, batch: Effects, generation: int) -> None:
        # every entry in order (key writes, meta, deletions, ``Effects.changelog``): local
        # store, then its changelog partition. Faust's ``table[key] = value`` goes through
        # its one-message-at-a-time producer buffer; sending straight to the producer keeps
        # the same ordering and durability (the producer is flushed before every offset
        # commit) at a fraction of the cost.
        entries = batch.changelog()
        store = faust_compat.LocalStore(self.table, partition)  # no current event
        headers = self._epoch_headers(partition, generation, store)
        put, delete = store.put, store.delete
        send = self.app.producer.send
        # straight into the producer's open batch; Faust's send when that does not apply
        append = faust_compat.Appender(self.app.producer).append
        changelog = self._changelog
        fut: Any = None
        for key, value in entries:
            kb = key.encode()
            if value is None:
                delete(kb)
            else:
                put(kb, value)
            fut = append(changelog, partition, kb, value, headers)
            if fut is None:
                fut = await send(changelog, kb, value, partition, None, headers)
        store.write()  # the local store's puts and deletes, in order, in one write
        if fut is not None:
            # the last write's offset covers the batch's writes (one changelog partition)
            fut.add_done_callback(partial(self._persisted, generation))
        out_topics = self._out
        for out in batch.updates:
            await send(out_topics[out.topic], out.key.encode(), out.value, None, None, None)
        m.UPDATES.inc(len(batch.updates))
        m.WINDOWS_OPENED.inc(batch.windows_opened)
        m.WINDOWS_CLOSED.inc(batch.windows_closed)
        m.FINALS.inc(batch.finals)
        m.ALERTS.inc(batch.alerts)


def run(settings: Settings, *, web_port: int, worker_dir: Path, loglevel: str) -> None:
    """Check the topics, prepare the local dir and run a worker until stopped."""
    from stream.setup import check_topics, prepare_dir, resolved_replication, topics_seen

    faust_compat.require()  # the exact faust / aiokafka / mode it was built for
    settings = resolved_replication(settings)
    check_topics(settings)
    lock = prepare_dir(worker_dir)
    worker = StreamWorker(
        settings, web_port=web_port, worker_dir=worker_dir, seen=topics_seen(settings)
    )
    runner = faust.Worker(worker.app, loglevel=loglevel, quiet=True)
    # Faust's start-up spinner sets the root logger to DEBUG (its handler turns for every
    # record): every debug call of aiokafka (one per produced record), mode and Faust then
    # builds a LogRecord nobody prints (3 % of the worker's CPU). Without the spinner the
    # root logger stays at ``loglevel``.
    runner.spinner = None
    try:
        runner.execute_from_commandline()
    finally:
        lock.close()
