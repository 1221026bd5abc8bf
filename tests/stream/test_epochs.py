"""The changelog's writer epochs (stream/epochs.py): the header, the writer's epoch, the
restore gate that skips records of an ownership older than one already applied."""

from __future__ import annotations

from stream import epochs


def test_the_header_round_trips_and_a_record_without_it_has_no_epoch() -> None:
    assert epochs.record_epoch(epochs.headers(17)) == 17
    assert epochs.record_epoch([("other", b"x"), *epochs.headers(3)]) == 3
    assert epochs.record_epoch(None) is None and epochs.record_epoch([("other", b"1")]) is None
    assert epochs.decode_stored(None) is None and epochs.decode_stored(b"12") == 12


def test_a_writer_never_writes_below_the_highest_epoch_its_store_applied() -> None:
    assert epochs.writer_epoch(7, None) == 7
    assert epochs.writer_epoch(7, 6) == 7
    assert epochs.writer_epoch(1, 6) == 6  # a fresh group (generations from 1 again)


def test_the_gate_skips_records_older_than_one_applied_per_partition() -> None:
    gate = epochs.EpochGate()
    gate.start(0, None)
    gate.start(1, 9)  # partition 1's store already applied epoch 9
    admitted = [
        gate.admit(0, None),  # written before epochs
        gate.admit(0, 5),
        gate.admit(0, 5),  # the same ownership goes on
        gate.admit(0, 6),  # the next owner
        gate.admit(0, 5),  # the ended ownership's late write
        gate.admit(0, None),
        gate.admit(0, 6),
        gate.admit(1, 8),
        gate.admit(1, 9),
    ]
    assert admitted == [True, True, True, True, False, True, True, False, True]
    assert gate.ignored == 2
    assert gate.current == {0: 6, 1: 9} and gate.changed == {0}
