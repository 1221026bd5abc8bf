"""SIGKILL-exact finals at the logic level: the worker's batch sequence over a simulated
changelog, crashed at random points, against the reference model.

Each fetched batch goes through the worker's own code, ``stream.batch.apply_batch`` (the
records as bytes on the input topics, replay skip, decode, step, a tick after the records,
``PartitionState.begin``/``finish``), and is carried out in ``StreamWorker.handle_batch``'s
order (outputs acknowledged, then ``Effects.changelog``: key writes, meta, deletions to one
changelog partition). The test models what survives a SIGKILL: the outputs acknowledged
so far, a prefix of the changelog writes handed to the producer, and the input offsets
committed (a commit flushes the producer first). A restart rebuilds the state from the
surviving changelog and reads both input topics again from the committed offsets, in a
new interleaving.
Also modelled: a rebalance inside one process (state reloaded from the local store) and
the batch drain's seek back to the committed offsets with the state kept.
"""

from __future__ import annotations

import random
import time
from typing import Any

import msgspec
import pytest

from groupwatch.contracts import Settings
from groupwatch.contracts.keys import group_key
from groupwatch.contracts.records import EventKind, encode
from stream.app import config_from_settings
from stream.batch import apply_batch
from stream.state import PartitionState
from tests.stream.crashmodel import compare, expected_finals, generate
from tests.support.stream import T0, exc, send

E, S = EventKind.EXCEPTION, EventKind.SEND
TOPIC = {E: "in.exceptions", S: "in.sends"}
TICKS = "in.ticks"

SETTINGS = Settings(partitions=1, window_seconds=60, grace_seconds=30, update_interval_seconds=1)


class World:
    """One partition's input topics, its changelog and its output topic."""

    def __init__(self, exceptions: list[Any], sends: list[Any]) -> None:
        # the input topics as stored: (value, key) per offset
        self.inputs = {
            kind: [(encode(ev), group_key(ev.sdkappid, ev.group_id).encode()) for ev in evs]
            for kind, evs in ((E, exceptions), (S, sends))
        }
        self.durable: list[tuple[str, bytes | None]] = []  # changelog that survives
        self.pending: list[tuple[str, bytes | None]] = []  # handed to the producer
        self.local: dict[str, bytes] = {}  # the worker's local store (all writes)
        self.committed = {E: 0, S: 0}  # next offset to read
        self.outputs: list[tuple[str, dict[str, Any]]] = []
        # the worker's wall clock: after every event time, as when replaying stored input
        # (stream time is capped at min(received_at, wall clock) + max_future)
        self.now = int(time.time() * 1000)

    def table(self) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        for key, value in self.durable:
            if value is None:
                out.pop(key, None)
            else:
                out[key] = value
        return out


def _load(table: dict[str, bytes]) -> PartitionState:
    state = PartitionState(0, config_from_settings(SETTINGS), seen={E: True, S: True})
    for key, value in table.items():
        state.load(key, value)
    state.finish_load()
    return state


def _run(world: World, rng: random.Random, *, crash: bool) -> None:
    """One worker life: from the committed offsets until a crash (or the end)."""
    state = _load(world.table())
    world.local = world.table()
    pos = dict(world.committed)
    handled = dict(pos)
    budget = rng.randint(1, 40) if crash else 1 << 30
    while budget > 0:
        budget -= 1
        # one fetched batch: runs of either topic, each topic in offset order
        records: list[tuple[str, int, int, bytes | None, bytes | None]] = []
        for _ in range(rng.randint(1, 4)):
            kind = rng.choice([E, S])
            n = rng.choice([1, 3, 20, 100, 400])
            src = world.inputs[kind]
            for off in range(pos[kind], min(pos[kind] + n, len(src))):
                records.append((TOPIC[kind], 0, off, *src[off]))
            pos[kind] = min(pos[kind] + n, len(src))
        if not records:
            if all(pos[k] >= len(world.inputs[k]) for k in pos):
                if crash:
                    break
                return
            continue
        if rng.random() < 0.5:  # ticks fetched with the batch (applied after its records)
            world.now += 1000 * rng.randint(1, 5)
            at = rng.randint(0, len(records))
            records.insert(at, (TICKS, 0, 0, str(world.now).encode(), None))
        fx = apply_batch(
            records,
            exceptions=TOPIC[E],
            ticks=TICKS,
            now_ms=world.now,
            state_for=lambda p, state=state: state,
            positions={},
            skips=lambda topic, p, offset, done: False,
            # the idle close sees what is still unread, as the worker's positions say
            unread=lambda p, pos=pos: {k: pos[k] < len(world.inputs[k]) for k in pos},
        ).effects[0]
        outs = fx.outputs
        if crash and budget == 0:  # killed while the outputs were sent
            cut = rng.randint(0, len(outs))
            world.outputs += [(o.key, msgspec.json.decode(o.value)) for o in outs[:cut]]
            world.durable += world.pending[: rng.randint(0, len(world.pending))]
            world.pending = []
            return
        world.outputs += [
            (o.key, msgspec.json.decode(o.value)) for o in outs if o.topic == "failure_windows"
        ]
        entries = fx.changelog()
        for key, value in entries:
            if value is None:
                world.local.pop(key, None)
            else:
                world.local[key] = value
        world.pending += entries
        handled = dict(pos)
        r = rng.random()
        if r < 0.3:  # the commit timer: flush, then commit what was handled
            world.durable += world.pending
            world.pending = []
            world.committed = dict(handled)
        elif r < 0.35:  # a rebalance keeping the partition: flush, reload, seek back
            world.durable += world.pending
            world.pending = []
            state = _load(dict(world.local))
            pos = dict(world.committed)
        elif r < 0.38:  # the drain's seek to the committed offsets, state kept
            pos = dict(world.committed)
    # SIGKILL: some of the writes handed to the producer made it
    world.durable += world.pending[: rng.randint(0, len(world.pending))]
    world.pending = []


@pytest.mark.parametrize("seed", range(40))
def test_finals_exact_whatever_the_crash_points(seed: int) -> None:
    rng = random.Random(seed)
    plan = generate(seed, 1500, T0, 400, groups=12)
    seeds = [(E, exc("zz-seed", 10002, T0 - 60_000)), (S, send("zz-seed", T0 - 60_000))]
    records = (
        seeds
        + plan.records
        + [
            (E, exc("zz-end", 10002, plan.t_end + 3_600_000)),
            (S, send("zz-end", plan.t_end + 3_600_000)),
        ]
    )
    exceptions = [ev for k, ev in records if k is E]
    sends = [ev for k, ev in records if k is S]
    world = World(exceptions, sends)
    for _ in range(rng.randint(2, 12)):
        _run(world, rng, crash=True)
    _run(world, rng, crash=False)
    expected = expected_finals(
        SETTINGS, {0: list(enumerate(exceptions))}, {0: list(enumerate(sends))}
    )
    assert len(expected) > 100
    assert compare(expected, world.outputs) == []


def test_a_run_that_skips_unapplied_records_is_refused() -> None:
    """The worker's guard: a fetched run must start right after the state's offset."""
    from stream.app import StreamWorker

    worker = StreamWorker.__new__(StreamWorker)  # the decision only, no Faust app
    worker.positions = {}
    worker._gap_seeks = {}
    skips = worker._skips_input
    assert not skips("t", 0, 11, 10)  # the next record
    assert not skips("t", 0, 5, 10)  # a replay (skipped record by record)
    assert skips("t", 0, 45, 13)  # 14..44 were never applied: refused, sought back
    worker.positions[("t", 0)] = 44  # 14..44 handled here (undecodable: offset kept)
    assert not skips("t", 0, 45, 13)
    assert skips("t", 1, 100, -1)  # a fresh state that would start beyond offset 0
    assert skips("t", 1, 100, -1) and skips("t", 1, 100, -1)
    assert not skips("t", 1, 100, -1)  # 3 seeks back to 0 did not help: gone (retention)
