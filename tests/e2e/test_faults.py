"""Fault suite: simulated load runs while each stage, then the broker, is SIGKILLed and
restarted, and the broker is frozen for 30 s; afterwards DuckDB holds exactly the events
answered 200 (nothing lost, nothing counted twice). Results: docs/RELIABILITY.md.

The stages run as separate processes (not ``groupwatch up``, which stops everything when
one dies) against a broker of this test's own, because the broker is killed too.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from groupwatch.contracts import Settings, Topics
from groupwatch.simulate.signing import App
from tests.support.exactness import assert_duckdb_equals_ledger
from tests.support.load import Load
from tests.support.ports import free_port
from tests.support.processes import BrokerProcess, StageProcess, groupwatch, pipeline_env

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(600)]

APPS = (App("1400000001", "faults-token-0123456789"), App("1400000002", None))
WINDOW_S, GRACE_S = 60, 30
RATE = 80.0  # callbacks per second; event time runs at wall-clock speed
BETWEEN_FAULTS_S = 6.0  # load between one recovery and the next fault
BROKER_STOP_S = 30.0
RETRY_FOR_S = 20.0  # the simulated Chat backend re-delivers what was not answered 200


class Stack:
    """Broker, ingress, stream worker and sink of one test, as separate processes."""

    def __init__(self, tmp: Path) -> None:
        prefix = f"gwfault-{tmp.name[-8:]}-{free_port()}"
        self.env = pipeline_env(
            tmp,
            prefix,
            GROUPWATCH_KAFKA_PORT=str(free_port()),
            GROUPWATCH_KAFKA_CONTROLLER_PORT=str(free_port()),
            GROUPWATCH_KAFKA_HEAP="384m",
            GROUPWATCH_SDKAPPIDS=",".join(a.sdkappid for a in APPS),
            GROUPWATCH_CALLBACK_TOKENS=",".join(f"{a.sdkappid}:{a.token}" for a in APPS if a.token),
            GROUPWATCH_UNSIGNED_SDKAPPIDS=",".join(a.sdkappid for a in APPS if not a.token),
            GROUPWATCH_INGEST_WORKERS="2",
            GROUPWATCH_QUERY_MAX_ROWS="1000000",
            GROUPWATCH_WINDOW_SECONDS=str(WINDOW_S),
            GROUPWATCH_GRACE_SECONDS=str(GRACE_S),
        )
        env, logs = self.env, tmp / "logs"
        self.bootstrap = f"127.0.0.1:{env['GROUPWATCH_KAFKA_PORT']}"
        self.topics = Topics.from_settings(
            Settings(kafka_bootstrap_servers=self.bootstrap, topic_prefix=prefix)
        )
        self.ingress_url = f"http://127.0.0.1:{env['GROUPWATCH_INGEST_PORT']}"
        self.sink_url = f"http://127.0.0.1:{env['GROUPWATCH_QUERY_PORT']}"
        self.broker = BrokerProcess(env)
        self.ingress = StageProcess(
            "ingress", ["ingest"], env, logs / "ingest.log", f"{self.ingress_url}/readyz"
        )
        stream_health = f"http://127.0.0.1:{env['GROUPWATCH_STREAM_WEB_PORT']}/healthz"
        self.stream = StageProcess("stream", ["stream"], env, logs / "stream.log", stream_health)
        self.sink = StageProcess(
            "sink", ["sink"], env, logs / "sink.log", f"{self.sink_url}/healthz"
        )

    def start(self) -> None:
        self.broker.start()
        groupwatch(self.env, "topics", "create")
        self.ingress.start()
        self.stream.start()
        self.sink.start()

    def stop(self) -> None:
        for stage in (self.ingress, self.stream, self.sink):
            stage.stop()
        if self.broker.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                self.broker.resume()  # in case the test failed while it was frozen
        self.broker.stop()

    def query(self, sql: str) -> list[dict[str, Any]]:
        resp = requests.post(f"{self.sink_url}/query", json={"sql": sql}, timeout=60)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert not body["truncated"], sql
        return [dict(zip(body["columns"], row, strict=True)) for row in body["rows"]]

    def spool_records(self) -> int:
        """The ingress's ``groupwatch_ingest_spool_records`` (summed over its workers)."""
        text = requests.get(f"{self.ingress_url}/metrics", timeout=5).text
        found = re.findall(r"^groupwatch_ingest_spool_records(?:\{[^}]*\})? (\S+)$", text, re.M)
        assert found, "no spool gauge in the ingress metrics"
        return int(sum(float(v) for v in found))


def make_load(url: str) -> Load:
    return Load(url, APPS, rate=RATE, window_s=WINDOW_S, grace_s=GRACE_S, retry_for_s=RETRY_FOR_S)


def fault_kill(stage: StageProcess) -> dict[str, Any]:
    old = stage.pid
    began = time.monotonic()
    code = stage.kill()
    stage.start()
    return {
        "exit_code": code,
        "old_pid": old,
        "new_pid": stage.pid,
        "back_after_s": round(time.monotonic() - began, 1),
    }


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    s = Stack(tmp_path)
    try:
        s.start()
        yield s
    finally:
        s.stop()


def test_faults_mid_load_lose_nothing_and_count_nothing_twice(stack: Stack) -> None:
    began = time.monotonic()
    load = make_load(stack.ingress_url)
    load.start()
    faults: dict[str, dict[str, Any]] = {}
    time.sleep(BETWEEN_FAULTS_S)

    for stage in (stack.ingress, stack.stream, stack.sink):
        faults[f"SIGKILL {stage.name}"] = fault_kill(stage)
        time.sleep(BETWEEN_FAULTS_S)

    old_pid = stack.broker.pid
    t0 = time.monotonic()
    stack.broker.kill()
    time.sleep(3)  # load runs against a dead broker
    spooled_while_dead = stack.spool_records()
    faults["SIGKILL broker"] = {
        "old_pid": old_pid,
        "new_pid": stack.broker.start(),
        "spool_records_while_down": spooled_while_dead,
        "back_after_s": round(time.monotonic() - t0, 1),
    }
    time.sleep(BETWEEN_FAULTS_S)

    stack.broker.pause()
    paused_at = time.monotonic()
    spool_max = 0
    while time.monotonic() - paused_at < BROKER_STOP_S:
        spool_max = max(spool_max, stack.spool_records())
        time.sleep(1)
    stack.broker.resume()
    faults["SIGSTOP broker 30 s"] = {"spool_records_max": spool_max}
    time.sleep(BETWEEN_FAULTS_S * 2)

    # Drain: the flush events go last, after the spool has been forwarded.
    deadline = time.monotonic() + 120
    while stack.spool_records() > 0:
        assert time.monotonic() < deadline, "the ingress spool did not drain"
        time.sleep(0.5)
    ledger = load.finish()
    load_s = time.monotonic() - began

    # Every fault really happened.
    for name in ("SIGKILL ingress", "SIGKILL stream", "SIGKILL sink"):
        assert faults[name]["exit_code"] == -9, faults
        assert faults[name]["new_pid"] != faults[name]["old_pid"], faults
    assert faults["SIGKILL broker"]["new_pid"] != faults["SIGKILL broker"]["old_pid"], faults
    assert faults["SIGKILL broker"]["spool_records_while_down"] > 0, "broker kill unnoticed"
    assert spool_max > 0, "the ingress never spooled while the broker was stopped"
    for stage in (stack.ingress, stack.stream, stack.sink):
        assert stage.alive(), f"{stage.name} died after the faults: {stage.log_tail()}"

    # The simulated backend got every callback answered 200 in the end, in time.
    totals = ledger["totals"]
    print("faults:", faults)
    print("ledger totals:", totals)
    assert ledger["non_ok"] == [], ledger["non_ok"][:5]
    assert totals.get("slow_answers", 0) == 0 and totals.get("timeouts", 0) == 0, totals
    assert not any(k.startswith("attempt_failed_5") for k in totals), totals
    assert totals["duplicates_ok"] > 0 and totals["late"] > 0, totals

    # DuckDB equals what was answered 200: windows, sends, raw exceptions by event_id.
    try:
        failure_cells, send_cells = assert_duckdb_equals_ledger(
            stack.query,
            load,
            ledger,
            bootstrap=stack.bootstrap,
            late_topic=stack.topics.late_events,
            context=f"faults {faults}",
        )
    except BaseException:
        for stage in (stack.stream, stack.sink):  # what a CI log needs to tell why
            print(f"--- {stage.name} log, last lines ---\n{stage.log_tail(12000)}")
        raise
    print(
        f"sent {load.sent} callbacks in {load_s:.0f} s, {totals['failures']} failures and "
        f"{totals['sends']} sends in {failure_cells} + {send_cells} "
        f"cells; caught up {time.monotonic() - began - load_s:.0f} s later"
    )
