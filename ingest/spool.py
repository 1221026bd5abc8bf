"""The local spool: an append-only, fsynced log of events the broker did not ack in time.

Layout: ``<spool_dir>/<time_ns>-<pid>.spool`` segments, one written by each live worker
process (held under ``flock`` for the process's life, so a segment whose lock is free
belongs to a dead process and may be drained by anyone). A segment is a sequence of
frames ``[u32 length][u32 crc32][msgpack payload]``; a torn or corrupt tail (a crash
mid-write, never acknowledged) ends the readable part.

Payloads are ``Put`` (an event to publish) and ``Done`` (that ``Put`` is in Kafka).
Writers group-commit: concurrent durable appends share one ``write`` + ``fsync``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

SUFFIX = ".spool"
_HEADER = struct.Struct("<II")
_MAX_FRAME = 64 << 20


class Envelope(msgspec.Struct, array_like=True):
    """One Kafka record, exactly as it will be produced."""

    topic: str
    key: bytes | None
    value: bytes
    timestamp_ms: int
    command: str | None = None


class Put(msgspec.Struct, tag="p", array_like=True):
    seq: int
    env: Envelope
    at_ms: int = 0  # when it was spooled (wall clock): the forwarders merge by it


class Done(msgspec.Struct, tag="d", array_like=True):
    seq: int


Frame = Put | Done
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Frame)


class SpoolError(OSError):
    """A spool write failed (disk full, I/O error): the event is not stored."""


def encode_frame(frame: Frame) -> bytes:
    payload = _encoder.encode(frame)
    return _HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def read_frames(fd: int, start: int, end: int) -> Iterator[tuple[int, Frame]]:
    """``(offset after frame, frame)`` from ``start`` up to ``end``; stops at a bad frame."""
    pos = start
    chunk = b""
    chunk_start = start
    while pos < end:
        rel = pos - chunk_start
        if len(chunk) - rel < _HEADER.size:
            chunk = os.pread(fd, min(max(1 << 20, _HEADER.size), end - pos), pos)
            chunk_start, rel = pos, 0
            if len(chunk) < _HEADER.size:
                return
        length, crc = _HEADER.unpack_from(chunk, rel)
        if length > _MAX_FRAME or pos + _HEADER.size + length > end:
            return
        body_start = rel + _HEADER.size
        if len(chunk) < body_start + length:
            chunk = os.pread(fd, max(1 << 20, _HEADER.size + length), pos)
            chunk_start, body_start = pos, _HEADER.size
            if len(chunk) < body_start + length:
                return
        payload = chunk[body_start : body_start + length]
        if zlib.crc32(payload) != crc:
            return
        try:
            frame = _decoder.decode(payload)
        except msgspec.DecodeError:
            return
        pos += _HEADER.size + length
        yield pos, frame


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


def _lock_segment(path: Path) -> Segment | None:
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


# States of an in-flight Put: the producer may still deliver it.
FLYING, DELIVERED, FAILED = "flying", "delivered", "failed"


@dataclass(frozen=True)
class Ticket:
    """A place in this process's spool reserved for an event still in the producer."""

    segment: Segment
    seq: int


class Spool:
    """This process's spool writer plus the bookkeeping the forwarder reads."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._segment: Segment | None = None
        self.inflight: dict[tuple[str, int], str] = {}
        self.pending_records = 0  # Puts of this process not yet known to be in Kafka
        # Spooled events not yet all handed to the producer: new events are spooled behind
        # them (not produced directly), so Kafka gets the events in the order they came.
        self.backlog = False
        self._others_bytes = 0
        self._others_checked = 0.0
        self.wakeup = threading.Event()

    # --- writer side -------------------------------------------------------------
    def open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        with self._lock:
            self._segment = self._new_segment()

    def _new_segment(self) -> Segment:
        name = f"{time.time_ns():020d}-{os.getpid()}"
        tmp = self.directory / f"{name}.tmp"
        fd = os.open(tmp, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        path = self.directory / f"{name}{SUFFIX}"
        os.rename(tmp, path)
        _fsync_dir(self.directory)
        return Segment(path, fd, GroupCommitLog(fd, 0), own=True)

    @property
    def segment(self) -> Segment:
        if self._segment is None:
            raise RuntimeError("spool is not open")
        return self._segment

    def total_bytes(self) -> int:
        """Bytes on disk in the spool directory (other files rescanned every second)."""
        now = time.monotonic()
        if now - self._others_checked > 1.0:
            own = self._segment.path if self._segment else None
            total = 0
            with contextlib.suppress(OSError):
                for entry in os.scandir(self.directory):
                    if entry.name.endswith(SUFFIX) and Path(entry.path) != own:
                        with contextlib.suppress(OSError):
                            total += entry.stat().st_size
            self._others_bytes, self._others_checked = total, now
        own_bytes = self._segment.log.committed if self._segment else 0
        return self._others_bytes + own_bytes

    def is_full(self, extra: int = 0) -> bool:
        return self.total_bytes() + extra > self.max_bytes

    def reserve(self) -> Ticket:
        """Claim a seq for an event whose delivery report may still come (state FLYING)."""
        with self._lock:
            seg = self.segment
            seq = seg.next_seq
            seg.next_seq += 1
            seg.writers += 1
            self.inflight[(seg.path.name, seq)] = FLYING
            self.backlog = True
            return Ticket(seg, seq)

    def put(self, env: Envelope, ticket: Ticket | None = None) -> None:
        """Append an event and fsync it (group commit); raises ``SpoolError``."""
        if ticket is None:
            with self._lock:
                seg = self.segment
                seq = seg.next_seq
                seg.next_seq += 1
                seg.writers += 1
                self.backlog = True
        else:
            seg, seq = ticket.segment, ticket.seq
        try:
            seg.log.append(encode_frame(Put(seq, env, time.time_ns() // 1_000_000)))
            with self._lock:
                self.pending_records += 1
        except SpoolError:
            with self._lock:
                self.inflight.pop((seg.path.name, seq), None)
            raise
        finally:
            with self._lock:
                seg.writers -= 1
        self.wakeup.set()

    def cancel(self, ticket: Ticket) -> None:
        """Give a reserved seq back without writing it (the spool refused the event)."""
        with self._lock:
            self.inflight.pop((ticket.segment.path.name, ticket.seq), None)
            ticket.segment.writers -= 1

    def resolve(self, ticket: Ticket, delivered: bool) -> None:
        """The delivery report of a spooled in-flight event arrived (poll thread)."""
        key = (ticket.segment.path.name, ticket.seq)
        with self._lock:  # rotation checks under this lock: the segment stays open
            if key not in self.inflight:
                return  # cancelled: the event was refused, nothing was spooled
            if delivered:
                # Only buffered here (no I/O); written with the next commit.
                ticket.segment.log.append(encode_frame(Done(ticket.seq)), durable=False)
            self.inflight[key] = DELIVERED if delivered else FAILED
        self.wakeup.set()

    # --- forwarder side ----------------------------------------------------------
    def take_inflight(self, seg: Segment, seq: int) -> str | None:
        """The in-flight state of a Put, forgetting it once it is decided."""
        key = (seg.path.name, seq)
        with self._lock:
            state = self.inflight.get(key)
            if state is not None and state != FLYING:
                del self.inflight[key]
            return state

    def mark_done(self, seg: Segment, seq: int) -> None:
        seg.done.add(seq)
        seg.log.append(encode_frame(Done(seq)), durable=False)

    def record_drained(self, count: int = 1) -> None:
        with self._lock:
            self.pending_records = max(0, self.pending_records - count)

    def add_pending(self, count: int) -> None:
        with self._lock:
            self.pending_records += count
            if count:
                self.backlog = True

    def keep_backlog(self) -> None:
        """Handed-over Puts failed: new events queue behind them again."""
        with self._lock:
            self.backlog = True

    def clear_backlog(self, seg: Segment, end: int) -> bool:
        """Every Put of this process's segment up to ``end`` is in the producer: produce
        new events directly again, unless more was committed meanwhile. True if it changed.

        A Put still between its write and its commit is forwarded on the next pass, a few
        milliseconds behind events produced directly from now on.
        """
        with self._lock:
            if not self.backlog or seg is not self._segment or seg.log.committed != end:
                return False
            self.backlog = False
            return True

    def rotate_if_drained(self, seg: Segment) -> bool:
        """Replace this process's drained segment with a fresh one and delete it."""
        with self._lock:
            if seg is not self._segment or seg.writers or seg.log.committed == 0:
                return False
            if not seg.log.idle() or seg.cursor != seg.log.committed:
                return False
            if any(name == seg.path.name for name, _ in self.inflight):
                return False
            self._segment = self._new_segment()
        with contextlib.suppress(OSError):
            seg.path.unlink()
        seg.close()
        return True

    def orphans(self) -> list[Path]:
        """Segment files of other processes, oldest first (live ones fail to lock later)."""
        own = self._segment.path if self._segment else None
        try:
            names = sorted(e.name for e in os.scandir(self.directory) if e.name.endswith(SUFFIX))
        except FileNotFoundError:
            return []
        return [self.directory / n for n in names if own is None or self.directory / n != own]

    def claim(self, path: Path) -> Segment | None:
        return _lock_segment(path)

    def close(self) -> None:
        with self._lock:
            seg, self._segment = self._segment, None
        if seg is not None:
            with contextlib.suppress(SpoolError):
                seg.log.flush()
            drained = seg.cursor == seg.log.committed and not any(
                name == seg.path.name for name, _ in self.inflight
            )
            if drained:
                with contextlib.suppress(OSError):
                    seg.path.unlink()
            seg.close()
