"""Forward heads: the ingress processes' spool backlogs merged by arrival time.

Each worker process spools into its own segment and forwards it itself. After a broker
outage every worker holds a backlog covering the whole outage; forwarded one after the
other, the second worker's oldest events would reach Kafka behind the first worker's
newest ones, as late for the stream as the outage was long.

So each forwarder publishes its *head*, the arrival time of its oldest event not yet
forwarded, in ``<spool_dir>/heads/<process>``, and forwards only events that arrived no
later than the other processes' oldest head plus ``slack_ms``. The process holding the
oldest event may always forward it, so the merge always progresses. A head file not
rewritten for ``stale_s`` (a dead or stuck process) is ignored, then deleted.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

_WIDTH = 20  # a head is written in place, fixed width: "-" (no backlog) or milliseconds
_NONE = b"-".ljust(_WIDTH)


class Heads:
    """This process's head file and the gate the other heads put on forwarding."""

    def __init__(self, spool_dir: Path, *, slack_ms: int = 1000, stale_s: float = 10.0) -> None:
        self.directory = spool_dir / "heads"
        self.directory.mkdir(parents=True, exist_ok=True)
        self.slack_ms = slack_ms
        self.stale_s = stale_s
        self.name = f"{time.time_ns():020d}-{os.getpid()}"
        self._fd = os.open(self.directory / self.name, os.O_RDWR | os.O_CREAT, 0o600)
        self.publish(None)

    def publish(self, oldest_ms: int | None) -> None:
        """Write this process's head (None: nothing waits to be forwarded)."""
        data = _NONE if oldest_ms is None else str(oldest_ms).encode().ljust(_WIDTH)
        os.pwrite(self._fd, data, 0)  # also the heartbeat: the mtime moves

    def gate_ms(self) -> int | None:
        """Latest arrival time this process may forward now; None when nothing limits it."""
        low: int | None = None
        now = time.time()
        try:
            entries = list(os.scandir(self.directory))
        except FileNotFoundError:
            return None
        for entry in entries:
            if entry.name == self.name:
                continue
            try:
                age = now - entry.stat().st_mtime
                if age > self.stale_s:
                    if age > 6 * self.stale_s:
                        os.unlink(entry.path)  # a dead process's head
                    continue
                with open(entry.path, "rb") as fh:
                    raw = fh.read(_WIDTH).strip()
            except OSError:
                continue
            if not raw.isdigit():
                continue  # "-": no backlog there (or a torn write: ignore this once)
            head = int(raw)
            if low is None or head < low:
                low = head
        return None if low is None else low + self.slack_ms

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)
        with contextlib.suppress(OSError):
            os.unlink(self.directory / self.name)
