"""Pipeline stages and a local broker as real OS processes: start, SIGKILL, restart, wait.

Each stage runs in its own session (process group), so a SIGKILL takes its worker
processes too, as a container kill would. The broker is one of the test's own (state dir
and ports given by the environment), started with ``groupwatch kafka start``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Self

import requests

from groupwatch.broker.server import LocalKafka
from groupwatch.contracts import Settings
from groupwatch.up.supervisor import groupwatch_argv, terminate_group
from tests.support.ports import free_port


def clean_env(**values: str) -> dict[str, str]:
    """This process's environment without any GROUPWATCH_* / KAFKA_BOOTSTRAP_SERVERS, plus
    ``values``: a child sees exactly the settings given here."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("GROUPWATCH_") and k != "KAFKA_BOOTSTRAP_SERVERS"
    }
    env.update(values)
    return env


def pipeline_env(tmp: Path, prefix: str, **values: str) -> dict[str, str]:
    """``clean_env`` for a whole pipeline under ``tmp``: state and DuckDB files there, topics
    and group ids named by ``prefix``, 3 partitions, free ports for the stages; ``values``
    add to or replace any of it."""
    defaults = dict(
        GROUPWATCH_STATE_DIR=str(tmp / "state"),
        GROUPWATCH_TOPIC_PREFIX=prefix,
        GROUPWATCH_PARTITIONS="3",
        GROUPWATCH_DUCKDB_PATH=str(tmp / "data" / "gw.duckdb"),
        GROUPWATCH_SNAPSHOT_PATH=str(tmp / "data" / "gw-snapshot.duckdb"),
        GROUPWATCH_INGEST_PORT=str(free_port()),
        GROUPWATCH_STREAM_WEB_PORT=str(free_port()),
        GROUPWATCH_QUERY_PORT=str(free_port()),
        GROUPWATCH_STREAM_APP_ID=f"{prefix}-stream",
        GROUPWATCH_SINK_GROUP_ID=f"{prefix}-sink",
    )
    return clean_env(**{**defaults, **values})


def settings_env(settings: Settings) -> dict[str, str]:
    """This process's environment without GROUPWATCH_*, plus every one of ``settings``:
    a child process sees exactly these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GROUPWATCH_")}
    env["KAFKA_BOOTSTRAP_SERVERS"] = settings.bootstrap_servers
    for name, value in settings.model_dump().items():
        if name == "kafka_bootstrap_servers" or value is None:
            continue
        if isinstance(value, list):
            value = ",".join(str(v) for v in value)
        elif isinstance(value, dict):
            value = ",".join(f"{k}:{v}" for k, v in value.items())
        elif isinstance(value, bool):
            value = "1" if value else "0"
        env[f"GROUPWATCH_{name.upper()}"] = str(value)
    return env


def children(pid: int) -> list[int]:
    """PIDs of the direct children of ``pid`` (e.g. a server's worker processes)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == pid:
                out.append(int(entry.name))
    return sorted(out)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a running process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_groupwatch(
    env: dict[str, str], *args: str, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """Run one ``groupwatch`` command to completion, whatever its exit code."""
    return subprocess.run(
        groupwatch_argv(*args),
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def groupwatch(env: dict[str, str], *args: str, timeout: float = 180) -> str:
    """Run one ``groupwatch`` command to completion; its stdout, or an assertion error."""
    done = run_groupwatch(env, *args, timeout=timeout)
    assert done.returncode == 0, f"groupwatch {' '.join(args)}: {done.stdout}{done.stderr}"
    return done.stdout


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        return requests.get(url, timeout=timeout).status_code == 200
    except requests.RequestException:
        return False


def wait_http_ok(url: str, timeout: float, detail: Callable[[], str] = str) -> None:
    """Poll ``url`` until it answers 200; TimeoutError (with ``detail()``) after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not http_ok(url):
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{url} did not answer 200 within {timeout:.0f} s {detail()}")
        time.sleep(0.3)


class StageProcess:
    """One ``groupwatch <stage>`` process group with a health URL and an appended log."""

    def __init__(
        self, name: str, args: list[str], env: dict[str, str], log_path: Path, health_url: str
    ) -> None:
        self.name = name
        self.args = args
        self.env = env
        self.log_path = log_path
        self.health_url = health_url
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} was never started"
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 120.0) -> Self:
        """Start and wait until the health URL answers 200."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"\n=== start #{self.starts + 1} ===\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                groupwatch_argv(*self.args),
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.starts += 1
        self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not http_ok(self.health_url):
            assert self.alive(), f"{self.name} exited ({self.exit_code()}): {self.log_tail()}"
            assert time.monotonic() < deadline, f"{self.name} not healthy: {self.log_tail()}"
            time.sleep(0.2)

    def exit_code(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def kill(self) -> int:
        """SIGKILL the whole process group; returns the leader's exit code (-9)."""
        assert self.proc is not None and self.alive(), f"{self.name} is not running"
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        return self.proc.wait(30)

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM the group (SIGKILL if it lingers); None when it was not running."""
        if self.proc is None or self.proc.poll() is not None:
            return None
        return terminate_group(self.proc, timeout, kill_wait=30)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


class BrokerProcess:
    """The test's own local broker: ``groupwatch kafka start``, SIGKILL, SIGSTOP/SIGCONT."""

    def __init__(self, env: dict[str, str]) -> None:
        assert "KAFKA_BOOTSTRAP_SERVERS" not in env, "an external cluster is not ours to kill"
        self.env = env
        # Everything explicit: this process's own KAFKA_BOOTSTRAP_SERVERS / GROUPWATCH_*
        # (a dev broker, say) must not turn this into "an external cluster".
        values: dict[str, object] = {
            "kafka_bootstrap_servers": None,
            "kafka_data_dir": None,
            "state_dir": Path(env["GROUPWATCH_STATE_DIR"]),
            "kafka_port": int(env["GROUPWATCH_KAFKA_PORT"]),
            "kafka_controller_port": int(env["GROUPWATCH_KAFKA_CONTROLLER_PORT"]),
        }
        self.local = LocalKafka(Settings(**values))  # type: ignore[arg-type]
        self.pid: int | None = None

    def start(self) -> int:
        """Start (same state dir: the data survives restarts); returns the new pid."""
        groupwatch(self.env, "kafka", "start", timeout=300)
        self.pid = self.local.status().pid
        assert self.pid is not None, self.local.log_tail()
        return self.pid

    def kill(self) -> None:
        """SIGKILL (the pid file stays; ``start`` replaces it) and wait until it is gone."""
        self.local.kill()

    def pause(self) -> None:
        """SIGSTOP: the broker keeps its sockets but answers nothing."""
        assert self.pid is not None, "broker not running"
        os.killpg(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.pid is not None, "broker not running"
        os.killpg(self.pid, signal.SIGCONT)

    def stop(self) -> None:
        status = self.local.stop()
        assert not status.external and not status.running, status.message
