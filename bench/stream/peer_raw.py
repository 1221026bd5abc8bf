"""The raw confluent-kafka loop of ``peer`` in a process of its own (so its peak RSS is
its own): ``python -m bench.stream.peer_raw --bootstrap B --prefix P --partitions N
--total T`` prints one JSON object (events/s, CPU µs per event, peak RSS in MiB)."""

from __future__ import annotations

import argparse
import json
import resource

from bench.stream.catchup import raw_consume
from groupwatch.contracts import Topics, load_settings


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--prefix", required=True)
    ap.add_argument("--partitions", type=int, required=True)
    ap.add_argument("--total", type=int, required=True)
    args = ap.parse_args()
    settings = load_settings(
        kafka_bootstrap_servers=args.bootstrap,
        topic_prefix=args.prefix,
        partitions=args.partitions,
    )
    out: dict[str, float] = raw_consume(settings, Topics.from_settings(settings), args.total)
    out["raw_peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


if __name__ == "__main__":
    main()
