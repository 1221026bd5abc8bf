"""Notify's memory across restarts: the last alert sent per (app, group, reason) (the
cooldown), the alerts still waiting for their "resolved", and the newest window end seen.

One small JSON file, ``<notify dir>/state.json``, replaced atomically (write a temporary
file, fsync, rename, fsync the directory) after each batch is delivered and before its
offsets are committed: a SIGKILL leaves either the previous or the new state, never a torn
one. A state file newer than the committed offsets (killed between the two) only means the
batch's alerts are recognised as already sent when they are read again.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import msgspec


class OpenAlert(msgspec.Struct, kw_only=True):
    """The last alert sent for a group that has not been resolved yet."""

    window_start_ms: int
    window_end_ms: int
    failures: int
    threshold: int


class NotifyState(msgspec.Struct, kw_only=True):
    # "app\x1fgroup\x1freason" -> window_start_ms of the last alert sent
    last_sent: dict[str, int] = msgspec.field(default_factory=dict)
    # "app\x1fgroup" -> the alert awaiting a resolved notice
    open: dict[str, OpenAlert] = msgspec.field(default_factory=dict)
    # the greatest window end of any final failure window seen (event time)
    watermark_ms: int = 0


class StateFile:
    """Load and atomically save the state at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> NotifyState:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return NotifyState()
        try:
            return msgspec.json.decode(data, type=NotifyState)
        except msgspec.DecodeError as exc:
            raise ValueError(
                f"the notify state file {self.path} is unreadable ({exc}); move it away to "
                "start with no cooldowns"
            ) from exc

    def save(self, state: NotifyState) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(msgspec.json.encode(state))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            with contextlib.suppress(OSError):
                os.fsync(fd)
        finally:
            os.close(fd)
