"""Reproduction: does a consumer like the sink's rejoin its group after a 30 s broker freeze?

Starts a local broker of its own, a producer (20 records/s) and a confluent-kafka consumer
with the sink's group settings (static membership, session 10 s, read_committed) that
commits asynchronously after every poll that returned records, as the sink does for lag
visibility. After 15 s the broker is SIGSTOPped for 30 s, then SIGCONTed; the script says
how many records the consumer got in the 85 s after the resume (0 = it never rejoined).

Usage: .venv/bin/python -m bench.experiments.consumer_freeze_repro [--socket-timeout-ms N]
       [--dynamic] [--no-commit]
Found with tests/e2e/test_faults.py; results in docs/RELIABILITY.md.
"""

from __future__ import annotations

import argparse
import os
import signal
import tempfile
import threading
import time
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from groupwatch.broker.server import LocalKafka
from groupwatch.contracts import Settings
from tests.support.ports import free_port


def say(*parts: object) -> None:
    print(time.strftime("%X"), *parts, flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--socket-timeout-ms", type=int, help="default: librdkafka's (60000)")
    ap.add_argument("--dynamic", action="store_true", help="no group.instance.id")
    ap.add_argument("--no-commit", action="store_true", help="no async commits")
    args = ap.parse_args()

    values: dict[str, object] = {
        "kafka_bootstrap_servers": None,
        "state_dir": Path(tempfile.mkdtemp(prefix="gw-freeze-")),
        "kafka_port": free_port(),
        "kafka_controller_port": free_port(),
        "kafka_heap": "256m",
    }
    broker = LocalKafka(Settings(**values))  # type: ignore[arg-type]
    say(broker.start().message)
    bootstrap = broker.settings.bootstrap_servers
    pid = broker.status().pid
    assert pid is not None
    stop = threading.Event()
    try:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic("t", 3, 1)])["t"].result()
        conf: dict[str, object] = {
            "bootstrap.servers": bootstrap,
            "group.id": "g",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "session.timeout.ms": 10000,
        }
        if not args.dynamic:
            conf["group.instance.id"] = "g-writer"
        if args.socket_timeout_ms:
            conf["socket.timeout.ms"] = args.socket_timeout_ms
        consumer = Consumer(conf)

        def on_assign(c: Consumer, partitions: list[TopicPartition]) -> None:
            say("assigned", len(partitions))
            c.assign(partitions)

        consumer.subscribe(["t"], on_assign=on_assign)
        producer = Producer({"bootstrap.servers": bootstrap})

        def produce() -> None:
            i = 0
            while not stop.is_set():
                try:
                    producer.produce("t", str(i).encode())
                    producer.poll(0)
                except BufferError:
                    pass
                i += 1
                time.sleep(0.05)

        threading.Thread(target=produce, daemon=True).start()
        got, at_resume, phase = 0, 0, "before"
        began = time.monotonic()
        while time.monotonic() - began < 130:
            messages = [m for m in consumer.consume(100, 0.2) if not m.error()]
            got += len(messages)
            if messages and not args.no_commit:
                offsets = [
                    TopicPartition(str(m.topic()), m.partition() or 0, (m.offset() or 0) + 1)
                    for m in messages
                ]
                consumer.commit(offsets=offsets, asynchronous=True)
            elapsed = time.monotonic() - began
            if phase == "before" and elapsed > 15:
                os.killpg(pid, signal.SIGSTOP)
                phase = "frozen"
                say("broker frozen; consumed", got)
            elif phase == "frozen" and elapsed > 45:
                os.killpg(pid, signal.SIGCONT)
                phase, at_resume = "resumed", got
                say("broker resumed; consumed", got)
        say(
            "consumed after the resume:", got - at_resume, "assignment:", len(consumer.assignment())
        )
        # No consumer.close(): on a wedged consumer it blocks (seen); the process exits.
        return 0 if got > at_resume else 1
    finally:
        stop.set()
        os.killpg(pid, signal.SIGCONT)
        broker.stop()


if __name__ == "__main__":
    raise SystemExit(main())
