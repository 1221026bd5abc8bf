"""Canary of the Faust/aiokafka/mode internals stream/faust_compat.py relies on (no broker).

Every entry of ``faust_compat.INTERNALS`` must exist with its kind and parameters; the
live checks build a real Faust app, table store and aiokafka producer (nothing started)
and use the adapter's pieces on them. A failure names the attribute that changed.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import tomllib
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import faust
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.producer.message_accumulator import MessageBatch
from faust.transport.consumer import Fetcher
from faust.types import TP

from stream import faust_compat
from stream.faust_compat import BUILT_FOR, INTERNALS, Internal

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("internal", INTERNALS, ids=str)
def test_every_internal_the_adapter_uses_is_there(internal: Internal) -> None:
    problem = faust_compat.internal_problem(internal)
    assert problem is None, problem


def test_the_canary_names_what_changed() -> None:
    consumer = "faust.transport.drivers.aiokafka:Consumer"
    missing = faust_compat.internal_problem(Internal(consumer, "_no_such_offsets", "attribute"))
    assert missing is not None and "Consumer._no_such_offsets" in missing
    method = faust_compat.internal_problem(Internal(consumer, "_add_gap", "attribute"))
    assert method is not None and "_add_gap: expected a plain attribute" in method
    sync = faust_compat.internal_problem(Internal(consumer, "_add_gap", "method", ("tp",)))
    assert sync is not None and "found a coroutine function" in sync
    params = faust_compat.internal_problem(
        Internal(consumer, "_wait_next_records", "coroutine", ("timeout", "extra"))
    )
    assert params is not None and "expected parameters (timeout, extra), found (timeout)" in params
    gone = faust_compat.internal_problem(Internal("faust.nowhere:Thing", "x", "attribute"))
    assert gone is not None and "cannot import faust.nowhere:Thing" in gone
    assert faust_compat.internal_problems([Internal(consumer, "_nope", "method")]) == [
        "faust.transport.drivers.aiokafka.Consumer._nope: no such method"
    ]


def test_the_version_gate_names_package_found_and_required() -> None:
    assert faust_compat.version_problems() == []
    found = {**BUILT_FOR, "aiokafka": "0.15.0"}
    problems = faust_compat.version_problems(found.__getitem__)
    assert len(problems) == 1
    assert problems[0].startswith(
        "the stream worker is built for aiokafka==0.14.0 but found 0.15.0:"
    )

    def nothing(package: str) -> str:
        raise faust_compat.metadata.PackageNotFoundError(package)

    assert "mode-streaming==0.7.1 but found not installed" in " ".join(
        faust_compat.version_problems(nothing)
    )
    faust_compat.require()  # the installed libraries pass the gate


def test_pyproject_and_constraints_pin_the_versions_the_adapter_was_built_for() -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    constraints = (ROOT / "constraints.txt").read_text().splitlines()
    for package, version in BUILT_FOR.items():
        pins = [d for d in deps if re.match(rf"{package}(\[[^\]]*\])?==", d)]
        assert pins and pins[0].endswith(f"=={version}"), (package, deps)
        assert f"{package}=={version}" in constraints, package


def _app(tmp_path: Path) -> faust.App:
    return faust.App(
        "gw-canary",
        broker="kafka://127.0.0.1:1",  # never contacted: nothing is started
        store="rocksdb://",
        datadir=str(tmp_path),
        autodiscover=False,
        key_serializer="raw",
        value_serializer="raw",
    )


def _unstarted_producer(tmp_path: Path) -> tuple[Any, AIOKafkaProducer]:
    """A Faust producer over an aiokafka producer that is never started (inside a loop)."""
    producer: Any = _app(tmp_path).producer
    inner = AIOKafkaProducer(bootstrap_servers="127.0.0.1:1")  # not started
    producer._producer = inner  # what faust's Producer.on_start sets
    return producer, inner


def test_the_drain_replaces_the_loop_faust_s_fetcher_calls(tmp_path: Path) -> None:
    fetch_loop = Fetcher._fetcher.fun  # a mode ServiceTask around the coroutine function
    assert "consumer._drain_messages(self)" in inspect.getsource(fetch_loop)
    app = _app(tmp_path)
    consumer: Any = app.consumer
    for name in ("_read_offset", "_committed_offset", "_acked"):
        assert isinstance(getattr(consumer, name), MutableMapping), name
    tp = TP("t", 0)
    assert consumer._read_offset[tp] is None and consumer._committed_offset[tp] is None
    assert consumer._acked[tp] == []
    assert isinstance(consumer._buffered_partitions, set)
    assert isinstance(consumer._n_acked, int)
    assert consumer._commit_every == app.conf.broker_commit_every
    assert callable(consumer._stopped.is_set) and not consumer._stopped.is_set()
    assert isinstance(consumer.consumer_stopped_errors, tuple)

    async def handler(batch: Any) -> None:
        return None

    faust_compat.install_batch_drain(app, ["t"], handler, asyncio.Lock())
    assert consumer._drain_messages.__qualname__ == "install_batch_drain.<locals>.drain"
    assert inspect.iscoroutinefunction(consumer._drain_messages)
    # not started: the positions are unknown, not an error
    assert faust_compat.consumer_assignment(app) is None
    assert faust_compat.committed_offset(consumer, tp) is None


def test_local_store_writes_are_what_faust_reads(tmp_path: Path) -> None:
    app = _app(tmp_path)
    table = app.Table("state", partitions=2, key_type=bytes, value_type=bytes)
    store = faust_compat.LocalStore(table, 1)
    store.put(b"k", b"v")
    store.put(b"gone", b"x")
    store.delete(b"gone")
    data: Any = table.data
    assert data._db_for_partition(1).get(b"k") is None  # collected until written
    store.write()
    assert data[b"k"] == b"v"  # found through Faust's key index, no current event
    assert b"gone" not in data
    assert data._key_index[b"k"] == 1 and b"gone" not in data._key_index
    assert data._db_for_partition(1).get(b"k") == b"v"
    assert data._db_for_partition(0).get(b"k") is None
    store.put(b"again", b"y")  # a store goes on after a write
    store.write()
    assert data[b"again"] == b"y"
    assert faust_compat.stored_epoch(table, 1) is None  # no changelog epoch applied yet
    store.put_epoch(6)
    store.write()
    assert faust_compat.stored_epoch(table, 1) == 6 and faust_compat.stored_epoch(table, 0) is None
    assert b"__groupwatch\x00epoch__" not in data._key_index  # not a table key


def test_end_linger_closes_the_open_batches_of_the_topics_and_wakes_the_sender(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        producer, inner = _unstarted_producer(tmp_path)
        acc = inner._message_accumulator
        builders = {}
        for topic in ("out", "changelog"):
            builder = acc.create_builder()
            acc._batches[TP(topic, 0)].append(MessageBatch(TP(topic, 0), builder, 30, 0.02))
            builders[topic] = builder
        waiter = acc._waiter_future
        assert not waiter.done()
        faust_compat.end_linger(producer, frozenset({"out"}))
        assert builders["out"].closed() and not builders["changelog"].closed()
        assert waiter.done()

    asyncio.run(scenario())


def test_the_appender_appends_to_the_open_batch_or_leaves_the_record_to_fausts_send(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        producer, inner = _unstarted_producer(tmp_path)
        append = faust_compat.Appender(producer).append
        assert append("changelog", 0, b"k", b"v") is None  # no metadata yet: Faust's send
        inner.client.cluster._partitions["changelog"] = {0: None, 1: None}
        assert append("changelog", 2, b"k", b"v") is None  # no such partition
        first = append("changelog", 1, b"k1", b"v1", [("gw-epoch", b"6")])
        second = append("changelog", 1, b"k2", None)
        assert isinstance(first, asyncio.Future) and isinstance(second, asyncio.Future)
        (batch,) = inner._message_accumulator._batches[TP("changelog", 1)]
        assert batch.record_count == 2  # one open batch, in order
        big = b"x" * inner._max_request_size
        assert append("changelog", 0, b"k", big) is None  # Faust's send checks the size
        batch._builder.close()  # full: the next record waits in Faust's send
        assert append("changelog", 1, b"k3", b"v3") is None
        inner._message_accumulator._exception = RuntimeError("failed")
        assert append("changelog", 0, b"k", b"v") is None  # Faust's send raises it

    asyncio.run(scenario())


def test_a_record_on_the_agent_path_raises_naming_it() -> None:
    with pytest.raises(faust_compat.AgentPathError, match=r"t\[2\]@7 reached the Faust agent"):
        faust_compat.refuse_agent_record("t", 2, 7)


def test_the_worker_refuses_to_start_on_another_version(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`groupwatch stream` checks the versions before it talks to the broker."""
    from click.testing import CliRunner

    from groupwatch.cli import cli

    monkeypatch.setitem(BUILT_FOR, "aiokafka", "0.15.0")
    faust_compat._require.cache_clear()  # a passed check is cached
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",  # never contacted
        "GROUPWATCH_STATE_DIR": str(tmp_path),
    }
    try:
        result = CliRunner().invoke(cli, ["stream", "--web-port", "0"], env=env)
    finally:
        faust_compat._require.cache_clear()
    assert result.exit_code == 1
    assert "built for aiokafka==0.15.0 but found 0.14.0: install the pinned" in result.output
