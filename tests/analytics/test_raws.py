"""A batch held as columns (``RawMessages``) collates exactly like the same tuples."""

from __future__ import annotations

from analytics.batch import collate, prepare
from analytics.raws import RawMessage, RawMessages
from groupwatch.contracts import Topics, load_settings
from groupwatch.contracts.records import encode
from tests.support import events as f

T = Topics.from_settings(load_settings())


def columns(messages: list[RawMessage]) -> RawMessages:
    return RawMessages(
        [m.topic for m in messages],
        [m.partition for m in messages],
        [m.offset for m in messages],
        [m.value for m in messages],
    )


def interleaved(values: list[bytes | None], topic: str = T.exceptions) -> list[RawMessage]:
    """Values spread over 3 partitions, each partition's offsets rising from 100 * p."""
    return [RawMessage(topic, i % 3, 100 * (i % 3) + i // 3, v) for i, v in enumerate(values)]


def test_columns_are_the_same_messages_with_their_offset_bounds() -> None:
    msgs = interleaved([b"a", b"b", None, b"d", b"e"])
    raws = columns(msgs)
    assert list(raws) == msgs and raws[2] == msgs[2] and list(raws[1:3]) == msgs[1:3]
    assert raws.offset_bounds() == ({(T.exceptions, 0): 0, (T.exceptions, 1): 100,
                                     (T.exceptions, 2): 200},
                                    {(T.exceptions, 0): 1, (T.exceptions, 1): 101,
                                     (T.exceptions, 2): 200})  # fmt: skip
    assert raws.next_offsets() == {(T.exceptions, 0): 2, (T.exceptions, 1): 102,
                                   (T.exceptions, 2): 201}  # fmt: skip
    assert raws.only_topic() == T.exceptions
    assert columns([*msgs, RawMessage(T.sends, 0, 7, b"x")]).only_topic() is None


def test_a_batch_as_columns_collates_like_the_tuples() -> None:
    # random % 7 != 0: no extra (the factory adds one to every seventh record), so the
    # clean batch takes the JSON path
    good = [
        encode(f.exception("1", f"g{i % 3}", f"u{i}", 7 * i + 1, f.BASE_MS + i)) for i in range(100)
    ]
    cases: list[list[RawMessage]] = [
        interleaved(list(good)),  # the fast path: raw exceptions only
        interleaved([*good[:50], b"{not json", *good[50:]]),  # a bad one: record by record
        interleaved([*good[:50], None, *good[50:]]),  # a tombstone
        [*interleaved(list(good)), RawMessage(T.alerts, 0, 0, b"{}")],  # mixed topics
    ]
    for msgs in cases:
        as_tuples, as_columns = prepare(collate(msgs, T)), prepare(collate(columns(msgs), T))
        assert as_columns.next_offsets == as_tuples.next_offsets
        assert as_columns.counts == as_tuples.counts and as_columns.rejects == as_tuples.rejects
        assert as_columns.tables.keys() == as_tuples.tables.keys()
        for name, table in as_tuples.tables.items():
            assert as_columns.tables[name].equals(table), name
