"""The state layer alone: CPU time per event of ``PartitionState``, no Kafka, no Faust.

Generates the benchmark load (``bench_stream.generate``), keeps the events of one
partition's groups (about a fifth of them), encodes them, and feeds them the way the worker
does: topic runs of ``--chunk-e`` exceptions and ``--chunk-s`` sends, batches of 2,000
through the worker's ``stream.batch.apply_batch`` (replay skip, decode, step, finish), a
tick every 8 batches with the wall clock 1 s further. Prints CPU microseconds per event (decode
included) and table writes / outputs per event. ``--digest`` prints a hash of every batch's
outputs, updates, writes, deletions, meta and counters: equal digests for two ``--root``
dirs mean the two ``stream`` packages produced the same effects.

Usage: .venv/bin/python bench/stream/state_layer.py [--root DIR] [--events 500000] [--digest]
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import sys
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", type=Path, default=ROOT, help="dir holding the stream package")
    ap.add_argument("--events", type=int, default=500_000)
    ap.add_argument("--chunk-e", type=int, default=500)
    ap.add_argument("--chunk-s", type=int, default=200)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--digest", action="store_true")
    args = ap.parse_args()
    sys.path[:0] = [str(args.root), str(ROOT / "bench" / "stream"), str(ROOT / "tests" / "stream")]

    from bench_stream import generate

    from groupwatch.contracts import Settings
    from groupwatch.contracts.keys import group_key
    from groupwatch.contracts.records import EventKind, encode
    from stream.app import GC_THRESHOLDS, config_from_settings
    from stream.batch import apply_batch
    from stream.state import PartitionState

    e, s = generate(args.events)

    def stored(events: list) -> list[tuple[bytes, bytes]]:
        return [
            (encode(x), group_key(x.sdkappid, x.group_id).encode())
            for x in events
            if zlib.crc32(x.group_id.encode()) % 3 == 0
        ]

    pe, ps = stored(e), stored(s)
    recs: list[tuple[str, int, int, bytes | None, bytes | None]] = []
    i = j = 0
    while i < len(pe) or j < len(ps):
        recs.extend(("x", 0, k, *pe[k]) for k in range(i, min(i + args.chunk_e, len(pe))))
        recs.extend(("s", 0, k, *ps[k]) for k in range(j, min(j + args.chunk_s, len(ps))))
        i += args.chunk_e
        j += args.chunk_s
    gc.set_threshold(*GC_THRESHOLDS)
    cfg = config_from_settings(Settings())

    for _ in range(1 if args.digest else args.runs):
        st = PartitionState(0, cfg, seen=dict.fromkeys(EventKind, True))
        positions: dict[tuple[str, int], int] = {}
        now = 1_000_000
        writes = outs = 0
        digest = hashlib.sha256()
        t0 = time.process_time()
        for n, start in enumerate(range(0, len(recs), 2000)):
            batch = recs[start : start + 2000]
            if n % 8 == 0:
                now += 1000
                batch = [*batch, ("ticks", 0, 0, b"", None)]
            fx = apply_batch(
                batch,
                exceptions="x",
                ticks="ticks",
                now_ms=now,
                state_for=lambda p, st=st: st,
                positions=positions,
                skips=lambda topic, p, offset, done: False,
                unread=lambda p: {},
            ).effects[0]
            entries = fx.changelog()
            writes += len(entries)
            outs += len(fx.outputs) + len(fx.updates)
            if args.digest:
                counters = (fx.outcomes, fx.windows_opened, fx.windows_closed, fx.finals)
                state = (fx.outputs, fx.updates, sorted(entries, key=lambda kv: kv[0]))
                digest.update(repr((state, counters, fx.alerts)).encode())
        cpu = time.process_time() - t0
        print(
            f"{cpu / len(recs) * 1e6:.2f} us/event, {writes / len(recs):.3f} writes/event, "
            f"{outs / len(recs):.3f} outputs/event, {len(recs)} events"
        )
        if args.digest:
            print("digest", digest.hexdigest())


if __name__ == "__main__":
    main()
