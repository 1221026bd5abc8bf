"""Shared helpers of the ingress tests: sample callbacks, signed queries, topic readers."""

from __future__ import annotations

import os
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import requests
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from groupwatch.contracts import CMD_SEND_MSG_EXCEPTION, Settings
from ingest.auth import make_sign
from tests.processes import StageProcess, children

APPID = "1400000001"
SIGNED_APPID = "1400000002"
TOKEN = "xxxxyyyy"
OK_REPLY = {"ActionStatus": "OK", "ErrorInfo": "", "ErrorCode": 0}

# The spec's sample request, made valid JSON (comments removed, missing comma added).
SPEC_SAMPLE: dict[str, Any] = {
    "CallbackCommand": "Group.CallbackSendMsgException",
    "GroupId": "@TGS#2J4SZEAEL",
    "Type": "Public",
    "From_Account": "jared",
    "Operator_Account": "admin",
    "Random": 123456,
    "OnlineOnlyFlag": 1,
    "MsgBody": [{"MsgType": "TIMTextElem", "MsgContent": {"Text": "red packet"}}],
    "CloudCustomData": "your cloud custom data",
    "ErrorCode": 10023,
    "ErrorInfo": "msg count exceeds limit,please retry later",
    "EventTime": "1670574414123",
}


def query(
    command: str = CMD_SEND_MSG_EXCEPTION, appid: str = APPID, **extra: str
) -> dict[str, str]:
    params = {
        "SdkAppid": appid,
        "CallbackCommand": command,
        "contenttype": "json",
        "ClientIP": "10.0.0.7",
        "OptPlatform": "iOS",
    }
    params.update(extra)
    return params


def signed_query(command: str = CMD_SEND_MSG_EXCEPTION, **extra: str) -> dict[str, str]:
    now = str(int(time.time()))
    return query(command, SIGNED_APPID, RequestTime=now, Sign=make_sign(TOKEN, now), **extra)


def exception_body(i: int, *, group: str = "@TGS#load", event_time: int | None = None) -> bytes:
    body = dict(SPEC_SAMPLE)
    body.update(
        GroupId=f"{group}{i % 7}",
        From_Account=f"user{i}",
        Random=i,
        EventTime=event_time if event_time is not None else int(time.time() * 1000),
    )
    return orjson.dumps(body)


def read_topic(
    settings: Settings, topic: str, *, expect: int | None = None, timeout: float = 30.0
) -> list[Message]:
    """Every record of ``topic``, waiting (up to ``timeout``) until at least ``expect``."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": f"gwtest-reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        deadline = time.monotonic() + timeout
        partitions = list(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        while True:
            marks = {p: _watermarks(consumer, topic, p) for p in partitions}
            total = sum(high - low for low, high in marks.values())
            if expect is None or total >= expect or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        records: list[Message] = []
        remaining = {p for p, (low, high) in marks.items() if high > low}
        while remaining and time.monotonic() < deadline + 30:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            records.append(msg)
            if msg.offset() + 1 >= marks[msg.partition()][1]:
                remaining.discard(msg.partition())
        return records
    finally:
        consumer.close()


# Errors of a partition whose leader is still being elected (not flagged retriable).
_SETTLING = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
    }
)


def _watermarks(consumer: Consumer, topic: str, partition: int) -> tuple[int, int]:
    """Low/high watermarks, retrying while a new partition's leader settles."""
    for attempt in range(50):
        try:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            return int(low), int(high)
        except KafkaException as exc:
            error = exc.args[0]
            settling = error.retriable() or error.code() in _SETTLING
            if attempt == 49 or not settling:
                raise
            time.sleep(0.2)
    raise AssertionError("unreachable")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess(StageProcess):
    """``groupwatch ingest`` (2 workers), started and healthy on construction."""

    def __init__(self, settings: Settings, env_overrides: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ)
        env.update(
            {
                "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
                "GROUPWATCH_TOPIC_PREFIX": settings.topic_prefix,
                "GROUPWATCH_STATE_DIR": str(settings.state_dir),
                "GROUPWATCH_SDKAPPIDS": f"{APPID},{SIGNED_APPID}",
                "GROUPWATCH_CALLBACK_TOKENS": f"{SIGNED_APPID}:{TOKEN}",
                "GROUPWATCH_UNSIGNED_SDKAPPIDS": APPID,
                "GROUPWATCH_INGEST_PORT": str(self.port),
                "GROUPWATCH_INGEST_WORKERS": "2",
                "GROUPWATCH_INGEST_THREADS": "8",
            }
        )
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        env.update(env_overrides)
        super().__init__("ingest", ["ingest"], env, log_path, f"{self.url}/healthz")
        self.start(timeout=30)

    def workers(self) -> list[int]:
        """PIDs of the server's worker processes (children of the main process)."""
        return children(self.pid)


class Load:
    """Steady POST load from a few threads (keep-alive sessions) until ``stop()``."""

    def __init__(self, url: str, *, threads: int = 4, first: int = 0, pause: float = 0.02) -> None:
        import threading

        self.url = url
        self.results: list[tuple[int, int, float]] = []  # (index, status or -1, seconds)
        self.answered_at: dict[int, float] = {}  # index -> monotonic time of its 200
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._next = first
        self._pause = pause
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for t in self._threads:
            t.start()

    def _take(self) -> int:
        with self._lock:
            self._next += 1
            return self._next

    def _run(self) -> None:
        session = requests.Session()
        while not self._stopping.is_set():
            i = self._take()
            started = time.monotonic()
            try:
                reply = session.post(
                    f"{self.url}/callback", params=query(), data=exception_body(i), timeout=10
                )
                status = reply.status_code
            except requests.RequestException:
                status = -1
                session = requests.Session()
            done = time.monotonic()
            with self._lock:
                self.results.append((i, status, done - started))
                if status == 200:
                    self.answered_at[i] = done
            self._stopping.wait(self._pause)

    def stop(self) -> None:
        self._stopping.set()
        for t in self._threads:
            t.join(15)

    def accepted(self) -> set[int]:
        return {i for i, status, _ in self.results if status == 200}


def event_id_of(i: int) -> str:
    from groupwatch.contracts import make_event_id

    return make_event_id(APPID, f"@TGS#load{i % 7}", f"user{i}", i, 0)
