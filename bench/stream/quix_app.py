"""The peer: a Quix Streams application doing the stream worker's counting job.

Run by ``python -m bench peer`` with the interpreter of the bench's own Quix venv
(``.venv-quix``; quixstreams 3.28 needs confluent-kafka < 2.13 and pydantic < 2.14, which
groupwatch's pins exclude), so it imports nothing of groupwatch: only quixstreams and the
standard library. What a Python team would write with Quix for the same job:

* exceptions: per message key (the group, ``app:group`` as the ingress keys it) a 60 s
  tumbling window with 30 s grace (the worker's settings, passed in) reducing to
  ``{error_code: count}`` (the per (app, group, code) counts without a repartition
  topic, which Quix's ``group_by`` would add); sends: a window count per group;
* ``.final(closing_strategy="partition")``: a window is emitted once, when the partition's
  stream time passes its end + grace (the worker's close rule; Quix's default "key"
  closes a key's windows only when that key is seen again);
* RocksDB state with changelog topics (Quix's defaults), event time = the Kafka record
  timestamp (the producer sets it to ``event_time_ms``);
* the guarantee is an argument: ``at-least-once`` or ``exactly-once`` (Kafka
  transactions, outputs read with ``read_committed``).

It writes the time of its first input record (``time.time()``) to ``--first-file`` and
runs until SIGTERM.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from quixstreams import Application


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--exceptions", required=True)
    ap.add_argument("--sends", required=True)
    ap.add_argument("--output", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--state-dir", required=True)
    ap.add_argument("--guarantee", choices=("at-least-once", "exactly-once"), required=True)
    ap.add_argument("--window-ms", type=int, required=True)
    ap.add_argument("--grace-ms", type=int, required=True)
    ap.add_argument("--first-file", required=True)
    args = ap.parse_args()

    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        state_dir=args.state_dir,
        processing_guarantee=args.guarantee,
        loglevel="WARNING",
    )
    exceptions = app.topic(args.exceptions, value_deserializer="json")
    sends = app.topic(args.sends, value_deserializer="json")
    output = app.topic(args.output, value_serializer="json")
    first_file = Path(args.first_file)
    seen = [False]

    def first(value: Any) -> Any:
        if not seen[0]:
            seen[0] = True
            first_file.write_text(repr(time.time()))
        return value

    def init_codes(ev: dict[str, Any]) -> dict[str, Any]:
        return {
            "kind": "exceptions",
            "app": ev["sdkappid"],
            "group": ev["group_id"],
            "codes": {str(ev["error_code"]): 1},
        }

    def add_code(agg: dict[str, Any], ev: dict[str, Any]) -> dict[str, Any]:
        codes = agg["codes"]
        code = str(ev["error_code"])
        codes[code] = codes.get(code, 0) + 1
        return agg

    def init_sends(ev: dict[str, Any]) -> dict[str, Any]:
        return {"kind": "sends", "app": ev["sdkappid"], "group": ev["group_id"], "sends": 1}

    def add_send(agg: dict[str, Any], ev: dict[str, Any]) -> dict[str, Any]:
        agg["sends"] += 1
        return agg

    window, grace = args.window_ms, args.grace_ms
    sdf = app.dataframe(exceptions).update(first)
    sdf = (
        sdf.tumbling_window(duration_ms=window, grace_ms=grace, name="codes")
        .reduce(add_code, init_codes)
        .final(closing_strategy="partition")
    )
    sdf.to_topic(output)
    sends_sdf = (
        app.dataframe(sends)
        .update(first)
        .tumbling_window(duration_ms=window, grace_ms=grace, name="sends")
        .reduce(add_send, init_sends)
        .final(closing_strategy="partition")
    )
    sends_sdf.to_topic(output)
    app.run()


if __name__ == "__main__":
    main()
