"""Read the input topics in whole fetched batches, below Faust's per-record path.

Faust's fetcher hands every record to the conductor one at a time (a ``ConsumerMessage``,
an ``Event``, a ``wait_first`` with new tasks per record, the stream's buffers): on this
VM that path alone reaches only a few thousand records/s. ``install_batch_drain`` replaces
the fetcher's drain loop of the app's consumer: each fetched record map goes to ``handler``
as one list of ``(topic, partition, offset, value, key)`` for the batch topics; records of other
topics (Faust's own) still go through Faust's per-record callback. Faust keeps the group,
the assignment, pausing during table recovery, flow control on rebalance and the commits:
the batch's offsets are acknowledged (Faust's ``_acked`` bookkeeping) only after
``handler`` returned, so a commit (which flushes the producer first) never covers a record
whose writes were not handed to the producer.

``lock`` is held while a batch is handled; a rebalance handler acquires it to wait for the
batch in flight (Faust's ``wait_empty`` does not see records it did not track).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Iterable
from typing import Any

Record = tuple[str, int, int, bytes, bytes | None]  # topic, partition, offset, value, key
# returns the (topic, partition)s whose records it refused: sought back, not acknowledged
Handler = Callable[[list[Record]], Awaitable[Collection[tuple[str, int]] | None]]


def install_batch_drain(
    app: Any, topics: Iterable[str], handler: Handler, lock: asyncio.Lock
) -> None:
    """Make ``app``'s fetcher pass whole fetched batches of ``topics`` to ``handler``."""
    consumer = app.consumer
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
        acked: dict[Any, list[int]] = {}
        others: list[tuple[Any, Any]] = []
        buffered = consumer._buffered_partitions
        read_offset = consumer._read_offset
        for tp, recs in records.items():
            if active is not None and tp not in active and tp not in buffered:
                continue
            last = read_offset[tp]
            if tp.topic not in batch_topics:
                others.extend((tp, r) for r in recs)
                continue
            offsets = acked.setdefault(tp, [])
            topic, partition = tp.topic, tp.partition
            add, add_offset = batch.append, offsets.append
            for r in recs:
                offset = r.offset
                if last is not None:
                    if offset < last:
                        continue  # already read (Faust drops these too)
                    if offset - last > 1:
                        await consumer._add_gap(tp, last + 1, offset)
                add((topic, partition, offset, r.value, r.key))
                add_offset(offset)
                last = offset
            if offsets:
                read_offset[tp] = last
        if batch:
            refused = await handler(batch) or ()
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

    def _ack(tp: Any, offsets: list[int]) -> None:
        committed = consumer._committed_offset[tp]
        if committed is not None:
            offsets = [o for o in offsets if o >= committed]
        consumer._acked[tp].extend(offsets)
        consumer._n_acked += len(offsets)

    consumer._drain_messages = drain
