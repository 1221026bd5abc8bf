"""Run one served SELECT in a forked child process that is killed at its limits.

Inside the process that holds the database, DuckDB cannot bound every statement: one
long scalar function (``SELECT list_sort(range(50000000))``) ignored ``interrupt()``
for 88 s and grew the process to 7.3 GB, ``memory_limit`` or not (only the buffer
manager's allocations count against it; docs/ANALYTICS.md). A second process cannot
open the file while the sink writes it. So each statement runs in a child forked from
the process with the database open: it sees the committed data of the moment (a
read-only transaction of its copy of the database), and the parent can kill it.

The parent kills the child at the timeout, when its resident memory grows by more than
``memory_mb`` over the parent's at the fork (polled every 10 ms; DuckDB's own
``memory_limit`` is set to the same value in the child), or when its answer grows beyond
``max_response_bytes``. The child serializes the answer (JSON or Arrow IPC) itself, so
serializing is bounded the same way. Its DuckDB may not spill to disk (the temp files'
directory is the parent's: ``max_temp_directory_size`` is 0 in a forked child).

Forking is only safe while no other thread of the parent is inside DuckDB (a lock it
holds would stay locked in the child): every DuckDB user of the parent holds
``ForkGate.shared()``, and the fork happens under ``ForkGate.exclusive()``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import duckdb
import orjson
import pyarrow as pa

from analytics.guard import check_select
from analytics.served import QueryFailed, QueryTimeout

ARROW_STREAM = "application/vnd.apache.arrow.stream"
POLL_SECONDS = 0.01
PR_SET_PDEATHSIG = 1


def _find_prctl() -> Any:
    # resolved here, not in the child: loading a library after a fork could wait forever
    # on a loader lock another thread of the parent held at the fork
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux
        return None


_PRCTL = _find_prctl()


class QueryTooLarge(QueryFailed):
    """The statement's memory or its answer grew beyond the configured limit."""


@dataclass(frozen=True)
class Limits:
    timeout_s: float
    max_rows: int
    memory_mb: int
    max_response_bytes: int
    temp_mb: int = 0  # DuckDB temp space of the child (0: no spilling)


@dataclass(frozen=True)
class Answer:
    """A finished statement: the response body, in the format asked for."""

    body: bytes
    truncated: bool
    elapsed_ms: float
    format: str

    def table(self) -> pa.Table:
        """The rows as Arrow (``format`` must be ``arrow``)."""
        return pa.ipc.open_stream(self.body).read_all()


class ForkGate:
    """Shared holds (threads inside DuckDB) exclude the one exclusive hold (a fork).

    Short holds are the writer's (one batch, the offsets read, a prune); long ones are
    snapshots (seconds). A pending fork lets no new hold in, so a busy writer cannot
    starve it, except that while a snapshot runs (the fork must wait for it anyway) the
    writer's short holds still get in: a query waits at most one snapshot, the writer
    at most one fork.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._shared = 0
        self._long = 0
        self._exclusive = False
        self._waiting = 0

    @contextlib.contextmanager
    def shared(self, long: bool = False) -> Iterator[None]:
        with self._cond:
            while self._exclusive or (self._waiting and (long or not self._long)):
                self._cond.wait()
            self._shared += 1
            self._long += long
        try:
            yield
        finally:
            with self._cond:
                self._shared -= 1
                self._long -= long
                self._cond.notify_all()

    def long(self) -> AbstractContextManager[None]:
        """A snapshot's hold."""
        return self.shared(long=True)

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            self._waiting += 1
            try:
                while self._exclusive or self._shared:
                    self._cond.wait()
            finally:
                self._waiting -= 1
            self._exclusive = True
        try:
            yield
        finally:
            with self._cond:
                self._exclusive = False
                self._cond.notify_all()


def table_payload(table: pa.Table) -> dict[str, Any]:
    return {
        "columns": table.column_names,
        "types": [str(t) for t in table.schema.types],
        "rows": [list(r.values()) for r in table.to_pylist()],
    }


def arrow_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue())


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _die_with_parent(parent_pid: int) -> None:
    """SIGKILL this child when the thread that forked it dies (Linux), e.g. a killed sink.

    Otherwise a statement that ignores interrupts would outlive a SIGKILLed sink, keep
    running to its end and hold the sink's listening socket (a restart could not bind).
    """
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before prctl
        os._exit(1)


def _child(parent: duckdb.DuckDBPyConnection, sql: str, fmt: str, limits: Limits, out: int) -> None:
    """In the forked child: run, serialize, write a header line and the body; never return."""
    code = 0
    try:
        started = time.perf_counter()
        try:
            cursor = parent.cursor()
            cursor.execute(f"SET memory_limit = '{int(limits.memory_mb)}MiB'")
            cursor.execute(f"SET max_temp_directory_size = '{int(limits.temp_mb)}MiB'")
            with contextlib.suppress(duckdb.Error):  # already locked (the sink's writer)
                cursor.execute("SET lock_configuration = true")
            cursor.execute("BEGIN TRANSACTION READ ONLY")
            table = cursor.sql(sql).limit(limits.max_rows + 1).to_arrow_table()
            truncated = table.num_rows > limits.max_rows
            if truncated:
                table = table.slice(0, limits.max_rows)
            elapsed_ms = (time.perf_counter() - started) * 1000
            if fmt == "arrow":
                body = arrow_bytes(table)
            else:
                payload = table_payload(table)
                payload.update(truncated=truncated, elapsed_ms=round(elapsed_ms, 3))
                body = orjson.dumps(payload, default=str, option=orjson.OPT_NON_STR_KEYS)
            header = {"ok": True, "truncated": truncated, "elapsed_ms": elapsed_ms}
        except duckdb.OutOfMemoryException as exc:
            header = {"ok": False, "kind": "too_large", "error": f"memory limit: {exc}"}
            body = b""
        except Exception as exc:
            kind = "failed"
            header = {"ok": False, "kind": kind, "error": f"{type(exc).__name__}: {exc}"}
            body = b""
        data = orjson.dumps(header) + b"\n" + body
        view = memoryview(data)
        while view:
            view = view[os.write(out, view) :]
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def run_forked(
    parent: duckdb.DuckDBPyConnection,
    sql: str,
    fmt: str,
    limits: Limits,
    gate: Callable[[], AbstractContextManager[object]] | None = None,
) -> Answer:
    """Check ``sql``, run it in a child of this process, return its serialized answer.

    Raises QueryRefused (not one SELECT), QueryTimeout, QueryTooLarge, QueryFailed.
    """
    statement = check_select(sql)
    started = time.monotonic()
    read_end, write_end = os.pipe()
    baseline_kb = _rss_kb(os.getpid())
    parent_pid = os.getpid()
    with gate() if gate is not None else contextlib.nullcontext():
        pid = os.fork()
    if pid == 0:  # the child
        _die_with_parent(parent_pid)
        os.close(read_end)
        _child(parent, statement, fmt, limits, write_end)
    os.close(write_end)
    try:
        data = _collect(pid, read_end, started, baseline_kb, limits)
    finally:
        os.close(read_end)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    header_line, _, body = data.partition(b"\n")
    try:
        header = orjson.loads(header_line)
    except orjson.JSONDecodeError:
        raise QueryFailed("the query's worker process died without an answer") from None
    if not header["ok"]:
        if header["kind"] == "too_large":
            raise QueryTooLarge(header["error"])
        raise QueryFailed(header["error"])
    return Answer(body, bool(header["truncated"]), float(header["elapsed_ms"]), fmt)


def _collect(pid: int, fd: int, started: float, baseline_kb: int, limits: Limits) -> bytes:
    """Read the child's answer until EOF, killing it at any limit (raises then)."""
    chunks: list[bytes] = []
    size = 0
    memory_kb = limits.memory_mb * 1024
    deadline = started + limits.timeout_s
    cap = limits.max_response_bytes + 4096  # + the header line
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise QueryTimeout(f"query exceeded the {limits.timeout_s:g} s statement timeout")
        readable, _, _ = select.select([fd], [], [], min(POLL_SECONDS, left))
        if readable:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            size += len(chunk)
            if size > cap:
                raise QueryTooLarge(
                    f"the answer is larger than {limits.max_response_bytes} bytes "
                    "(GROUPWATCH_QUERY_MAX_RESPONSE_BYTES): select fewer rows or columns"
                )
        rss = _rss_kb(pid)
        if rss and rss - baseline_kb > memory_kb:
            raise QueryTooLarge(
                f"query used more than {limits.memory_mb} MiB of memory "
                "(GROUPWATCH_QUERY_MEMORY_MB) and was stopped"
            )
