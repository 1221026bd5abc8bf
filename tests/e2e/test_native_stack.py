"""End to end, natively: `groupwatch up`, 20,000 simulated callbacks, and the results equal
the simulator's ledger in DuckDB and on the failure-windows topic, as read by kcat and by
Kafka's own console consumer."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from groupwatch.broker.jars import ensure_jars
from groupwatch.contracts import Settings, Topics
from groupwatch.simulate.compare import compare_failures, compare_raw_sends
from tests.e2e.late import late_diagnosis
from tests.support.processes import pipeline_env, wait_http_ok

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

APP, TOKEN = "1400000001", "e2e-token-0123456789"
COUNT = 20_000


class Stack:
    """`groupwatch up` as a child process, its output collected on a thread."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "groupwatch", "up"],
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def wait_for(self, marker: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while marker not in "".join(self.lines):
            assert self.proc.poll() is None, "".join(self.lines)
            assert time.monotonic() < deadline, "".join(self.lines)
            time.sleep(0.2)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(90)


def query(env: dict[str, str], sql: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        [sys.executable, "-m", "groupwatch", "query", "--format", "json", sql],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    rows: list[dict[str, Any]] = json.loads(out.stdout)
    return rows


def finals_from_json_lines(values: list[str]) -> list[dict[str, Any]]:
    records = [json.loads(v) for v in values]
    return [r for r in records if r["final"]]


@pytest.fixture
def stack_env(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> dict[str, str]:
    return pipeline_env(
        tmp_path,
        topic_prefix,
        KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
        GROUPWATCH_SDKAPPIDS=f"{APP},1400000002",
        GROUPWATCH_CALLBACK_TOKENS=f"{APP}:{TOKEN}",
        GROUPWATCH_UNSIGNED_SDKAPPIDS="1400000002",
        GROUPWATCH_INGEST_WORKERS="2",
    )


def test_up_simulate_20000_equals_the_ledger(stack_env: dict[str, str], tmp_path: Path) -> None:
    env = stack_env
    settings = Settings(
        kafka_bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"],
        topic_prefix=env["GROUPWATCH_TOPIC_PREFIX"],
    )
    topics = Topics.from_settings(settings)
    url = f"http://127.0.0.1:{env['GROUPWATCH_INGEST_PORT']}"
    stack = Stack(env, tmp_path)
    try:
        stack.wait_for("Press Ctrl-C", timeout=120)
        wait_http_ok(f"{url}/readyz", 60)
        wait_http_ok(f"http://127.0.0.1:{env['GROUPWATCH_QUERY_PORT']}/healthz", 60)
        wait_http_ok(f"http://127.0.0.1:{env['GROUPWATCH_STREAM_WEB_PORT']}/healthz", 90)

        ledger_path = tmp_path / "ledger.json"
        start_ms = (int(time.time()) - 3 * 3600) * 1000
        sim = subprocess.run(
            [
                sys.executable,
                "-m",
                "groupwatch",
                "simulate",
                "--url",
                f"{url}/callback",
                "--app",
                f"{APP}:{TOKEN}",
                "--app",
                "1400000002",
                "--count",
                str(COUNT),
                # Event time runs 5x faster than the wall clock (500/s x 10 ms): a
                # callback held up by s seconds in the ingress (an ack timeout, a CPU
                # stall of one worker) is 5 s x s behind the others, well inside the 30 s
                # grace up to a 6 s stall. At 100 ms per callback as fast as possible, a
                # 1 s stall on a busy CI host was already past the grace.
                "--rate",
                "500",
                "--connections",
                "4",
                "--step-ms",
                "10",
                "--event-time-start",
                str(start_ms),
                "--seed",
                "7",
                "--flush",
                "--ledger",
                str(ledger_path),
                "--quiet",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        assert sim.returncode == 0, sim.stdout + sim.stderr
        ledger = json.loads(ledger_path.read_text())
        assert ledger["totals"]["late"] > 0 and ledger["totals"]["duplicates_ok"] > 0
        assert ledger["non_ok"] == []

        # DuckDB: final windows and raw sends equal the ledger (wait for the pipeline).
        deadline = time.monotonic() + 300
        while True:
            windows = query(
                env,
                "SELECT sdkappid, group_id, error_code, "
                "epoch_ms(window_start) AS ws, failures, senders, final "
                "FROM failure_windows",
            )
            sends = query(
                env, "SELECT sdkappid, group_id, epoch_ms(minute) AS ws, sends FROM sends_minutely"
            )
            failures_cmp = compare_failures(ledger, windows)
            sends_cmp = compare_raw_sends(ledger, sends)
            if failures_cmp.equal and sends_cmp.equal:
                break
            assert time.monotonic() < deadline, (
                failures_cmp.summary(),
                sends_cmp.summary(),
                late_diagnosis(
                    env["KAFKA_BOOTSTRAP_SERVERS"], topics.late_events, ledger, failures_cmp
                ),
            )
            time.sleep(5)

        distinct_exceptions = query(env, "SELECT count(*) AS n FROM exceptions")[0]["n"]
        late_exceptions = sum(1 for r in ledger["late"] if r["kind"] == "exception")
        on_time = sum(int(r["failures"]) for r in ledger["failures"])
        assert distinct_exceptions == on_time + late_exceptions

        # The same final records, read by two external clients nobody here wrote.
        kcat = subprocess.run(
            [
                "kcat",
                "-b",
                env["KAFKA_BOOTSTRAP_SERVERS"],
                "-C",
                "-t",
                topics.failure_windows,
                "-e",
                "-J",
                "-q",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        kcat_values = [json.loads(line)["payload"] for line in kcat.stdout.splitlines()]
        by_kcat = compare_failures(ledger, finals_from_json_lines(kcat_values))
        assert by_kcat.equal, by_kcat.summary()

        java = shutil.which("java")
        assert java, "java is needed for Kafka's console consumer"
        lib = ensure_jars(settings.kafka_jars_dir)
        console = subprocess.run(
            [
                java,
                "-cp",
                f"{lib}/*",
                "org.apache.kafka.tools.consumer.ConsoleConsumer",
                "--bootstrap-server",
                env["KAFKA_BOOTSTRAP_SERVERS"],
                "--topic",
                topics.failure_windows,
                "--from-beginning",
                "--timeout-ms",
                "15000",
            ],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        console_values = [ln for ln in console.stdout.splitlines() if ln.startswith("{")]
        # The topic is live (open windows still get updates), so the two reads may differ in
        # non-final records; the final ones must equal the ledger in both.
        assert console_values, console.stderr[-2000:]
        by_console = compare_failures(ledger, finals_from_json_lines(console_values))
        assert by_console.equal, by_console.summary()
    finally:
        code = stack.stop()
    assert code == 0, "".join(stack.lines)[-3000:]
