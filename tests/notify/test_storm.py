"""Done when: a storm from ``groupwatch simulate`` through ``groupwatch up`` (ingress,
stream, sink and notify, on the real broker) reaches a WeCom-format receiver as one
readable markdown message per alerting group."""

from __future__ import annotations

import collections
import subprocess
import sys
import time
from pathlib import Path

import pytest

from groupwatch.contracts import Settings, Topics
from tests.notify.receivers import Receiver, wait_until
from tests.support.ports import free_port
from tests.support.processes import pipeline_env, wait_http_ok
from tests.support.stream import read_topic

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

APP, TOKEN = "1400000001", "storm-token-0123456789"


def test_a_simulated_storm_reaches_wecom_as_one_message_per_alerting_group(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    wecom = Receiver("wecom").start()
    env = pipeline_env(
        tmp_path,
        topic_prefix,
        KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
        GROUPWATCH_SDKAPPIDS=APP,
        GROUPWATCH_CALLBACK_TOKENS=f"{APP}:{TOKEN}",
        GROUPWATCH_INGEST_WORKERS="1",
        GROUPWATCH_IDLE_CLOSE_SECONDS="3",
        GROUPWATCH_NOTIFY_WECOM_URL=wecom.url,
        GROUPWATCH_NOTIFY_PORT=str(free_port()),
        GROUPWATCH_NOTIFY_GROUP_ID=f"{topic_prefix}-notify",
        GROUPWATCH_NOTIFY_DASHBOARD_URL="http://127.0.0.1:8780",
        # one message per group even when many groups alert in the window (no digest)
        GROUPWATCH_NOTIFY_DIGEST_THRESHOLD="1000",
    )
    out = (tmp_path / "up.log").open("wb")
    up = subprocess.Popen(
        [sys.executable, "-m", "groupwatch", "up"],
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )

    def log() -> str:
        return (tmp_path / "up.log").read_text(errors="replace")[-4000:]

    try:
        wait_until(lambda: "Press Ctrl-C" in log(), 120, log)
        assert "alerts delivered to:  wecom" in log()
        wait_http_ok(f"http://127.0.0.1:{env['GROUPWATCH_INGEST_PORT']}/readyz", 60, log)
        wait_http_ok(f"http://127.0.0.1:{env['GROUPWATCH_STREAM_WEB_PORT']}/healthz", 90, log)
        wait_http_ok(f"http://127.0.0.1:{env['GROUPWATCH_NOTIFY_PORT']}/healthz", 60, log)
        # every callback in one 60 s window (3 hours ago, on a minute): the storm group
        # and the busiest groups cross the threshold there
        start_ms = (int(time.time()) // 60 - 180) * 60_000
        sim = subprocess.run(
            [
                sys.executable,
                "-m",
                "groupwatch",
                "simulate",
                "--url",
                f"http://127.0.0.1:{env['GROUPWATCH_INGEST_PORT']}/callback",
                "--app",
                f"{APP}:{TOKEN}",
                "--count",
                "1500",
                "--rate",
                "0",
                "--step-ms",
                "20",
                "--event-time-start",
                str(start_ms),
                "--late-rate",
                "0",
                "--seed",
                "3",
                "--storm",
                "--flush",
                "--quiet",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert sim.returncode == 0, sim.stdout + sim.stderr
        topics = Topics.for_prefix(topic_prefix)
        settings = Settings(
            kafka_bootstrap_servers=kafka_bootstrap, topic_prefix=topic_prefix, partitions=3
        )

        def alerting() -> set[str]:
            recs = read_topic(settings, topics.alerts, until=lambda _r: False, timeout=1.5)
            return {v["group_id"] for _, v in recs}

        def messages(title: str) -> dict[str, set[str]]:
            """group -> distinct keys of the accepted messages with this title naming it"""
            found: dict[str, set[str]] = collections.defaultdict(set)
            for r in wecom.accepted():
                head = r.text.split("\n", 1)[0]
                if title in head:
                    group = r.text.split("`", 2)[1]
                    found[group].add(r.key)
            return found

        # settled: every alerting group told once and resolved (its next window closed),
        # and no new alert for 5 s after the stream's idle close
        stable_since, last = time.monotonic(), set()
        deadline = time.monotonic() + 150
        while True:
            groups = alerting()
            if groups != last:
                stable_since, last = time.monotonic(), groups
            alerts_sent, resolved = messages("groupwatch alert"), messages("resolved")
            if (
                groups
                and set(alerts_sent) == groups
                and set(resolved) == groups
                and time.monotonic() - stable_since > 5
            ):
                break
            assert time.monotonic() < deadline, (groups, [r.text[:100] for r in wecom.accepted()])
        assert all(len(keys) == 1 for keys in alerts_sent.values()), alerts_sent
        assert len(wecom.accepted()) == 2 * len(groups)  # one alert, one resolved each
        for r in wecom.accepted():
            content = r.json()["markdown"]["content"]
            assert r.json()["msgtype"] == "markdown" and len(content.encode()) <= 4096
        # the storm's group: its top error code is one of the storm's rate-limit codes
        storm = next(
            r.text
            for r in wecom.accepted()
            if "groupwatch alert" in r.text
            and next(x for x in r.text.splitlines() if x.startswith("> "))[2:7]
            in ("10023", "10006")
        )
        for needed in (
            f"`{APP}`",
            "rate_limited",
            "Failures",
            "Crossed",
            " UTC",
            "http://127.0.0.1:8780/group/",
        ):
            assert needed in storm, storm
        print(
            f"\n{len(groups)} alerting groups, {len(wecom.accepted())} WeCom messages; "
            f"the storm's:\n{storm}"
        )
    finally:
        up.send_signal(2)
        try:
            up.wait(90)
        except subprocess.TimeoutExpired:
            up.kill()
        out.close()
        wecom.stop()
