"""Faust's own consumption ceiling: an app that only counts records.

``--mode stream`` (default): the per-record path - one agent over both input topics with
the worker's settings (raw serializers, ``take_events(BATCH_MAX, within)``), no decoding,
no state, no writes. ``--mode batch``: the same app, records read through the worker's
batch drain (``stream.fetch``) instead. Prints one JSON line ``{"first": t, "done": t}``
(``time.time()`` of the first and last record) when ``--total`` records were read, then
exits.

Usage (bench_stream.py runs it): python bench/stream/faust_ceiling.py --bootstrap B \
    --exceptions T1 --sends T2 --partitions 3 --total N --datadir DIR --web-port P
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any

import faust

from stream.app import BATCH_MAX, BATCH_WITHIN_S, broker_url
from stream.faust_compat import install_batch_drain


def main() -> None:
    ap = argparse.ArgumentParser()
    for name in ("bootstrap", "exceptions", "sends", "datadir"):
        ap.add_argument(f"--{name}", required=True)
    ap.add_argument("--partitions", type=int, required=True)
    ap.add_argument("--total", type=int, required=True)
    ap.add_argument("--web-port", type=int, required=True)
    ap.add_argument("--mode", choices=["stream", "batch"], default="stream")
    ap.add_argument("--crc", action="store_true", help="check CRCs (the worker does not)")
    args = ap.parse_args()
    app = faust.App(
        f"gw-ceiling-{os.getpid()}",
        broker=broker_url(args.bootstrap),
        datadir=args.datadir,
        topic_partitions=args.partitions,
        web_port=args.web_port,
        web_bind="127.0.0.1",
        consumer_auto_offset_reset="earliest",
        key_serializer="raw",
        value_serializer="raw",
        autodiscover=False,
        topic_disable_leader=True,
        broker_check_crcs=args.crc,
    )
    source = app.topic(
        args.exceptions,
        args.sends,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )
    seen = {"n": 0, "first": 0.0}

    def counted(n: int) -> None:
        if not seen["n"]:
            seen["first"] = time.time()
        seen["n"] += n
        if seen["n"] >= args.total:
            marks = {"first": seen["first"], "done": time.time(), "cpu": time.process_time()}
            print(json.dumps(marks), flush=True)
            sys.stdout.flush()
            os._exit(0)

    @app.agent(source, name="count")
    async def count(stream: Any) -> None:
        async for events in stream.take_events(BATCH_MAX, within=BATCH_WITHIN_S):
            counted(len(events))

    async def handle(batch: list[tuple[str, int, int, bytes]]) -> None:
        counted(len(batch))

    if args.mode == "batch":
        install_batch_drain(app, [args.exceptions, args.sends], handle, asyncio.Lock())

    faust.Worker(app, loglevel="warning", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
