"""Writer epochs of the state changelog: a late write of a worker that lost its partition
is ignored by every later restore.

``stream.fence`` keeps a worker from *handing* state writes to the producer once its group
membership may be over, but a write handed over just before (still within the lease) can
reach the broker much later: the cluster paused with the produce request in flight, the
partition's leader moved at the resume and the producer retried. Meanwhile the worker's
session expired, another worker was assigned the partition, restored it from the
changelog and wrote its own state. The old owner's write then lands *after* the new
owner's: the changelog's last value of a key is the older one, and a later restore (the
next rebalance) loses what the new owner counted (the cluster suite's short finals).

So every changelog record carries the epoch of the ownership that wrote it (the header
``gw-epoch``): the group generation the worker's batch was fetched under, raised to the
highest epoch its store has seen for the partition (a group whose metadata was deleted
starts its generations at 1 again). A new owner's epoch is higher than the old owner's
(a new generation); a restore applies a partition's changelog records in
log order and **ignores a record whose epoch is lower than one it already applied**:
that record was written by an ownership that had ended when the newer one wrote. A
record without the header (written before epochs) is applied as before.

The late write can also land *before* the new owner's first write but after its restore
read the log: it is then applied by later restores, and the new owner's replay of the
same input records (from the committed offsets, which the old owner could not commit)
rewrites the same keys with the same values before writing newer ones.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

HEADER: Final = "gw-epoch"
# the highest epoch applied to a partition's local store, kept in that store (RocksDB, one
# per partition) beside Faust's own offset key; not a state key (``stream.keys``)
STORE_KEY: Final = b"__groupwatch\x00epoch__"


def headers(epoch: int) -> list[tuple[str, bytes]]:
    """The Kafka headers of a changelog record written under ``epoch``."""
    return [(HEADER, str(epoch).encode())]


def record_epoch(record_headers: Iterable[tuple[str, bytes]] | None) -> int | None:
    """The epoch a changelog record was written under; None: written before epochs."""
    for name, value in record_headers or ():
        if name == HEADER:
            return int(value)
    return None


def encode_stored(epoch: int) -> bytes:
    """The value of ``STORE_KEY`` for ``epoch``."""
    return str(epoch).encode()


def decode_stored(value: bytes | None) -> int | None:
    return None if value is None else int(value)


def writer_epoch(generation: int, stored: int | None) -> int:
    """The epoch a worker writes a partition under: its batch's generation, raised to the
    highest epoch its store has applied for the partition (never below it: its writes
    would be ignored by later restores)."""
    return generation if stored is None else max(generation, stored)


class EpochGate:
    """The filter of one restore batch: per partition, the highest epoch applied so far."""

    __slots__ = ("changed", "current", "ignored")

    def __init__(self) -> None:
        self.current: dict[int, int | None] = {}
        self.changed: set[int] = set()  # partitions whose highest epoch rose
        self.ignored = 0

    def known(self, partition: int) -> bool:
        return partition in self.current

    def start(self, partition: int, stored: int | None) -> None:
        """The highest epoch already applied to ``partition``'s store (None: none)."""
        self.current[partition] = stored

    def admit(self, partition: int, epoch: int | None) -> bool:
        """Whether a record of ``partition`` written under ``epoch`` is applied."""
        if epoch is None:
            return True
        current = self.current[partition]
        if current is not None and epoch < current:
            self.ignored += 1
            return False
        if current is None or epoch > current:
            self.current[partition] = epoch
            self.changed.add(partition)
        return True
