"""Group commit: appends to one file, where concurrent durable appends share one
``write`` + ``fsync``."""

from __future__ import annotations

import contextlib
import os
import threading


class SpoolError(OSError):
    """A spool write failed (disk full, I/O error): the event is not stored."""


class GroupCommitLog:
    """Appends to one file; durable appends wait for a shared write + fsync."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self._cond = threading.Condition()
        self._buf: list[bytes] = []
        self._appended = 0  # tickets handed out
        self._resolved = 0  # tickets written (or failed)
        self._failed: list[tuple[int, int, OSError]] = []
        self._leader = False
        self.committed = size  # bytes known to be on disk

    def append(self, data: bytes, *, durable: bool = True) -> None:
        with self._cond:
            self._buf.append(data)
            self._appended += 1
            ticket = self._appended
            if durable:
                self._commit_until(ticket)

    def flush(self) -> None:
        """Write and fsync whatever non-durable appends are buffered."""
        with self._cond:
            if self._appended > self._resolved:
                self._commit_until(self._appended)

    def idle(self) -> bool:
        with self._cond:
            return not self._buf and not self._leader and self._appended == self._resolved

    def _commit_until(self, ticket: int) -> None:
        while self._resolved < ticket:
            if self._leader:
                self._cond.wait()
                continue
            self._leader = True
            batch = b"".join(self._buf)
            self._buf.clear()
            low, high = self._resolved, self._appended
            error: OSError | None = None
            self._cond.release()
            try:
                self._write(batch)
            except OSError as exc:
                error = exc
            finally:
                self._cond.acquire()
                self._leader = False
            if error is None:
                self.committed += len(batch)
            else:
                self._failed = [*self._failed[-15:], (low, high, error)]
            self._resolved = high
            self._cond.notify_all()
        for low, high, error in self._failed:
            if low < ticket <= high:
                raise SpoolError(error.errno or 0, f"spool write failed: {error}")

    def _write(self, batch: bytes) -> None:
        view = memoryview(batch)
        written = 0
        try:
            while written < len(view):
                written += os.write(self.fd, view[written:])
            os.fsync(self.fd)
        except OSError:
            # Drop the partial batch so later frames stay readable.
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, self.committed)
            raise
