"""`groupwatch kafka start|stop|status` on a broker of the test's own."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from groupwatch.broker.prerequisites import JAVA_MISSING, parse_java_version
from tests.support.ports import free_port, free_port_run
from tests.support.processes import run_groupwatch


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_groupwatch(env, *args, timeout=180)


def java_pids(marker: str) -> list[str]:
    out = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True, check=False)
    return out.stdout.split()


@pytest.mark.kafka
def test_start_twice_status_stop_leaves_no_process(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    port = free_port()
    env.update(
        GROUPWATCH_STATE_DIR=str(tmp_path / "gw"),
        GROUPWATCH_KAFKA_PORT=str(port),
        GROUPWATCH_KAFKA_CONTROLLER_PORT=str(free_port()),
    )
    started = cli(env, "kafka", "start")
    assert started.returncode == 0, started.stderr
    assert f"on 127.0.0.1:{port}" in started.stdout and "started Kafka 4." in started.stdout
    try:
        again = cli(env, "kafka", "start")
        assert again.returncode == 0
        assert "already running" in again.stdout
        status = cli(env, "kafka", "status")
        assert status.returncode == 0 and "ready" in status.stdout
        if shutil.which("kcat"):
            listing = subprocess.run(
                ["kcat", "-b", f"127.0.0.1:{port}", "-L", "-m", "10"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            assert f"127.0.0.1:{port}" in listing.stdout, listing.stderr
    finally:
        stopped = cli(env, "kafka", "stop")
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert java_pids(str(tmp_path / "gw")) == []
    after = cli(env, "kafka", "status")
    assert after.returncode == 3 and "not running" in after.stdout


def test_missing_java_gives_one_clear_sentence(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"KAFKA_BOOTSTRAP_SERVERS", "JAVA_HOME"}}
    env["PATH"] = str(tmp_path)  # nothing in it: no java, no mvn
    env["GROUPWATCH_STATE_DIR"] = str(tmp_path / "gw")
    result = cli(env, "kafka", "start")
    assert result.returncode == 1
    assert result.stderr.strip() == f"Error: {JAVA_MISSING}"


def test_external_cluster_starts_nothing(tmp_path: Path) -> None:
    env = dict(
        os.environ,
        KAFKA_BOOTSTRAP_SERVERS="kafka.example:9092",
        GROUPWATCH_STATE_DIR=str(tmp_path / "gw"),
    )
    result = cli(env, "kafka", "start")
    assert result.returncode == 0
    assert "using the existing cluster kafka.example:9092" in result.stdout
    assert not (tmp_path / "gw").exists()


@pytest.mark.parametrize(
    ("text", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15', 17),
        ('java version "1.8.0_372"', 8),
        ('openjdk version "21" 2023-09-19', 21),
    ],
)
def test_parse_java_version(text: str, major: int) -> None:
    assert parse_java_version(text) == major


@pytest.mark.kafka
@pytest.mark.slow
def test_three_node_cluster_start_status_stop(tmp_path: Path) -> None:
    """GROUPWATCH_KAFKA_BROKERS=3: three nodes, the bootstrap list and each pid in `status`,
    replication 3 / min ISR 2 from `topics create`, a refused factor 4, `stop` stops all."""
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    ports = [free_port_run(3), free_port_run(3)]
    env.update(
        GROUPWATCH_STATE_DIR=str(tmp_path / "gw"),
        GROUPWATCH_KAFKA_BROKERS="3",
        GROUPWATCH_KAFKA_PORT=str(ports[0]),
        GROUPWATCH_KAFKA_CONTROLLER_PORT=str(ports[1]),
        GROUPWATCH_KAFKA_HEAP="256m",
        GROUPWATCH_PARTITIONS="2",
    )
    from groupwatch.contracts import Settings, topic_specs

    settings = Settings(kafka_brokers=3, kafka_port=ports[0], kafka_controller_port=ports[1])
    bootstrap = settings.bootstrap_servers
    started = cli(env, "kafka", "start")
    assert started.returncode == 0, started.stdout + started.stderr
    assert "3 of 3 nodes" in started.stdout
    try:
        status = cli(env, "kafka", "status")
        assert status.returncode == 0, status.stdout
        assert f"bootstrap: {bootstrap}" in status.stdout
        pids = re.findall(
            r"^node (\d): \S+ \(controller :\d+\) pid (\d+), ready$", status.stdout, re.M
        )
        assert [n for n, _ in pids] == ["1", "2", "3"], status.stdout
        created = cli(env, "topics", "create")
        assert created.returncode == 0, created.stderr
        topics = len(topic_specs(settings))
        assert created.stdout.count("replication=3, min ISR 2") == topics, created.stdout
        refused = cli(env | {"GROUPWATCH_REPLICATION_FACTOR": "4"}, "topics", "create")
        assert refused.returncode == 1
        assert "larger than the cluster (3 brokers)" in refused.stderr
        warned = cli(
            env | {"GROUPWATCH_MIN_INSYNC_REPLICAS": "1", "GROUPWATCH_TOPIC_PREFIX": "isr1"},
            "topics",
            "create",
        )
        assert warned.returncode == 0 and "Warning: min.insync.replicas is 1" in warned.stderr
        # each live node runs with the internal topics' replication 3 / min ISR 2
        admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
        for node in ("1", "2", "3"):
            [future] = admin.describe_configs([ConfigResource("broker", node)]).values()
            config = future.result(30)
            assert config["offsets.topic.replication.factor"].value == "3"
            assert config["transaction.state.log.min.isr"].value == "2"
            assert config["min.insync.replicas"].value == "2"
    finally:
        stopped = cli(env, "kafka", "stop")
    assert stopped.returncode == 0 and "stopped (pids" in stopped.stdout, stopped.stdout
    assert java_pids(str(tmp_path / "gw")) == []
    after = cli(env, "kafka", "status")
    assert after.returncode == 3 and "not running" in after.stdout
