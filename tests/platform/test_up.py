"""`groupwatch up` starts the stack in order and Ctrl-C stops everything it started."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from groupwatch.up.supervisor import Component, Supervisor
from tests.conftest import free_port


class _Lines:
    """Collects a process's output lines on a thread, so the test can wait for one."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._pump, args=(proc,), daemon=True)
        self._thread.start()

    def _pump(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.lines.append(line)

    def text(self) -> str:
        return "".join(self.lines)

    def wait_for(self, marker: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if marker in self.text():
                return self.text()
            time.sleep(0.2)
        raise AssertionError(f"{marker!r} not seen; output so far:\n{self.text()}")

    def join(self) -> str:
        self._thread.join(10)
        return self.text()


@pytest.mark.kafka
def test_up_then_sigint_stops_the_broker_it_started(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    port = free_port()
    env.update(
        GROUPWATCH_STATE_DIR=str(tmp_path / "gw"),
        GROUPWATCH_KAFKA_PORT=str(port),
        GROUPWATCH_KAFKA_CONTROLLER_PORT=str(free_port()),
        GROUPWATCH_TOPIC_PREFIX="uptest",
        GROUPWATCH_DUCKDB_PATH=str(tmp_path / "data" / "gw.duckdb"),
        GROUPWATCH_SNAPSHOT_PATH=str(tmp_path / "data" / "gw-snap.duckdb"),
        GROUPWATCH_INGEST_PORT=str(free_port()),
        GROUPWATCH_STREAM_WEB_PORT=str(free_port()),
        GROUPWATCH_QUERY_PORT=str(free_port()),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "groupwatch", "up"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = _Lines(proc)
    try:
        out = output.wait_for("Press Ctrl-C", timeout=120)
        assert f"127.0.0.1:{port}" in out
        assert "topics: created uptest.exceptions" in out
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "kafka: stopped" in output.join()
    left = subprocess.run(
        ["pgrep", "-f", str(tmp_path / "gw")], capture_output=True, text=True, check=False
    )
    assert left.stdout.split() == []


def test_supervisor_reports_a_dying_component_and_stops_the_rest(tmp_path: Path) -> None:
    messages: list[str] = []
    sup = Supervisor(dict(os.environ), messages.append)
    sleeper = Component(
        "sleeper", [sys.executable, "-c", "import time; time.sleep(60)"], tmp_path / "sleeper.log"
    )
    crasher = Component(
        "crasher",
        [sys.executable, "-c", "import sys, time; time.sleep(0.5); sys.exit(3)"],
        tmp_path / "crasher.log",
    )
    sup.start(sleeper)
    sup.start(crasher)
    dead = sup.wait(poll=0.1)
    assert dead is crasher and dead.exit_code() == 3
    sup.stop_all()
    assert sleeper.proc is not None and sleeper.proc.poll() is not None
    assert messages[-2:] == ["stopped crasher (exit 3)", f"stopped sleeper (exit {-15})"]


def test_demo_app_is_generated_once_and_reused(tmp_path: Path) -> None:
    from groupwatch.contracts import Settings
    from groupwatch.up.demo import ensure_demo_app, stage_environment

    settings = Settings(state_dir=tmp_path / "gw")
    first = ensure_demo_app(settings)
    again = ensure_demo_app(settings)
    assert first.created and not again.created
    assert (again.sdkappid, again.token) == (first.sdkappid, first.token)
    assert first.sdkappid.isdigit() and len(first.token) >= 24
    assert oct(first.path.stat().st_mode & 0o777) == "0o600"
    env = stage_environment(settings, first, {})
    assert env["GROUPWATCH_SDKAPPIDS"] == first.sdkappid
    assert env["GROUPWATCH_CALLBACK_TOKENS"] == f"{first.sdkappid}:{first.token}"
    configured = Settings(state_dir=tmp_path / "gw", sdkappids=["1400000001"])
    assert "GROUPWATCH_SDKAPPIDS" not in stage_environment(configured, first, {})
    # tokens configured for other apps: the demo app's token is added, never missing
    other = Settings(state_dir=tmp_path / "gw", callback_tokens={"1400000009": "t9"})
    env = stage_environment(other, first, {"GROUPWATCH_CALLBACK_TOKENS": "1400000009:t9"})
    assert Settings(
        sdkappids=env["GROUPWATCH_SDKAPPIDS"], callback_tokens=env["GROUPWATCH_CALLBACK_TOKENS"]
    ).callback_tokens == {"1400000009": "t9", first.sdkappid: first.token}


@pytest.mark.parametrize("on_path", [True, False])
def test_banner_commands_run_as_printed_from_this_shell(
    on_path: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The banner names groupwatch the way this shell can run it (PATH or the venv path)."""
    import shlex

    from groupwatch.up.commands import _program

    bindir = str(Path(sys.executable).parent)
    path = f"{bindir}{os.pathsep}/usr/bin:/bin" if on_path else "/usr/bin:/bin"
    monkeypatch.setenv("PATH", path)
    program = _program()
    assert (program == "groupwatch") is on_path
    done = subprocess.run(
        [*shlex.split(program), "--help"],
        env={**os.environ, "PATH": path},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "simulate" in done.stdout


def test_stage_logs_rotate_by_size(tmp_path: Path) -> None:
    """A chatty stage fills at most (backups + 1) x max_bytes of log; the newest is kept."""
    log = tmp_path / "logs" / "chatty.log"
    script = (
        "import sys\n"
        "for i in range(4000):\n"
        "    print(f'line {i:05d} ' + 'x' * 90, flush=i % 100 == 0)\n"
        "sys.stdout.write('y' * 300000)\n"  # one giant line without a newline
        "print('last line')\n"
    )
    component = Component(
        "chatty", [sys.executable, "-c", script], log, log_max_bytes=50_000, log_backups=3
    )
    component.start(dict(os.environ))
    assert component.proc is not None and component.proc.wait(60) == 0
    assert component.stop() == 0  # joins the log reader
    files = sorted(p.name for p in log.parent.iterdir())
    assert files == ["chatty.log", "chatty.log.1", "chatty.log.2", "chatty.log.3"]
    for path in log.parent.iterdir():
        assert path.stat().st_size <= 50_000 + 64 * 1024  # at most one line past the cap
    assert log.read_text().endswith("last line\n")
    longest = max(len(line) for p in log.parent.iterdir() for line in p.read_bytes().split(b"\n"))
    assert longest <= 64 * 1024  # the giant line was written in bounded pieces
