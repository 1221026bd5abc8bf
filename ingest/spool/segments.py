"""Spool segment files: ``<spool_dir>/<time_ns>-<pid>.spool``, one per live worker process.

A live process holds its segment under ``flock`` for its whole life, so a segment whose
lock is free belongs to a dead process and may be claimed (and drained) by anyone. The
directory is fsynced when a segment is created.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from ingest.spool.log import GroupCommitLog

SUFFIX = ".spool"


@dataclass
class Segment:
    """One spool file this process holds the lock of."""

    path: Path
    fd: int
    log: GroupCommitLog
    own: bool
    cursor: int = 0  # every Put before this offset is in Kafka
    done: set[int] = field(default_factory=set)
    writers: int = 0  # request threads between reserve() and append()
    next_seq: int = 0
    head_ms: int | None = None  # spool time of its oldest Put not yet forwarded (last pass)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def create(directory: Path) -> Segment:
    """A new segment of this process, locked, its name made durable."""
    name = f"{time.time_ns():020d}-{os.getpid()}"
    tmp = directory / f"{name}.tmp"
    fd = os.open(tmp, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    path = directory / f"{name}{SUFFIX}"
    os.rename(tmp, path)
    _fsync_dir(directory)
    return Segment(path, fd, GroupCommitLog(fd, 0), own=True)


def claim(path: Path) -> Segment | None:
    """Open and lock a segment left by a dead process; None if it is live or gone."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        st = os.fstat(fd)
        # Drained and unlinked by another process between our open and flock?
        if st.st_nlink == 0 or os.stat(path).st_ino != st.st_ino:
            os.close(fd)
            return None
    except OSError:
        os.close(fd)
        return None
    return Segment(path, fd, GroupCommitLog(fd, st.st_size), own=False)


def others(directory: Path, own: Path | None) -> list[Path]:
    """Segment files other than ``own``, oldest first (live ones fail to ``claim``)."""
    try:
        names = sorted(e.name for e in os.scandir(directory) if e.name.endswith(SUFFIX))
    except FileNotFoundError:
        return []
    return [directory / n for n in names if directory / n != own]


def others_bytes(directory: Path, own: Path | None) -> int:
    """Bytes on disk of the segment files other than ``own``."""
    total = 0
    with contextlib.suppress(OSError):
        for entry in os.scandir(directory):
            if entry.name.endswith(SUFFIX) and Path(entry.path) != own:
                with contextlib.suppress(OSError):
                    total += entry.stat().st_size
    return total
