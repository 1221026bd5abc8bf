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
from tests.support.ports import free_port


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
        GROUPWATCH_DASHBOARD_PORT=str(free_port()),
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


def _descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (children, grandchildren, ...)."""
    from tests.support.processes import children

    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for parent in frontier for child in children(parent)}
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _get(url: str) -> tuple[int, str]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:
        return 0, str(exc)


FIRST_RUNS = 3
HEALTHY_AFTER_BANNER_S = 30


@pytest.mark.slow
@pytest.mark.kafka
def test_first_run_from_an_empty_state_dir_three_times_in_a_row(tmp_path: Path) -> None:
    """Issue 12.1: `up` on a fresh state dir and a fresh broker (topics just created) keeps
    every stage healthy 30 s after the banner, and Ctrl-C leaves no process behind."""
    for run in range(1, FIRST_RUNS + 1):
        home = tmp_path / f"run{run}"
        home.mkdir()
        _first_run(home, f"run {run} of {FIRST_RUNS}")


def _first_run(home: Path, where: str) -> None:
    import json
    import re

    env = {
        k: v
        for k, v in os.environ.items()
        if k != "KAFKA_BOOTSTRAP_SERVERS" and not k.startswith("GROUPWATCH_")
    }
    if "GROUPWATCH_KAFKA_JARS_DIR" in os.environ:  # reuse the resolved jars
        env["GROUPWATCH_KAFKA_JARS_DIR"] = os.environ["GROUPWATCH_KAFKA_JARS_DIR"]
    ports = {
        "ingest": free_port(),
        "stream": free_port(),
        "sink": free_port(),
        "dashboard": free_port(),
    }
    env.update(
        GROUPWATCH_STATE_DIR=str(home / ".groupwatch"),
        GROUPWATCH_KAFKA_PORT=str(free_port()),
        GROUPWATCH_KAFKA_CONTROLLER_PORT=str(free_port()),
        GROUPWATCH_INGEST_PORT=str(ports["ingest"]),
        GROUPWATCH_STREAM_WEB_PORT=str(ports["stream"]),
        GROUPWATCH_QUERY_PORT=str(ports["sink"]),
        GROUPWATCH_DASHBOARD_PORT=str(ports["dashboard"]),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "groupwatch", "up"],
        env=env,
        cwd=home,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = _Lines(proc)
    logs = home / ".groupwatch" / "logs"

    def detail(name: str) -> str:
        path = logs / f"{name}.log"
        text = path.read_text(errors="replace")[-3000:] if path.exists() else ""
        return f"{where}, {name} log:\n{text}\nup:\n{output.text()}"

    try:
        out = output.wait_for("Press Ctrl-C", timeout=180)
        assert "topics: created groupwatch.exceptions" in out, where
        banner_at = time.monotonic()
        while time.monotonic() - banner_at < HEALTHY_AFTER_BANNER_S:
            assert proc.poll() is None, f"{where}: up exited:\n{output.text()}"
            assert "exited with code" not in output.text(), detail("stream")
            time.sleep(1)
        status, body = _get(f"http://127.0.0.1:{ports['ingest']}/healthz")
        assert status == 200, detail("ingest")
        status, body = _get(f"http://127.0.0.1:{ports['ingest']}/readyz")
        assert status == 200 and json.loads(body)["broker"] is True, detail("ingest")
        status, body = _get(f"http://127.0.0.1:{ports['stream']}/healthz")
        assert status == 200, detail("stream")
        assert json.loads(body)["partitions"] == list(range(6)), detail("stream")
        status, body = _get(f"http://127.0.0.1:{ports['sink']}/healthz")
        assert status == 200, detail("sink")
        status, body = _get(f"http://127.0.0.1:{ports['dashboard']}/healthz")
        assert status == 200, detail("dashboard")
        assert f"dashboard:  http://127.0.0.1:{ports['dashboard']}/?app=" in out, out
        assert "exited with code" not in output.text(), where

        _banner_commands_work_as_printed(out, home, env, where)

        broker = re.search(r"kafka: started .*\(KRaft, pid (\d+)\)", out)
        assert broker is not None, out
        stages = [int(p) for p in re.findall(r"started \w+ \(pid (\d+)\)", out)]
        assert len(stages) == 4, out
        tree = _descendants(proc.pid)
        assert int(broker.group(1)) in tree and set(stages) <= tree, (tree, out)

        proc.send_signal(signal.SIGINT)
        assert proc.wait(90) == 0, f"{where}:\n{output.join()}"
    finally:
        if proc.poll() is None:
            proc.kill()
    text = output.join()
    assert "kafka: stopped" in text, f"{where}:\n{text}"
    deadline = time.monotonic() + 10  # orphans are reaped by init: give it a moment
    while time.monotonic() < deadline and any(_alive(pid) for pid in tree):
        time.sleep(0.2)
    assert [pid for pid in tree if _alive(pid)] == [], f"{where}: processes left"
    for pgid in stages:  # each stage ran as its own process group
        with pytest.raises(ProcessLookupError):
            os.killpg(pgid, 0)
    left = subprocess.run(["pgrep", "-f", str(home)], capture_output=True, text=True, check=False)
    assert left.stdout.split() == [], f"{where}: left {left.stdout}"


def _banner_commands_work_as_printed(
    banner: str, home: Path, env: dict[str, str], where: str
) -> None:
    """The banner's query, report (and kcat, when installed) lines, pasted into another
    shell of the same directory that has none of this stack's GROUPWATCH_* settings."""
    import shutil

    shell_env = {k: v for k, v in env.items() if not k.startswith("GROUPWATCH_")}
    labels = ["query trends:", "report:"]
    if shutil.which("kcat"):
        labels.append("check the broker by hand:")
    for label in labels:
        line = next(ln for ln in banner.splitlines() if ln.strip().startswith(label))
        command = line.split(label, 1)[1].strip()
        done = subprocess.run(
            ["bash", "-c", command],
            env=shell_env,
            cwd=home,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0 and "Error" not in done.stderr, (
            f"{where}: {command!r} -> {done.returncode}\n{done.stdout[-2000:]}{done.stderr}"
        )


def test_banner_client_lines_carry_non_default_settings() -> None:
    from groupwatch.contracts import Settings
    from groupwatch.up.commands import _client_env

    assert _client_env(Settings()) == ""
    env = _client_env(Settings(query_port=18765, duckdb_path=Path("my data/gw.duckdb")))
    assert env == "GROUPWATCH_QUERY_PORT=18765 GROUPWATCH_DUCKDB_PATH='my data/gw.duckdb' "


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


def test_up_refuses_an_allowed_app_without_a_token_before_starting_anything(
    tmp_path: Path,
) -> None:
    from tests.support.processes import clean_env

    env = clean_env(
        GROUPWATCH_STATE_DIR=str(tmp_path / "state"),
        GROUPWATCH_KAFKA_PORT=str(free_port()),
        GROUPWATCH_KAFKA_CONTROLLER_PORT=str(free_port()),
        GROUPWATCH_SDKAPPIDS="1400000001,1400000002",
        GROUPWATCH_CALLBACK_TOKENS="1400000001:a-token",
    )
    done = subprocess.run(
        [sys.executable, "-m", "groupwatch", "up"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.strip().splitlines() == [
        "Error: SdkAppid 1400000002 is allowed (GROUPWATCH_SDKAPPIDS) but without a callback "
        "token: set GROUPWATCH_CALLBACK_TOKENS=1400000002:<token>, or accept its callbacks "
        "unsigned with GROUPWATCH_UNSIGNED_SDKAPPIDS=1400000002."
    ]
    assert "kafka:" not in done.stdout  # nothing was started
    assert not (tmp_path / "state" / "kafka").exists()


def test_up_runs_notify_only_with_a_channel_and_links_its_dashboard() -> None:
    from groupwatch.contracts import Settings
    from groupwatch.up.commands import _available, dashboard_url

    installed = {"ingest", "stream", "sink", "notify"}
    assert [n for n, _ in _available(installed, Settings())] == ["ingest", "stream", "sink"]
    slack = Settings(notify_slack_url="http://127.0.0.1:9/hook")
    assert [n for n, _ in _available(installed, slack)][-1] == "notify"
    assert dashboard_url(slack, ["ingest", "notify"]) is None
    assert dashboard_url(slack, ["notify", "dashboard"]) == "http://127.0.0.1:8780"
    chosen = Settings(notify_dashboard_url="https://dash.example.com")
    assert dashboard_url(chosen, ["dashboard"]) == "https://dash.example.com"
