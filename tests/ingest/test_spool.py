"""Unit tests of the spool log, segment ownership and the forwarder's decisions."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ingest.envelope import Envelope
from ingest.spool import log as spool_module
from ingest.spool import merge as merge_module
from ingest.spool.forwarder import Forwarder
from ingest.spool.frames import Done, Put, encode_frame, read_frames
from ingest.spool.merge import Heads
from ingest.spool.writer import Spool


def env(i: int) -> Envelope:
    return Envelope(topic="t", key=f"k{i}".encode(), value=f"v{i}".encode(), timestamp_ms=i)


def frames_of(path: Path) -> list[object]:
    fd = os.open(path, os.O_RDONLY)
    try:
        return [f for _, f in read_frames(fd, 0, os.fstat(fd).st_size)]
    finally:
        os.close(fd)


def test_frames_round_trip_and_a_torn_tail_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "seg.spool"
    data = encode_frame(Put(0, env(0))) + encode_frame(Done(0)) + encode_frame(Put(1, env(1)))
    path.write_bytes(data + encode_frame(Put(2, env(2)))[:-3])
    assert frames_of(path) == [Put(0, env(0)), Done(0), Put(1, env(1))]


def test_a_corrupt_frame_ends_the_readable_part(tmp_path: Path) -> None:
    path = tmp_path / "seg.spool"
    good = encode_frame(Put(0, env(0)))
    bad = bytearray(encode_frame(Put(1, env(1))))
    bad[-1] ^= 0xFF
    path.write_bytes(good + bytes(bad) + encode_frame(Put(2, env(2))))
    assert frames_of(path) == [Put(0, env(0))]


def test_concurrent_durable_puts_share_fsyncs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = 0
    real_fsync = os.fsync

    def slow_fsync(fd: int) -> None:
        nonlocal calls
        calls += 1
        threading.Event().wait(0.01)
        real_fsync(fd)

    monkeypatch.setattr(spool_module.os, "fsync", slow_fsync)
    sp = Spool(tmp_path, 1 << 30)
    sp.open()
    calls = 0
    threads = [
        threading.Thread(target=lambda i=i: [sp.put(env(i * 100 + j)) for j in range(20)])
        for i in range(16)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    puts = [f for f in frames_of(sp.segment.path) if isinstance(f, Put)]
    assert sorted(p.env.timestamp_ms for p in puts) == sorted(
        i * 100 + j for i in range(16) for j in range(20)
    )
    assert len({p.seq for p in puts}) == 320
    assert sp.pending_records == 320
    assert 0 < calls < 320  # group commit: many puts per fsync


def test_live_segment_cannot_be_claimed_but_a_dead_ones_can(tmp_path: Path) -> None:
    a = Spool(tmp_path, 1 << 30)
    a.open()
    a.put(env(1))
    b = Spool(tmp_path, 1 << 30)
    b.open()
    assert a.segment.path in b.orphans()
    assert b.claim(a.segment.path) is None  # locked by a live owner
    os.close(a.segment.fd)  # the owner dies without cleaning up
    claimed = b.claim(a.segment.path)
    assert claimed is not None and not claimed.own
    claimed.close()


def test_spool_size_cap(tmp_path: Path) -> None:
    sp = Spool(tmp_path, 1 << 20)
    sp.open()
    assert not sp.is_full()
    big = Envelope(topic="t", key=None, value=b"x" * 300_000, timestamp_ms=1)
    for _ in range(3):
        sp.put(big)
    assert sp.is_full(300_000)


class FakeSend:
    """Records what the forwarder sends and answers every send with ``ok``."""

    def __init__(self) -> None:
        self.sent: list[Envelope] = []
        self.ok = True

    def __call__(self, envelope: Envelope, on_result: Callable[[bool], None]) -> None:
        self.sent.append(envelope)
        on_result(self.ok)


def drain(fw: Forwarder, rounds: int = 20) -> None:
    for _ in range(rounds):
        if fw.step() == "idle":
            return


def test_forwarder_skips_late_delivered_and_resends_failed(tmp_path: Path) -> None:
    sp = Spool(tmp_path, 1 << 30)
    sp.open()
    send = FakeSend()
    fw = Forwarder(sp, send)
    late = sp.reserve()
    sp.put(env(1), late)  # timed out in the producer, spooled while still in flight
    failed = sp.reserve()
    sp.put(env(2), failed)
    sp.put(env(3))  # spooled directly (producer refused it)
    assert fw.step() == "blocked"  # env(1) is still in flight: order is kept
    assert send.sent == []
    sp.resolve(late, delivered=True)  # the broker acked it after all
    assert fw.step() == "progress"  # skips env(1) ...
    assert fw.step() == "blocked"  # ... and waits for env(2), still in flight
    assert send.sent == []
    sp.resolve(failed, delivered=False)
    drain(fw)
    assert [e.timestamp_ms for e in send.sent] == [2, 3]
    assert sp.pending_records == 0
    # drained own segment was rotated away
    assert [p.name for p in tmp_path.iterdir()] == [sp.segment.path.name]


def test_a_report_before_its_put_is_written_leaves_nothing_pending(tmp_path: Path) -> None:
    """The publish timed out, and its "delivered" report came before the spool had written
    the Put: the Done frame follows the Put, the forwarder sends nothing, the pending gauge
    returns to 0, the segment rotates, and a restart would not send it either."""
    sp = Spool(tmp_path, 1 << 30)
    sp.open()
    send = FakeSend()
    fw = Forwarder(sp, send)
    ticket = sp.reserve()
    assert ticket is not None
    sp.resolve(ticket, delivered=True)  # the report, between reserve and put
    sp.put(env(1), ticket)
    sp.segment.log.flush()
    frames = frames_of(sp.segment.path)
    assert [type(f).__name__ for f in frames] == ["Put", "Done"]
    first = sp.segment.path
    drain(fw)
    assert send.sent == []
    assert sp.pending_records == 0
    assert not first.exists() and sp.segment.path != first  # rotated: nothing holds it


def test_forwarder_retries_without_duplicates_and_resumes_after_restart(tmp_path: Path) -> None:
    first = Spool(tmp_path, 1 << 30)
    first.open()
    for i in range(5):
        first.put(env(i))
    send = FakeSend()
    send.ok = False
    fw = Forwarder(first, send)
    assert fw.step() == "failed"
    assert len(send.sent) == 5
    os.close(first.segment.fd)  # crash: the segment stays behind with its Puts
    second = Spool(tmp_path, 1 << 30)
    second.open()
    send2 = FakeSend()
    fw2 = Forwarder(second, send2, orphan_scan_seconds=0)
    drain(fw2)
    assert [e.timestamp_ms for e in send2.sent] == [0, 1, 2, 3, 4]
    assert not first.segment.path.exists()
    drain(fw2)
    assert len(send2.sent) == 5


def test_backlog_holds_until_every_spooled_event_is_handed_to_the_producer(
    tmp_path: Path,
) -> None:
    """New events queue behind spooled ones (arrival order) until the forwarder caught up."""
    sp = Spool(tmp_path, 1 << 30)
    sp.open()
    assert not sp.backlog
    flying = sp.reserve()  # a publish timed out: from now on, spool behind it
    assert sp.backlog
    sp.put(env(1), flying)
    sp.put(env(2))
    send = FakeSend()
    fw = Forwarder(sp, send, batch_size=1)
    assert fw.step() == "blocked" and sp.backlog  # env(1) may still be delivered
    sp.resolve(flying, delivered=False)
    assert fw.step() == "progress"  # env(1) handed over, env(2) not yet
    assert [e.timestamp_ms for e in send.sent] == [1] and sp.backlog
    assert fw.step() == "progress"  # env(2)
    assert [e.timestamp_ms for e in send.sent] == [1, 2]
    drain(fw)  # the pass that reaches the end (the Done frames written meanwhile)
    assert not sp.backlog
    sp.put(env(3))  # any spooled event starts a backlog again
    assert sp.backlog


def test_a_failed_forward_keeps_the_backlog(tmp_path: Path) -> None:
    sp = Spool(tmp_path, 1 << 30)
    sp.open()
    for i in range(3):
        sp.put(env(i))
    send = FakeSend()
    send.ok = False  # the broker is still away
    fw = Forwarder(sp, send)
    assert fw.step() == "failed"
    assert sp.backlog and sp.pending_records == 3
    send.ok = True
    drain(fw)
    assert not sp.backlog and sp.pending_records == 0
    assert [e.timestamp_ms for e in send.sent] == [0, 1, 2, 0, 1, 2]


def test_claimed_orphans_hold_the_backlog_until_drained(tmp_path: Path) -> None:
    dead = Spool(tmp_path, 1 << 30)
    dead.open()
    dead.put(env(7))
    os.close(dead.segment.fd)  # its process died with an event spooled
    live = Spool(tmp_path, 1 << 30)
    live.open()
    send = FakeSend()
    fw = Forwarder(live, send, orphan_scan_seconds=0, batch_size=1)
    fw._claim_orphans()
    assert live.backlog  # events of the dead process come before this one's new ones
    drain(fw)
    assert [e.timestamp_ms for e in send.sent] == [7]
    assert not live.backlog


def test_two_processes_forward_their_backlogs_merged_by_spool_time(tmp_path: Path) -> None:
    """After an outage each worker holds a backlog: Kafka gets them merged, oldest first."""
    spools = [Spool(tmp_path, 1 << 30), Spool(tmp_path, 1 << 30)]
    for sp in spools:
        sp.open()
    for i in range(8):  # alternate arrivals: even ones at worker 0, odd ones at worker 1
        spools[i % 2].put(env(i))
        time.sleep(0.003)
    send = FakeSend()  # one shared log of what reached "Kafka"
    send.ok = False  # the broker is still away: both forwarders fail and publish heads
    heads = [Heads(tmp_path, slack_ms=0), Heads(tmp_path, slack_ms=0)]
    forwarders = [Forwarder(sp, send, heads=h) for sp, h in zip(spools, heads, strict=True)]
    assert [fw.step() for fw in forwarders] == ["failed", "blocked"]  # 1 waits for 0's
    send.sent.clear()
    send.ok = True  # the broker is back; worker 0 happens to go first
    for _ in range(40):
        outcomes = [fw.step() for fw in forwarders]
        if outcomes == ["idle", "idle"]:
            break
    assert [e.timestamp_ms for e in send.sent] == list(range(8))
    assert all(h.gate_ms() is None for h in heads)  # no backlog left anywhere
    for h in heads:
        h.close()
    assert list((tmp_path / "heads").iterdir()) == []


def test_a_stuck_process_holds_the_merge_back_only_for_a_while(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stuck = Heads(tmp_path, slack_ms=0)
    stuck.publish(1)  # a live process whose oldest event never gets forwarded
    sp = Spool(tmp_path, 1 << 30)
    sp.open()
    sp.put(env(5))
    send = FakeSend()
    fw = Forwarder(sp, send, heads=Heads(tmp_path, slack_ms=0))
    assert fw.step() == "blocked" and send.sent == []
    monkeypatch.setattr(merge_module, "MAX_HOLD_S", 0.0)
    drain(fw)
    assert [e.timestamp_ms for e in send.sent] == [5]


def test_a_slow_but_draining_process_holds_the_merge_back_as_long_as_it_drains(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under load a forwarder drains slowly: while its head moves, the others wait for it
    past the hold limit (forwarding past it put its backlog behind newer events, late for
    the stream); once its head stops moving, the hold limit applies."""
    monkeypatch.setattr(merge_module, "MAX_HOLD_S", 0.05)
    slow = Heads(tmp_path, slack_ms=0)
    slow.publish(1)
    sp = Spool(tmp_path, 1 << 30)
    sp.open()
    sp.put(env(50))
    send = FakeSend()
    fw = Forwarder(sp, send, heads=Heads(tmp_path, slack_ms=0))
    for head in range(2, 12):  # ten passes over 0.2 s, four times the hold limit
        assert fw.step() == "blocked" and send.sent == [], head
        slow.publish(head)  # the slow process forwarded one more of its older events
        time.sleep(0.02)
    began = time.monotonic()
    while fw.step() == "blocked":  # its head stopped moving: stuck, not slow
        assert time.monotonic() - began < 5
        time.sleep(0.01)
    drain(fw)
    assert [e.timestamp_ms for e in send.sent] == [50]
    assert time.monotonic() - began >= 0.05


def test_stale_heads_are_ignored(tmp_path: Path) -> None:
    gone = Heads(tmp_path, stale_s=0.05)
    gone.publish(1)
    live = Heads(tmp_path, stale_s=0.05)
    assert live.gate_ms() == 1 + live.slack_ms
    time.sleep(0.1)  # the other process stopped rewriting its head
    assert live.gate_ms() is None


# Written by ingest/spool.py as of 32bdb9a (the last change of the format before the spool
# became a package) with tests/ingest/data/make_spool_32bdb9a.py: Put 0 (spooled in flight,
# then delivered: Done 0), Put 1, Put 2 (forwarded: Done 2), Put 3 (no command header),
# Put 4, then a torn frame.
OLD_SEGMENT = Path(__file__).parent / "data" / "spool-32bdb9a.spool"


def test_a_segment_written_by_the_previous_spool_code_is_forwarded(tmp_path: Path) -> None:
    dead = tmp_path / "00000000000000000001-1.spool"
    dead.write_bytes(OLD_SEGMENT.read_bytes())
    sp = Spool(tmp_path, 1 << 30)
    sp.open()
    send = FakeSend()
    fw = Forwarder(sp, send, orphan_scan_seconds=0)
    drain(fw)
    command = "Group.CallbackSendMsgException"
    assert [(e.timestamp_ms - 1_700_000_000_000, e.key, e.command) for e in send.sent] == [
        (1, b"1400000001:g1", command),
        (3, b"1400000001:g1", None),
        (4, b"1400000001:g0", command),
    ]
    assert not dead.exists() and sp.pending_records == 0
    # and what this code writes is, frame for frame, what the old code wrote
    frames = frames_of(OLD_SEGMENT)
    assert [type(f).__name__ for f in frames] == ["Put"] * 3 + ["Done", "Put", "Done", "Put"]
    data = b"".join(encode_frame(f) for f in frames)  # type: ignore[arg-type]
    assert OLD_SEGMENT.read_bytes().startswith(data) and len(data) == 544
