"""A test-owned local 3-node Kafka cluster (``GROUPWATCH_KAFKA_BROKERS=3``) as real
processes: start / stop all, SIGKILL, SIGTERM or restart one node, freeze all; who leads a
partition, who coordinates a group, when every replica is back in sync. And haproxy in
front of several ingress replicas."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient

from groupwatch.broker.server import LocalKafka
from groupwatch.contracts import Settings
from tests.support.ports import free_port, free_port_run
from tests.support.processes import clean_env, groupwatch

NODES = 3


# the child of ``Cluster.coordinator``: prints the coordinator's node id of argv[2]
_COORDINATOR = """
import sys
from confluent_kafka.admin import AdminClient
admin = AdminClient({"bootstrap.servers": sys.argv[1], "log_level": 0})
[future] = admin.describe_consumer_groups([sys.argv[2]], request_timeout=5).values()
print(int(future.result(10).coordinator.id))
"""


class ClusterProcess:
    """``groupwatch kafka start`` with three nodes under ``state_dir``; node ids 1..3."""

    def __init__(self, state_dir: Path, heap: str = "384m") -> None:
        port, controller = free_port_run(NODES), free_port_run(NODES)
        self.env = clean_env(
            GROUPWATCH_STATE_DIR=str(state_dir),
            GROUPWATCH_KAFKA_BROKERS=str(NODES),
            GROUPWATCH_KAFKA_PORT=str(port),
            GROUPWATCH_KAFKA_CONTROLLER_PORT=str(controller),
            GROUPWATCH_KAFKA_HEAP=heap,
        )
        self.settings = Settings(
            kafka_bootstrap_servers=None,
            kafka_data_dir=None,
            state_dir=state_dir,
            kafka_brokers=NODES,
            kafka_port=port,
            kafka_controller_port=controller,
            kafka_heap=heap,
        )
        self.local = LocalKafka(self.settings)
        self.bootstrap = self.settings.bootstrap_servers
        self.admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})

    def start(self) -> None:
        groupwatch(self.env, "kafka", "start", timeout=300)
        assert all(n.pid is not None for n in self.local.status().nodes), self.local.log_tail()

    def stop(self) -> None:
        self.resume_all()
        status = self.local.stop()
        assert not status.running, status.message

    def pid(self, node: int) -> int | None:
        return self.local.node(node).pid()

    def kill(self, node: int) -> None:
        """SIGKILL one node and wait until it is gone."""
        self.local.kill(node)

    def terminate(self, node: int) -> None:
        """SIGTERM one node (controlled shutdown) and wait until it has exited."""
        self.local.stop_node(node)

    def restart(self, node: int) -> int:
        """Start one node again (same data); returns its pid once the cluster lists it."""
        return self.local.start_node(node, timeout=120)

    def pause_all(self) -> None:
        """SIGSTOP every node: the cluster keeps its sockets and answers nothing."""
        for node in self.local.nodes:
            pid = node.pid()
            assert pid is not None, f"node {node.node_id} is not running"
            os.killpg(pid, signal.SIGSTOP)

    def resume_all(self) -> None:
        for node in self.local.nodes:
            pid = node.pid()
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGCONT)

    # --- who does what ---------------------------------------------------------------
    def leaders(self, topic: str) -> dict[int, int]:
        """Partition -> leader node of ``topic`` (-1 while it has none), asked afresh (a
        long-lived client may answer from metadata cached before a node died)."""
        admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})
        meta = admin.list_topics(topic, timeout=10).topics[topic]
        return {p: part.leader for p, part in meta.partitions.items()}

    def busiest_partition(self, topic: str) -> int:
        """The partition of ``topic`` holding the most records."""
        consumer = Consumer(
            {"bootstrap.servers": self.bootstrap, "group.id": "gw-probe", "log_level": 0}
        )
        try:
            sizes = {}
            for p in self.leaders(topic):
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                sizes[p] = high - low
        finally:
            consumer.close()
        return max(sizes, key=lambda p: sizes[p])

    def coordinator(self, group: str, not_node: int | None = None, timeout: float = 60) -> int:
        """The node coordinating consumer group ``group`` (other than ``not_node``: waits
        until the coordination moved off a dead node).

        Each try asks in a child process: librdkafka's admin client can abort the whole
        process (``rd_kafka_enq_once_del_source_return: eonce->refcnt > 0``) when a
        ``describe_consumer_groups`` against a just-killed coordinator times out and the
        client is destroyed (it aborted this suite in a clean-clone CI run; the stages
        make no admin requests for that reason, docs/RELIABILITY.md). A child that aborts
        or hangs is one failed try."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                done = subprocess.run(
                    [sys.executable, "-c", _COORDINATOR, self.bootstrap, group],
                    capture_output=True,
                    text=True,
                    timeout=20,
                )
                last: object = f"exit {done.returncode}: {done.stderr.strip()[-300:]}"
                if done.returncode == 0:
                    node = int(done.stdout.strip())
                    if node != not_node:
                        return node
                    last = f"still node {node}"
            except subprocess.TimeoutExpired:
                last = "no answer in 20 s"
            assert time.monotonic() < deadline, f"coordinator of {group}: {last}"
            time.sleep(1)

    def committed(self, group: str) -> int:
        """How many partitions ``group`` has committed offsets for (it works)."""
        [future] = self.admin.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group)]
        ).values()
        return sum(1 for tp in future.result(15).topic_partitions if tp.offset >= 0)

    def wait_in_sync(self, topics: list[str], timeout: float = 120.0) -> float:
        """Block until every partition of ``topics`` has all its replicas in sync; seconds."""
        began = time.monotonic()
        while True:
            meta = self.admin.list_topics(timeout=10).topics
            behind = [
                f"{t}[{p}]"
                for t in topics
                for p, part in meta[t].partitions.items()
                if len(part.isrs) < len(part.replicas) or part.leader < 0
            ]
            if not behind:
                return time.monotonic() - began
            assert time.monotonic() - began < timeout, f"replicas not in sync: {behind[:5]}"
            time.sleep(0.5)


class Haproxy:
    """A real haproxy (Debian's) balancing HTTP round-robin over ``backends`` (URLs)."""

    def __init__(self, backends: list[str], log_path: Path) -> None:
        binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
        assert Path(binary).exists(), "haproxy is not installed (apt-get install haproxy)"
        self.binary = binary
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = log_path.with_suffix(".cfg")
        self.log_path = log_path
        servers = "\n".join(
            f"    server ingress{i} {url.removeprefix('http://')} check inter 1s fall 3 rise 2"
            for i, url in enumerate(backends)
        )
        self.config_path.parent.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(
            f"""global
    maxconn 512
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    option http-keep-alive
frontend callbacks
    bind 127.0.0.1:{self.port}
    default_backend ingress
backend ingress
    balance roundrobin
    option httpchk GET /healthz
{servers}
""",
            encoding="utf-8",
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Haproxy:
        check = subprocess.run(
            [self.binary, "-c", "-f", str(self.config_path)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert check.returncode == 0, check.stdout + check.stderr
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, "-db", "-f", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + 15
        while True:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=1),
            ):
                return self
            assert self.proc.poll() is None, self.log_path.read_text(errors="replace")
            assert time.monotonic() < deadline, "haproxy did not listen"
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
