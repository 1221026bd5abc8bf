"""Start, stop and inspect the local Kafka broker or cluster (KRaft combined mode)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka.admin import AdminClient

from groupwatch.broker.jars import LOG4J_CONFIG, ensure_jars, kafka_version
from groupwatch.broker.prerequisites import find_java
from groupwatch.contracts import Settings

READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


class BrokerError(RuntimeError):
    """The local broker failed to start or stop; the message says why."""


@dataclass(frozen=True)
class NodeStatus:
    """One node of the local cluster."""

    node_id: int
    port: int
    controller_port: int
    pid: int | None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"


@dataclass(frozen=True)
class BrokerStatus:
    running: bool
    pid: int | None
    bootstrap: str
    message: str
    external: bool = False
    nodes: tuple[NodeStatus, ...] = ()


def server_properties(settings: Settings, log_dir: Path, node_id: int = 1) -> str:
    """The config of node ``node_id`` (1-based): broker + controller, everything
    exactly-once needs. One node: internal topics with replication factor 1; a cluster of
    3+: factor 3 and min ISR 2 for them and for topics created without a factor."""
    n = settings.kafka_brokers
    port = settings.kafka_broker_ports[node_id - 1]
    cport = settings.kafka_controller_ports[node_id - 1]
    voters = ",".join(
        f"{i + 1}@127.0.0.1:{c}" for i, c in enumerate(settings.kafka_controller_ports)
    )
    internal_rf, internal_isr = ("3", "2") if n >= 3 else ("1", "1")
    lines = {
        "process.roles": "broker,controller",
        "node.id": str(node_id),
        "controller.quorum.voters": voters,
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(log_dir.resolve()),
        "num.partitions": str(settings.partitions),
        # Single node: internal topics with replication factor 1 and min ISR 1, or
        # transactions, consumer groups and share groups never become available.
        "offsets.topic.replication.factor": internal_rf,
        "offsets.topic.num.partitions": "6",
        "transaction.state.log.replication.factor": internal_rf,
        "transaction.state.log.min.isr": internal_isr,
        "transaction.state.log.num.partitions": "6",
        "share.coordinator.state.topic.replication.factor": internal_rf,
        "share.coordinator.state.topic.min.isr": internal_isr,
        "group.initial.rebalance.delay.ms": "0",
        # The stages create their topics explicitly (`groupwatch topics create`).
        "auto.create.topics.enable": "false",
        "log.retention.check.interval.ms": "60000",
    }
    if n > 1:
        # topics created without a factor (Faust's changelogs get one from the settings)
        lines["default.replication.factor"] = internal_rf
        lines["min.insync.replicas"] = internal_isr
        # small machine, several nodes: fewer threads each than the defaults (8 I/O, 3 net)
        lines["num.io.threads"] = "4"
        lines["num.network.threads"] = "2"
        lines["num.replica.fetchers"] = "1"
        # a node back after a kill takes its preferred leaderships back soon
        lines["leader.imbalance.check.interval.seconds"] = "30"
    return "".join(f"{k}={v}\n" for k, v in lines.items())


class KafkaNode:
    """One node's files: data, config, log and pid. A one-node cluster keeps the layout it
    always had (``<kafka_dir>/data``, ``server.properties``, ``broker.log``, ``broker.pid``);
    node ``i`` of a larger one lives in ``<kafka_dir>/node-<i>/``."""

    def __init__(self, settings: Settings, node_id: int) -> None:
        self.settings = settings
        self.node_id = node_id
        home = settings.kafka_dir
        self.home = home if settings.kafka_brokers == 1 else home / f"node-{node_id}"
        self.data_dir = self.home / "data"
        self.config_path = self.home / "server.properties"
        self.log_path = self.home / "broker.log"
        self.pid_path = self.home / "broker.pid"
        self.port = settings.kafka_broker_ports[node_id - 1]
        self.controller_port = settings.kafka_controller_ports[node_id - 1]

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def pid(self) -> int | None:
        """PID of a live broker process started from this directory, else None."""
        try:
            pid = int(self.pid_path.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            return None
        ours = b"kafka.Kafka" in cmdline and str(self.config_path.resolve()).encode() in cmdline
        return pid if ours and not _is_zombie(pid) else None

    def status(self) -> NodeStatus:
        return NodeStatus(self.node_id, self.port, self.controller_port, self.pid())

    def log_tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no broker log)"


class LocalKafka:
    """The local cluster under ``settings.kafka_dir``: GROUPWATCH_KAFKA_BROKERS nodes, each
    a combined broker + controller (a 1- or 3-voter KRaft quorum), from the same jars."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.home = settings.kafka_dir
        self.nodes = [KafkaNode(settings, i + 1) for i in range(settings.kafka_brokers)]
        first = self.nodes[0]
        # the one-node layout, by its old names
        self.data_dir, self.config_path = first.data_dir, first.config_path
        self.log_path, self.pid_path = first.log_path, first.pid_path
        self.cluster_id_path = self.home / "cluster.id"

    @property
    def single(self) -> bool:
        return len(self.nodes) == 1

    def node(self, node_id: int) -> KafkaNode:
        if not 1 <= node_id <= len(self.nodes):
            raise BrokerError(f"no node {node_id}: the local cluster has {len(self.nodes)}")
        return self.nodes[node_id - 1]

    # --- inspection ------------------------------------------------------------------
    def _pid(self) -> int | None:
        return self.nodes[0].pid()

    def status(self) -> BrokerStatus:
        bootstrap = self.settings.bootstrap_servers
        if self.settings.uses_external_kafka:
            return BrokerStatus(
                True,
                None,
                bootstrap,
                f"using the existing cluster {bootstrap} "
                "(KAFKA_BOOTSTRAP_SERVERS is set; no local broker is managed)",
                external=True,
            )
        nodes = tuple(node.status() for node in self.nodes)
        if self.single:
            pid = nodes[0].pid
            if pid is None:
                return BrokerStatus(
                    False, None, bootstrap, f"not running ({self.home})", nodes=nodes
                )
            state = "ready" if _metadata_ok(bootstrap, timeout=3.0) else "not answering yet"
            return BrokerStatus(
                True, pid, bootstrap, f"running (pid {pid}) on {bootstrap}, {state}", nodes=nodes
            )
        up = [n for n in nodes if n.pid is not None]
        if not up:
            return BrokerStatus(False, None, bootstrap, f"not running ({self.home})", nodes=nodes)
        listed = _metadata_brokers(bootstrap, timeout=3.0)
        lines = [f"bootstrap: {bootstrap}"]
        for n in nodes:
            state = "stopped" if n.pid is None else f"pid {n.pid}"
            ready = "ready" if n.node_id in listed else "not answering yet"
            lines.append(
                f"node {n.node_id}: {n.bootstrap} (controller :{n.controller_port}) {state}"
                + ("" if n.pid is None else f", {ready}")
            )
        running = len(up) == len(nodes)
        head = (
            f"running, {len(nodes)} nodes"
            if running
            else f"partly running: {len(up)} of {len(nodes)} nodes"
        )
        return BrokerStatus(running, up[0].pid, bootstrap, "\n".join([head, *lines]), nodes=nodes)

    # --- start -----------------------------------------------------------------------
    def start(self, timeout: float = READY_TIMEOUT_S) -> BrokerStatus:
        """Start every node not running (all at once: a quorum needs a majority) and wait
        until each one is listed by the cluster's metadata."""
        current = self.status()
        if current.external:
            return current
        if current.running:
            return BrokerStatus(
                True,
                current.pid,
                current.bootstrap,
                f"already running (pid {current.pid}) on {current.bootstrap}"
                if self.single
                else f"already running on {current.bootstrap}:\n{current.message}",
                nodes=current.nodes,
            )
        todo = [node for node in self.nodes if node.pid() is None]
        began = time.monotonic()
        lib = self._launch(todo)
        elapsed = time.monotonic() - began
        status = self.status()
        if self.single:
            pid = status.nodes[0].pid
            return BrokerStatus(
                True,
                pid,
                status.bootstrap,
                f"started Kafka {kafka_version(lib)} (KRaft, pid {pid}) on "
                f"{status.bootstrap} in {elapsed:.1f} s; log: {self.log_path}",
                nodes=status.nodes,
            )
        return BrokerStatus(
            True,
            status.pid,
            status.bootstrap,
            f"started Kafka {kafka_version(lib)} (KRaft, {len(todo)} of {len(self.nodes)} "
            f"nodes) in {elapsed:.1f} s; logs: {self.home}/node-*/broker.log\n{status.message}",
            nodes=status.nodes,
        )

    def start_node(self, node_id: int, timeout: float = READY_TIMEOUT_S) -> int:
        """(Re)start one node of the cluster; returns its pid once the cluster lists it."""
        node = self.node(node_id)
        pid = node.pid()
        if pid is None:
            self._launch([node], timeout)
            pid = node.pid()
        assert pid is not None
        return pid

    def _launch(self, nodes: list[KafkaNode], timeout: float = READY_TIMEOUT_S) -> Path:
        java = find_java()
        lib = ensure_jars(self.settings.kafka_jars_dir)
        for node in nodes:
            _check_port_free(node.port)
            _check_port_free(node.controller_port)
        classpath = f"{lib}/*"
        log_opt = f"-Dlog4j2.configurationFile={LOG4J_CONFIG}"
        for node in nodes:
            node.home.mkdir(parents=True, exist_ok=True)
            node.config_path.write_text(
                server_properties(self.settings, node.data_dir, node.node_id), encoding="utf-8"
            )
            if not (node.data_dir / "meta.properties").exists():
                self._format(node, java, classpath, log_opt)
        heap = self.settings.kafka_heap
        procs = []
        began = time.monotonic()
        for node in nodes:
            cmd = [
                str(java),
                f"-Xmx{heap}",
                f"-Xms{heap}",
                "-XX:+UseG1GC",
                "-Djava.awt.headless=true",
                log_opt,
                "-cp",
                classpath,
                "kafka.Kafka",
                str(node.config_path.resolve()),
            ]
            with node.log_path.open("ab") as log:
                proc = subprocess.Popen(
                    cmd,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            node.pid_path.write_text(f"{proc.pid}\n", encoding="utf-8")
            procs.append((node, proc))
        self._wait_ready(procs, began + timeout, timeout)
        return lib

    def _cluster_id(self, tool: list[str]) -> str:
        """The cluster id every node is formatted with: made once, kept in ``cluster.id``
        (a one-node cluster makes a fresh one, as before)."""
        if not self.single:
            with contextlib.suppress(FileNotFoundError):
                kept = self.cluster_id_path.read_text().strip()
                if kept:
                    return kept
        uuid_run = subprocess.run(
            [*tool, "random-uuid"], capture_output=True, text=True, timeout=120, check=False
        )
        cluster_id = uuid_run.stdout.strip().splitlines()[-1] if uuid_run.stdout.strip() else ""
        if uuid_run.returncode != 0 or not cluster_id:
            raise BrokerError(f"kafka-storage random-uuid failed:\n{uuid_run.stderr[-2000:]}")
        if not self.single:
            self.home.mkdir(parents=True, exist_ok=True)
            self.cluster_id_path.write_text(f"{cluster_id}\n", encoding="utf-8")
        return cluster_id

    def _format(self, node: KafkaNode, java: Path, classpath: str, log_opt: str) -> None:
        tool = [str(java), log_opt, "-cp", classpath, "kafka.tools.StorageTool"]
        cluster_id = self._cluster_id(tool)
        fmt = subprocess.run(
            [*tool, "format", "-t", cluster_id, "-c", str(node.config_path.resolve())],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if fmt.returncode != 0:
            raise BrokerError(f"formatting {node.data_dir} failed:\n{fmt.stdout + fmt.stderr}")

    def _wait_ready(
        self,
        procs: list[tuple[KafkaNode, subprocess.Popen[bytes]]],
        deadline: float,
        timeout: float,
    ) -> None:
        """Wait until each started node's PLAINTEXT port is open and a metadata request
        (asked of that node) lists it."""
        waiting = list(procs)
        while time.monotonic() < deadline:
            for node, proc in list(waiting):
                if proc.poll() is not None:
                    node.pid_path.unlink(missing_ok=True)
                    for _, other in procs:
                        if other.poll() is None:
                            self._terminate(other.pid)
                    raise BrokerError(
                        f"the broker{self._which(node)} exited with code {proc.returncode} "
                        f"while starting; last log lines:\n{node.log_tail()}"
                    )
                if _port_open(node.port) and (
                    _metadata_ok(node.bootstrap, timeout=3.0)
                    if self.single
                    else node.node_id in _metadata_brokers(node.bootstrap, timeout=3.0)
                ):
                    waiting.remove((node, proc))
            if not waiting:
                return
            time.sleep(0.25)
        for _, proc in procs:
            self._terminate(proc.pid)
        node = waiting[0][0]
        raise BrokerError(
            f"the broker{self._which(node)} did not become ready within {timeout:.0f} s; "
            f"last log lines:\n{node.log_tail()}"
        )

    def _which(self, node: KafkaNode) -> str:
        return "" if self.single else f" node {node.node_id} ({node.bootstrap})"

    # --- stop ------------------------------------------------------------------------
    def stop(self, timeout: float = STOP_TIMEOUT_S) -> BrokerStatus:
        """Stop every node (SIGTERM to all at once: brokers shut down in parallel, each
        handing its leaderships over while a quorum still stands)."""
        current = self.status()
        if current.external:
            return current
        live = [(node, node.pid()) for node in self.nodes]
        pids = [(node, pid) for node, pid in live if pid is not None]
        if not pids:
            for node in self.nodes:
                node.pid_path.unlink(missing_ok=True)
            return BrokerStatus(False, None, current.bootstrap, "not running; nothing to stop")
        for _, pid in pids:
            _signal_group(pid, signal.SIGTERM)
        for node, pid in pids:
            self._terminate(pid, timeout)
            node.pid_path.unlink(missing_ok=True)
        said = ", ".join(str(pid) for _, pid in pids)
        return BrokerStatus(
            False, None, current.bootstrap, f"stopped (pid{'s' if len(pids) > 1 else ''} {said})"
        )

    def stop_node(self, node_id: int, timeout: float = STOP_TIMEOUT_S) -> None:
        """Stop one node gracefully (SIGTERM: controlled shutdown moves its leaderships)."""
        node = self.node(node_id)
        pid = node.pid()
        if pid is not None:
            self._terminate(pid, timeout)
        node.pid_path.unlink(missing_ok=True)

    def kill(self, node_id: int | None = None) -> None:
        """SIGKILL the broker (fault tests), or one node of the cluster; the pid file stays
        for ``start`` to replace."""
        nodes = self.nodes if node_id is None else [self.node(node_id)]
        for node in nodes:
            pid = node.pid()
            if pid is not None:
                _signal_group(pid, signal.SIGKILL)
                _wait_gone(pid, STOP_TIMEOUT_S)

    def _terminate(self, pid: int, timeout: float = STOP_TIMEOUT_S) -> None:
        _signal_group(pid, signal.SIGTERM)
        if not _wait_gone(pid, timeout):
            _signal_group(pid, signal.SIGKILL)
            if not _wait_gone(pid, 10.0):
                raise BrokerError(f"broker pid {pid} survived SIGKILL")

    def log_tail(self, lines: int = 25) -> str:
        if self.single:
            return self.nodes[0].log_tail(lines)
        return "\n".join(
            f"--- node {node.node_id} ---\n{node.log_tail(lines)}" for node in self.nodes
        )


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        return
    except PermissionError:
        os.kill(pid, sig)


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap if it is our child
        if not Path(f"/proc/{pid}").exists() or _is_zombie(pid):
            return True
        time.sleep(0.1)
    return False


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _check_port_free(port: int) -> None:
    if _port_open(port):
        raise BrokerError(
            f"port {port} on 127.0.0.1 is already in use by another program; choose another "
            "with GROUPWATCH_KAFKA_PORT / GROUPWATCH_KAFKA_CONTROLLER_PORT"
        )


def _metadata_ok(bootstrap: str, timeout: float) -> bool:
    """True when a metadata request answers with at least one broker."""
    admin = AdminClient(
        {"bootstrap.servers": bootstrap, "socket.connection.setup.timeout.ms": 2000, "log_level": 0}
    )
    try:
        return bool(admin.list_topics(timeout=timeout).brokers)
    except Exception:
        return False


def _metadata_brokers(bootstrap: str, timeout: float) -> set[int]:
    """Node ids of the brokers a metadata request lists (none when nothing answers)."""
    admin = AdminClient(
        {"bootstrap.servers": bootstrap, "socket.connection.setup.timeout.ms": 2000, "log_level": 0}
    )
    try:
        return set(admin.list_topics(timeout=timeout).brokers)
    except Exception:
        return set()
