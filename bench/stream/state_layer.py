"""The state layer alone: CPU time per event of ``PartitionState``, no Kafka, no Faust.

Generates the benchmark load (``bench_stream.generate``), keeps the events of one
partition's groups (about a fifth of them), encodes them, and feeds them the way the worker
does: topic runs of ``--chunk-e`` exceptions and ``--chunk-s`` sends, batches of 2,000
(``begin`` / ``step`` per decoded event / ``finish``, merged into a ``Batch``), a tick every
8 batches with the wall clock 1 s further. Prints CPU microseconds per event (decode
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
    from groupwatch.contracts.records import ExceptionEvent, SendEvent, decode, encode
    from stream.app import config_from_settings
    from stream.batch import Batch
    from stream.commands import GC_THRESHOLDS
    from stream.state import PartitionState

    e, s = generate(args.events)
    pe = [encode(x) for x in e if zlib.crc32(x.group_id.encode()) % 3 == 0]
    ps = [encode(x) for x in s if zlib.crc32(x.group_id.encode()) % 3 == 0]
    recs: list[tuple[str, int, bytes]] = []
    i = j = 0
    while i < len(pe) or j < len(ps):
        recs.extend(("e", k, pe[k]) for k in range(i, min(i + args.chunk_e, len(pe))))
        recs.extend(("s", k, ps[k]) for k in range(j, min(j + args.chunk_s, len(ps))))
        i += args.chunk_e
        j += args.chunk_s
    gc.set_threshold(*GC_THRESHOLDS)
    cfg = config_from_settings(Settings())

    for _ in range(1 if args.digest else args.runs):
        st = PartitionState(0, cfg, seen={"e": True, "s": True})
        now = 1_000_000
        writes = outs = 0
        digest = hashlib.sha256()
        t0 = time.process_time()
        for n, start in enumerate(range(0, len(recs), 2000)):
            fx = st.begin()
            if n % 8 == 0:
                now += 1000
                st.tick(now, fx)
            for kind, off, value in recs[start : start + 2000]:
                event = decode(value, ExceptionEvent if kind == "e" else SendEvent)
                st.step(fx, kind, off, event, "t", now)  # type: ignore[arg-type]
            batch = Batch()
            batch.merge(st.finish(fx))
            kw, kd = batch.key_writes(), batch.key_deletes()
            writes += len(kw) + len(kd) + 1
            outs += len(batch.outputs) + len(batch.updates)
            if args.digest:
                counters = (fx.outcomes, fx.windows_opened, fx.windows_closed, fx.finals)
                state = (batch.outputs, batch.updates, sorted(kw), sorted(kd), batch.meta)
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
