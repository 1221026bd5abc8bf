"""The worker's lease on its group generation (stream/fence.py) on real aiokafka consumers
in a real group on the session broker: it holds only on answered heartbeats or SyncGroups
of the generation, waits for a fresh reply when the last one is too old, and is lost as
soon as another member's join ends the generation or the member left."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from aiokafka import AIOKafkaConsumer

from groupwatch.admin.topics import create_topics
from groupwatch.contracts import Settings, Topics
from stream.fence import Fence

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(120)]

SESSION_MS, HEARTBEAT_MS = 6000, 1500


def member(bootstrap: str, topic: str, group: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        session_timeout_ms=SESSION_MS,
        heartbeat_interval_ms=HEARTBEAT_MS,
        enable_auto_commit=False,
    )


async def assigned(consumer: AIOKafkaConsumer, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not consumer.assignment():
        assert time.monotonic() < deadline, "no assignment"
        await consumer.getmany(timeout_ms=100)


async def lease_scenario(bootstrap: str, topic: str) -> dict[str, object]:
    group = f"fence-{uuid.uuid4().hex[:8]}"
    a = member(bootstrap, topic, group)
    await a.start()
    try:
        await assigned(a)
        coordinator = a._coordinator
        fence = Fence(lambda: coordinator, session_s=SESSION_MS / 1000, heartbeat_s=1.5)
        fence.watch()  # after the join: the lease waits for the first heartbeat reply
        generation = coordinator.generation
        out: dict[str, object] = {"unrenewed_age": fence.age()}
        t0 = time.monotonic()
        out["first_hold"] = await fence.hold(generation)
        out["first_hold_s"] = time.monotonic() - t0
        out["age_after_hold"] = fence.age()
        out["held_after_hold"] = fence.held(generation)
        out["held_unrenewed"] = Fence(lambda: coordinator, session_s=6.0, heartbeat_s=1.5).held(
            generation
        )

        # a lease shorter than the heartbeat interval: each hold waits for a fresh reply
        short = Fence(lambda: coordinator, session_s=2.0, heartbeat_s=1.9)
        short.watch()
        out["short_hold"] = await short.hold(generation)
        out["short_age"] = short.age()
        out["stale_generation"] = fence.lost(generation - 1)

        # a lease of 0.5 s (heartbeats every 1.5 s): current right after a rejoin only
        # because the SyncGroup reply renews it
        sync = Fence(lambda: coordinator, session_s=1.0, heartbeat_s=0.5)
        sync.watch()
        b = member(bootstrap, topic, group)  # its join ends a's generation
        await b.start()
        try:
            t0 = time.monotonic()
            lost = None
            while lost is None and time.monotonic() - t0 < 20:
                await a.getmany(timeout_ms=100)
                lost = fence.lost(generation)
            out["lost_on_join"] = lost
            out["hold_after_join"] = await fence.hold(generation)
            while coordinator.generation in (generation, -1) or not a.assignment():
                assert time.monotonic() - t0 < 30, "a did not rejoin"
                await a.getmany(timeout_ms=20)
            out["age_after_rejoin"] = sync.age()
            out["held_old_after_rejoin"] = fence.held(generation)
            out["held_new_after_rejoin"] = fence.held(coordinator.generation)
            out["hold_new_generation"] = await fence.hold(coordinator.generation)
        finally:
            await b.stop()
    finally:
        await a.stop()
    out["lost_after_stop"] = fence.lost(coordinator.generation)
    return out


def test_the_lease_holds_on_heartbeats_and_is_lost_when_the_generation_ends(
    kafka_bootstrap: str, settings: Settings, topics: Topics
) -> None:
    create_topics(settings)
    out = asyncio.run(lease_scenario(kafka_bootstrap, topics.exceptions))
    assert out["unrenewed_age"] == float("inf")  # no heartbeat answered yet: no lease
    assert out["first_hold"] is None, out
    assert 0 < out["first_hold_s"] < 5, out  # type: ignore[operator]
    assert out["age_after_hold"] < SESSION_MS / 1000 - 0.3, out  # type: ignore[operator]
    assert out["short_hold"] is None and out["short_age"] < 0.1, out  # type: ignore[operator]
    assert "is over" in str(out["stale_generation"]), out
    assert out["held_after_hold"] is True and out["held_unrenewed"] is False, out
    assert out["held_old_after_rejoin"] is False, out  # another member's join ended it
    assert out["held_new_after_rejoin"] is True, out  # renewed by the SyncGroup reply
    assert out["lost_on_join"] is not None, out
    assert out["hold_after_join"] is not None, out
    assert out["hold_new_generation"] is None, out
    assert out["age_after_rejoin"] < 0.5, out  # type: ignore[operator]
    assert out["lost_after_stop"] is not None, out
