"""Start, stop and inspect the local single-node Kafka broker (KRaft combined mode)."""

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
class BrokerStatus:
    running: bool
    pid: int | None
    bootstrap: str
    message: str
    external: bool = False


def server_properties(settings: Settings, log_dir: Path) -> str:
    """The broker config: one node, broker + controller, everything exactly-once needs."""
    port, cport = settings.kafka_port, settings.kafka_controller_port
    lines = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{cport}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(log_dir.resolve()),
        "num.partitions": str(settings.partitions),
        # Single node: internal topics with replication factor 1 and min ISR 1, or
        # transactions, consumer groups and share groups never become available.
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "6",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "6",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        # The stages create their topics explicitly (`groupwatch topics create`).
        "auto.create.topics.enable": "false",
        "log.retention.check.interval.ms": "60000",
    }
    return "".join(f"{k}={v}\n" for k, v in lines.items())


class LocalKafka:
    """The broker under ``settings.kafka_dir``: data, config, log and pid file live there."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.home = settings.kafka_dir
        self.data_dir = self.home / "data"
        self.config_path = self.home / "server.properties"
        self.log_path = self.home / "broker.log"
        self.pid_path = self.home / "broker.pid"

    # --- inspection ------------------------------------------------------------------
    def _pid(self) -> int | None:
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
        pid = self._pid()
        if pid is None:
            return BrokerStatus(False, None, bootstrap, f"not running ({self.home})")
        state = "ready" if _metadata_ok(bootstrap, timeout=3.0) else "not answering yet"
        return BrokerStatus(True, pid, bootstrap, f"running (pid {pid}) on {bootstrap}, {state}")

    # --- start -----------------------------------------------------------------------
    def start(self, timeout: float = READY_TIMEOUT_S) -> BrokerStatus:
        current = self.status()
        if current.external:
            return current
        if current.running:
            return BrokerStatus(
                True,
                current.pid,
                current.bootstrap,
                f"already running (pid {current.pid}) on {current.bootstrap}",
            )
        java = find_java()
        lib = ensure_jars(self.settings.kafka_jars_dir)
        _check_port_free(self.settings.kafka_port)
        _check_port_free(self.settings.kafka_controller_port)
        self.home.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(
            server_properties(self.settings, self.data_dir), encoding="utf-8"
        )
        classpath = f"{lib}/*"
        log_opt = f"-Dlog4j2.configurationFile={LOG4J_CONFIG}"
        if not (self.data_dir / "meta.properties").exists():
            self._format(java, classpath, log_opt)

        heap = self.settings.kafka_heap
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
            str(self.config_path.resolve()),
        ]
        began = time.monotonic()
        with self.log_path.open("ab") as log:
            proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pid_path.write_text(f"{proc.pid}\n", encoding="utf-8")
        self._wait_ready(proc, began + timeout)
        elapsed = time.monotonic() - began
        return BrokerStatus(
            True,
            proc.pid,
            self.settings.bootstrap_servers,
            f"started Kafka {kafka_version(lib)} (KRaft, pid {proc.pid}) on "
            f"{self.settings.bootstrap_servers} in {elapsed:.1f} s; log: {self.log_path}",
        )

    def _format(self, java: Path, classpath: str, log_opt: str) -> None:
        tool = [str(java), log_opt, "-cp", classpath, "kafka.tools.StorageTool"]
        uuid_run = subprocess.run(
            [*tool, "random-uuid"], capture_output=True, text=True, timeout=120, check=False
        )
        cluster_id = uuid_run.stdout.strip().splitlines()[-1] if uuid_run.stdout.strip() else ""
        if uuid_run.returncode != 0 or not cluster_id:
            raise BrokerError(f"kafka-storage random-uuid failed:\n{uuid_run.stderr[-2000:]}")
        fmt = subprocess.run(
            [*tool, "format", "-t", cluster_id, "-c", str(self.config_path.resolve())],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if fmt.returncode != 0:
            raise BrokerError(f"formatting {self.data_dir} failed:\n{fmt.stdout + fmt.stderr}")

    def _wait_ready(self, proc: subprocess.Popen[bytes], deadline: float) -> None:
        """Wait until the PLAINTEXT port is open and a metadata request lists the broker."""
        bootstrap = self.settings.bootstrap_servers
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.pid_path.unlink(missing_ok=True)
                raise BrokerError(
                    f"the broker exited with code {proc.returncode} while starting; "
                    f"last log lines:\n{self.log_tail()}"
                )
            if _port_open(self.settings.kafka_port) and _metadata_ok(bootstrap, timeout=3.0):
                return
            time.sleep(0.25)
        self._terminate(proc.pid)
        raise BrokerError(
            f"the broker did not become ready within {READY_TIMEOUT_S:.0f} s; "
            f"last log lines:\n{self.log_tail()}"
        )

    # --- stop ------------------------------------------------------------------------
    def stop(self, timeout: float = STOP_TIMEOUT_S) -> BrokerStatus:
        current = self.status()
        if current.external:
            return current
        if current.pid is None:
            self.pid_path.unlink(missing_ok=True)
            return BrokerStatus(False, None, current.bootstrap, "not running; nothing to stop")
        self._terminate(current.pid, timeout)
        self.pid_path.unlink(missing_ok=True)
        return BrokerStatus(False, None, current.bootstrap, f"stopped (pid {current.pid})")

    def kill(self) -> None:
        """SIGKILL the broker (fault tests); the pid file stays for ``start`` to replace."""
        pid = self._pid()
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
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no broker log)"


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
