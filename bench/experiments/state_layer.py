"""Experiment: the stream's state layer alone (no Kafka, no Faust): CPU µs per event and
peak RSS of ``stream.batch.apply_batch`` over one partition's share of the ``peer``
bench's input (decode, step, closing, ticks, serialisation of the changelog entries).

``python -m bench.experiments.state_layer [--events 720000] [--runs 2] [--digest]``

``--digest`` prints a SHA-256 over every batch's effects (outputs, updates, changelog
entries in carry-out order, outcome counters): two versions of ``stream/`` that print the
same digest did the same thing with this input (the input and the worker's clock are then
pinned to ``DIGEST_NOW_MS`` instead of the wall clock; run it with ``PYTHONHASHSEED=0``,
since the flush writes changed keys in set order).
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import resource
import time
import tracemalloc
import zlib

from bench import events as inputs
from groupwatch.contracts import load_settings
from groupwatch.contracts.keys import group_key
from groupwatch.contracts.records import ExceptionEvent, SendEvent, encode
from stream.app import config_from_settings
from stream.batch import Record, apply_batch
from stream.commands import GC_THRESHOLDS
from stream.state import PartitionState

EXC, SND, TICKS = "in.exceptions", "in.sends", "in.ticks"
DIGEST_NOW_MS = 1_796_641_200_000  # 2026-12-07 12:00 UTC, an hour boundary


def records(n: int, chunk_e: int = 500, chunk_s: int = 200) -> list[Record]:
    """One partition's share (crc32 of the group % 3 == 0), topic runs as fetched."""
    exceptions, sends = inputs.mixed_hour(n)

    def mine(evs: list[ExceptionEvent] | list[SendEvent]) -> list[tuple[bytes, bytes]]:
        return [
            (encode(e), group_key(e.sdkappid, e.group_id).encode())
            for e in evs
            if zlib.crc32(e.group_id.encode()) % 3 == 0
        ]

    pe, ps = mine(exceptions), mine(sends)
    out: list[Record] = []
    i = j = 0
    while i < len(pe) or j < len(ps):
        out.extend((EXC, 0, k, *pe[k]) for k in range(i, min(i + chunk_e, len(pe))))
        out.extend((SND, 0, k, *ps[k]) for k in range(j, min(j + chunk_s, len(ps))))
        i += chunk_e
        j += chunk_s
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=720_000)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=2000)
    ap.add_argument(
        "--memory", action="store_true", help="trace the state's Python allocations (slow)"
    )
    ap.add_argument("--digest", action="store_true", help="print a digest of every batch's effects")
    args = ap.parse_args()
    if args.digest:  # the same input and clock in every run
        inputs.hours_ago = lambda hours: DIGEST_NOW_MS - hours * inputs.HOUR_MS
    recs = records(args.events)
    cfg = config_from_settings(load_settings(idle_close_seconds=0))
    gc.set_threshold(*GC_THRESHOLDS)
    for _ in range(args.runs):
        state = PartitionState(0, cfg)
        state.finish_load()
        now = DIGEST_NOW_MS if args.digest else int(time.time() * 1000)
        writes = 0
        digest = hashlib.sha256()
        if args.memory:
            tracemalloc.start()
        cpu0 = time.process_time()
        for b in range(0, len(recs), args.batch):
            batch = recs[b : b + args.batch]
            if (b // args.batch) % 8 == 7:
                now += 1000
                batch = [*batch, (TICKS, 0, 0, str(now).encode(), None)]
            applied = apply_batch(
                batch,
                exceptions=EXC,
                ticks=TICKS,
                now_ms=now,
                state_for=lambda p, s=state: s,  # type: ignore[misc]
                positions={},
                skips=lambda topic, p, offset, done: False,
                unread=lambda p: {},
            )
            for fx in applied.effects.values():
                entries = fx.changelog()
                writes += len(entries)
                if args.digest:
                    digest.update(repr((fx.outputs, fx.updates, entries)).encode())
                    digest.update(repr(sorted(fx.outcomes.items())).encode())
        cpu = time.process_time() - cpu0
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        if args.memory:
            held, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            print(f"state allocations: peak {peak / 2**20:.1f} MiB, held {held / 2**20:.1f} MiB")
        print(
            f"{cpu / len(recs) * 1e6:.2f} us/event, {writes / len(recs):.3f} writes/event, "
            f"{len(recs)} events, peak RSS {rss:.0f} MiB"
            + (f", digest {digest.hexdigest()[:16]}" if args.digest else "")
        )


if __name__ == "__main__":
    main()
