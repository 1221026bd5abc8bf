"""Run stage processes, report one that dies at once, stop all in reverse order."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Component:
    """One long-running stage process."""

    name: str
    argv: list[str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self, env: dict[str, str]) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )

    def exit_code(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        return terminate_group(self.proc, timeout, kill_wait=10)


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
