"""The consumed Kafka messages of one sink batch, held as columns.

``RawMessage`` is what the sink needs of one message; ``RawMessages`` holds a whole
``consume()`` result as four lists (topic, partition, offset, value), each taken with one
C-level pass over the messages (``map(Message.offset, messages)``) instead of a Python
loop building a tuple per record: the fetch thread, not DuckDB, was the sink's critical
path (docs/PERFORMANCE-analytics.md). It is a ``Sequence[RawMessage]``: indexing or
iterating it yields the tuples, so collating parts of it and isolating a refused batch
(``analytics.apply.isolate``) work on it as on a list.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import NamedTuple, overload


class RawMessage(NamedTuple):
    """What the sink needs of one Kafka message (a tuple: cheap to make per record)."""

    topic: str
    partition: int
    offset: int
    value: bytes | None


Bounds = tuple[dict[tuple[str, int], int], dict[tuple[str, int], int]]


class RawMessages(Sequence[RawMessage]):
    """Messages as columns; the lists are equally long and never changed after building."""

    __slots__ = ("_bounds", "offsets", "partitions", "topics", "values")

    def __init__(
        self,
        topics: list[str],
        partitions: list[int],
        offsets: list[int],
        values: list[bytes | None],
    ) -> None:
        if not len(topics) == len(partitions) == len(offsets) == len(values):
            raise ValueError("RawMessages: the columns differ in length")
        self.topics, self.partitions, self.offsets, self.values = (
            topics,
            partitions,
            offsets,
            values,
        )
        self._bounds: Bounds | None = None

    def __len__(self) -> int:
        return len(self.offsets)

    @overload
    def __getitem__(self, index: int) -> RawMessage: ...

    @overload
    def __getitem__(self, index: slice) -> RawMessages: ...

    def __getitem__(self, index: int | slice) -> RawMessage | RawMessages:
        if isinstance(index, slice):
            return RawMessages(
                self.topics[index], self.partitions[index], self.offsets[index], self.values[index]
            )
        return RawMessage(
            self.topics[index], self.partitions[index], self.offsets[index], self.values[index]
        )

    def __iter__(self) -> Iterator[RawMessage]:
        return map(RawMessage, self.topics, self.partitions, self.offsets, self.values)

    def __repr__(self) -> str:
        return f"RawMessages({len(self)} messages)"

    def only_topic(self) -> str | None:
        """The topic of every message, or None if they come from several (or none)."""
        first = self.topics[0] if self.topics else None
        if first is None or self.topics.count(first) != len(self.topics):
            return None
        return first

    def offset_bounds(self) -> Bounds:
        """Per (topic, partition): the lowest and the highest offset among the messages."""
        if self._bounds is not None:
            return self._bounds
        low: dict[tuple[str, int], int] = {}
        high: dict[tuple[str, int], int] = {}
        for key, offset in zip(
            zip(self.topics, self.partitions, strict=True), self.offsets, strict=True
        ):
            top = high.get(key)
            if top is None:
                low[key] = high[key] = offset
            elif offset > top:
                high[key] = offset
            elif offset < low[key]:
                low[key] = offset
        self._bounds = (low, high)
        return low, high

    def next_offsets(self) -> dict[tuple[str, int], int]:
        """Each partition's next offset after these messages."""
        return {key: offset + 1 for key, offset in self.offset_bounds()[1].items()}
