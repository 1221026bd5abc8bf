"""Run stage processes, report one that dies at once, stop all in reverse order.

A stage's stdout and stderr are piped to a reader thread that writes them, line by line,
through a ``RotatingFileHandler``: ``<state_dir>/logs/<stage>.log`` rotates at
``LOG_MAX_BYTES`` and keeps ``LOG_BACKUPS`` older files, so a stage cannot fill the disk.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

LOG_MAX_BYTES = 10 * 1024 * 1024
LOG_BACKUPS = 5
# A line longer than this is written in pieces (a stage cannot make the reader buffer grow).
_MAX_LINE = 64 * 1024


def open_rotating_log(path: Path, max_bytes: int, backups: int) -> logging.Handler:
    """A handler appending raw lines to ``path``, rotated by size (``path.1`` .. ``path.N``)."""
    handler = logging.handlers.RotatingFileHandler(
        path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
    )
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.terminator = ""
    return handler


def copy_lines(pipe: IO[bytes], handler: logging.Handler) -> None:
    """Write every line read from ``pipe`` through ``handler`` until end of file."""
    try:
        while line := pipe.readline(_MAX_LINE):
            text = line.decode("utf-8", "replace")
            handler.handle(logging.makeLogRecord({"msg": text, "levelno": logging.INFO}))
    finally:
        pipe.close()
        handler.close()


@dataclass
class Component:
    """One long-running stage process; its output goes to a size-rotated ``log_path``."""

    name: str
    argv: list[str]
    log_path: Path
    log_max_bytes: int = LOG_MAX_BYTES
    log_backups: int = LOG_BACKUPS
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _reader: threading.Thread | None = field(default=None, repr=False)

    def start(self, env: dict[str, str]) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        handler = open_rotating_log(self.log_path, self.log_max_bytes, self.log_backups)
        try:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        except BaseException:
            handler.close()
            raise
        assert self.proc.stdout is not None
        self._reader = threading.Thread(
            target=copy_lines,
            args=(self.proc.stdout, handler),
            name=f"log-{self.name}",
            daemon=True,
        )
        self._reader.start()

    def exit_code(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is not None:
            code = self.proc.returncode
        else:
            code = terminate_group(self.proc, timeout, kill_wait=10)
        self.join_log(5.0)
        return code

    def join_log(self, timeout: float) -> None:
        """Wait (bounded) until the stage's last output line is in its log file."""
        if self._reader is not None:
            self._reader.join(timeout)


def terminate_group(proc: subprocess.Popen[bytes], timeout: float, kill_wait: float) -> int:
    """SIGTERM a process group led by ``proc``; SIGKILL it if it outlives ``timeout``.

    Returns the leader's exit code.
    """
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        return proc.wait(kill_wait)


def groupwatch_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "groupwatch", *args]


class Supervisor:
    """Starts components in order; ``wait`` returns when asked to stop or one dies."""

    def __init__(self, env: dict[str, str], say: Callable[[str], None]) -> None:
        self.env = env
        self.say = say
        self.components: list[Component] = []
        self._stop_requested = False

    def request_stop(self, signum: int, _frame: object) -> None:
        self.say(f"received {signal.Signals(signum).name}: stopping")
        self._stop_requested = True

    def start(self, component: Component) -> None:
        component.start(self.env)
        self.components.append(component)
        self.say(
            f"started {component.name} (pid {component.proc.pid if component.proc else '?'})"
            f", log {component.log_path}"
        )

    def wait(self, poll: float = 0.5) -> Component | None:
        """Block until a stop is requested (None) or a component dies (that component)."""
        while not self._stop_requested:
            for component in self.components:
                if component.exit_code() is not None:
                    return component
            time.sleep(poll)
        return None

    def stop_all(self) -> None:
        for component in reversed(self.components):
            code = component.stop()
            self.say(f"stopped {component.name} (exit {code})")
