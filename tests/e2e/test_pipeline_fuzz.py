"""Property-based fuzz of the whole pipeline over real processes, Kafka and DuckDB.

Hypothesis generates callback bodies (valid, mutated, out of range, not JSON) that are
POSTed to a real ingress, then raw records (any bytes, wrong types, out-of-range values,
giant strings, null keys) produced straight to the input topics, as any client of an
unauthenticated broker could. Then:

- no stage exits and the ingress never answers 5xx;
- every 200 is one record on its topic; every 4xx that the DLQ takes is one DLQ record;
- the stream's accounting identity: every input record it read is exactly one of
  counted, duplicate, late or rejected (``groupwatch_stream_records_total``), and each
  rejected one is a ``stage="stream"`` DLQ record carrying its source offset and bytes;
- the sink's identity: every record it consumed is one of stored, duplicate or rejected
  (``groupwatch_sink_records_total``), the rejected ones are rows of ``sink_rejects``.

Sizes: ``GROUPWATCH_FUZZ_CALLBACKS`` (default 10,000) and ``GROUPWATCH_FUZZ_RAW`` (1,000).
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from groupwatch.contracts import (
    CMD_AFTER_SEND_MSG,
    CMD_SEND_MSG_EXCEPTION,
    DlqRecord,
    Settings,
    Topics,
    decode,
)
from groupwatch.simulate.signing import sign as make_sign
from ingest.normalize import EXCEPTION_FIELDS
from tests.support.kafka import produce, topic_end
from tests.support.metrics import metric_by, metric_sums
from tests.support.ports import free_port
from tests.support.processes import StageProcess, settings_env

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(1200)]

CALLBACKS = int(os.environ.get("GROUPWATCH_FUZZ_CALLBACKS", "10000"))
RAW = int(os.environ.get("GROUPWATCH_FUZZ_RAW", "1000"))
APP, TOKEN = "1400000001", "fuzz-token-0123456789"
NOW_MS = int(time.time() * 1000)

INT_EDGES = [
    0,
    -1,
    1,
    2**31 - 1,
    2**31,
    -(2**31),
    -(2**31) - 1,
    2**32 - 1,
    2**32,
    2**40,
    2**63 - 1,
    2**63,
    -(2**63),
    2**64,
    10**30,
]
TIME_EDGES = [
    NOW_MS,
    NOW_MS - 1,
    NOW_MS + 600_000,  # ten minutes ahead: accepted by the ingress, held by the stream
    NOW_MS - 3_600_000,
    0,
    -1,
    -(10**15),
    95_617_584_000_000,  # year 5000
    253_402_300_800_000,  # year 10000
    2**63,
]

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from(INT_EDGES)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)
big_text = st.integers(min_value=1, max_value=200_000).map(lambda n: "x" * n)


def base_body(command: str, draw: st.DrawFn) -> dict[str, Any]:
    body: dict[str, Any] = {
        "CallbackCommand": command,
        "GroupId": draw(st.sampled_from(["@TGS#a", "@TGS#b", "@TGS#c", "@TGS#storm"])),
        "Type": draw(st.sampled_from(["Public", "Private", "ChatRoom", "AVChatRoom", "Community"])),
        "From_Account": draw(st.sampled_from(["alice", "bob", "carol", "dave"])),
        "Random": draw(st.integers(min_value=0, max_value=2**32 - 1)),
        "EventTime": draw(st.integers(min_value=NOW_MS - 20_000, max_value=NOW_MS)),
    }
    if command == CMD_SEND_MSG_EXCEPTION:
        body.update(
            Operator_Account="admin",
            OnlineOnlyFlag=draw(st.sampled_from([0, 1])),
            MsgBody=[{"MsgType": "TIMTextElem", "MsgContent": {"Text": "hi"}}],
            ErrorCode=draw(st.sampled_from([10007, 10010, 10016, 10017, 10023, 80001, 80002])),
            ErrorInfo="fuzz",
        )
    else:
        body["MsgSeq"] = draw(st.integers(min_value=0, max_value=2**32 - 1))
    return body


# every body field the ingress knows (and one it does not)
FIELDS = [*sorted(EXCEPTION_FIELDS - {"CallbackCommand"}), "MsgSeq", "Unknown"]


@st.composite
def callback(draw: st.DrawFn) -> tuple[str, bytes]:
    command = draw(st.sampled_from([CMD_SEND_MSG_EXCEPTION] * 3 + [CMD_AFTER_SEND_MSG]))
    kind = draw(st.sampled_from(["valid", "mutated", "mutated", "edge", "json", "raw"]))
    if kind == "raw":
        return command, draw(st.binary(max_size=300))
    if kind == "json":
        return command, json.dumps(draw(json_values)).encode()
    body = base_body(command, draw)
    if kind == "edge":
        name = draw(
            st.sampled_from(["ErrorCode", "Random", "EventTime", "OnlineOnlyFlag", "MsgSeq"])
        )
        edges = TIME_EDGES if name == "EventTime" else INT_EDGES
        value: Any = draw(st.sampled_from(edges))
        body[name] = str(value) if draw(st.booleans()) else value
    elif kind == "mutated":
        for name in draw(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=3)):
            choice = draw(st.integers(0, 3))
            if choice == 0:
                body.pop(name, None)
            elif choice == 1:
                body[name] = draw(json_values)
            elif choice == 2:
                body[name] = draw(big_text)
            else:
                body[name] = draw(st.sampled_from(INT_EDGES + TIME_EDGES))
    return command, json.dumps(body).encode()


def valid_event(kind: str, draw: st.DrawFn) -> dict[str, Any]:
    """A record shaped like the contract's (so mutations reach the typed fields)."""
    t = draw(st.integers(min_value=NOW_MS - 20_000, max_value=NOW_MS))
    record: dict[str, Any] = {
        "event_id": draw(st.text(alphabet="0123456789abcdef", min_size=32, max_size=32)),
        "sdkappid": APP,
        "group_id": draw(st.sampled_from(["@TGS#a", "@TGS#b", "@TGS#raw"])),
        "from_account": "mallory",
        "random": draw(st.integers(min_value=0, max_value=2**32 - 1)),
        "event_time_ms": t,
        "received_at_ms": t,
    }
    if kind == "exception":
        record.update(error_code=10023, error_category="rate_limit", msg_types=["TIMTextElem"])
    return record


RAW_FIELDS = [
    "event_id",
    "sdkappid",
    "group_id",
    "error_code",
    "error_category",
    "event_time_ms",
    "received_at_ms",
    "random",
    "msg_types",
    "online_only",
    "extra",
]


@st.composite
def raw_record(draw: st.DrawFn) -> tuple[str, bytes | None, bytes]:
    kind = draw(st.sampled_from(["exception", "exception", "send"]))
    key = draw(
        st.none() | st.sampled_from([b"1400000001:@TGS#a", b"\xff\xfe"]) | st.binary(max_size=20)
    )
    shape = draw(st.sampled_from(["valid", "mutated", "mutated", "edge", "json", "bytes"]))
    if shape == "bytes":
        return kind, key, draw(st.binary(max_size=400))
    if shape == "json":
        return kind, key, json.dumps(draw(json_values)).encode()
    record = valid_event(kind, draw)
    if shape == "edge":
        name = draw(st.sampled_from(["error_code", "event_time_ms", "received_at_ms", "random"]))
        record[name] = draw(st.sampled_from(TIME_EDGES if "time" in name else INT_EDGES))
    elif shape == "mutated":
        for name in draw(st.lists(st.sampled_from(RAW_FIELDS), min_size=1, max_size=3)):
            choice = draw(st.integers(0, 3))
            if choice == 0:
                record.pop(name, None)
            elif choice == 1:
                record[name] = draw(json_values)
            elif choice == 2:
                record[name] = draw(big_text)
            else:
                record[name] = str(record.get(name))
    return kind, key, json.dumps(record).encode()


class Pipeline:
    def __init__(self, settings: Settings, logs: Path) -> None:
        self.settings = settings
        env = settings_env(settings)
        base = "http://127.0.0.1"
        self.ingress_url = f"{base}:{settings.ingest_port}"
        self.stream_url = f"{base}:{settings.stream_web_port}"
        self.sink_url = f"{base}:{settings.query_port}"
        self.stages = [
            StageProcess(
                "ingest", ["ingest"], env, logs / "ingest.log", f"{self.ingress_url}/readyz"
            ),
            StageProcess(
                "stream", ["stream"], env, logs / "stream.log", f"{self.stream_url}/healthz"
            ),
            StageProcess("sink", ["sink"], env, logs / "sink.log", f"{self.sink_url}/healthz"),
        ]

    def start(self) -> None:
        for stage in self.stages:
            stage.start()

    def stop(self) -> None:
        for stage in self.stages:
            stage.stop()

    def assert_alive(self) -> None:
        for stage in self.stages:
            assert stage.alive(), f"{stage.name} exited ({stage.exit_code()}): {stage.log_tail()}"
            assert stage.starts == 1

    def sql(self, sql: str) -> list[list[Any]]:
        resp = requests.post(f"{self.sink_url}/query", json={"sql": sql}, timeout=60)
        assert resp.status_code == 200, resp.text
        rows: list[list[Any]] = resp.json()["rows"]
        return rows


@pytest.fixture(scope="module")
def pipeline(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    from groupwatch.admin.topics import create_topics

    tmp = tmp_path_factory.mktemp("fuzz")
    prefix = f"gwfuzz-{tmp.name[-6:]}-{free_port()}"
    settings = Settings(
        kafka_bootstrap_servers=kafka_bootstrap,
        topic_prefix=prefix,
        state_dir=tmp / "state",
        duckdb_path=tmp / "data" / "gw.duckdb",
        snapshot_path=tmp / "data" / "gw-snapshot.duckdb",
        partitions=3,
        retention_hours=24 * 365 * 10,
        sdkappids=[APP],
        callback_tokens={APP: TOKEN},
        ingest_port=free_port(),
        ingest_workers=2,
        stream_web_port=free_port(),
        query_port=free_port(),
        query_max_rows=1_000_000,
        stream_app_id=f"{prefix}-stream",
        sink_group_id=f"{prefix}-sink",
    )
    create_topics(settings)
    stack = Pipeline(settings, tmp / "logs")
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


Tally = dict[str, Counter[tuple[str, int]]]


@pytest.fixture(scope="module")
def tally() -> Tally:
    return {"answers": Counter()}


def fuzz_callbacks(stack: Pipeline, tally: Tally) -> None:
    session = requests.Session()
    url = f"{stack.ingress_url}/callback"

    @settings(
        max_examples=CALLBACKS,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(cb=callback())
    def post(cb: tuple[str, bytes]) -> None:
        command, body = cb
        now = str(int(time.time()))
        params = {
            "SdkAppid": APP,
            "CallbackCommand": command,
            "contenttype": "json",
            "ClientIP": "10.0.0.7",
            "OptPlatform": "iOS",
            "RequestTime": now,
            "Sign": make_sign(TOKEN, now),
        }
        reply = session.post(url, params=params, data=body, timeout=10)
        assert reply.status_code < 500, reply.text
        tally["answers"][(command, reply.status_code)] += 1

    post()


def fuzz_raw(stack: Pipeline, tally: Tally) -> None:
    topics = Topics.from_settings(stack.settings)
    batch: dict[str, list[tuple[bytes | None, bytes]]] = {"exception": [], "send": []}

    @settings(
        max_examples=RAW, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(rec=raw_record())
    def collect(rec: tuple[str, bytes | None, bytes]) -> None:
        kind, key, value = rec
        batch[kind].append((key, value))

    collect()
    produce(stack.settings.bootstrap_servers, topics.exceptions, batch["exception"])
    produce(stack.settings.bootstrap_servers, topics.sends, batch["send"])
    tally["answers"][("raw-exception", 0)] += len(batch["exception"])
    tally["answers"][("raw-send", 0)] += len(batch["send"])


def wait_until(check: Callable[[], str | None], timeout: float) -> None:
    """Until ``check()`` returns None (it returns what is still missing)."""
    deadline = time.monotonic() + timeout
    missing = check()
    while missing is not None:
        assert time.monotonic() < deadline, missing
        time.sleep(1.0)
        missing = check()


def test_pipeline_survives_any_input(pipeline: Pipeline, tally: Tally) -> None:
    stack, s = pipeline, pipeline.settings
    topics = Topics.from_settings(s)
    fuzz_callbacks(stack, tally)
    stack.assert_alive()
    answers = tally["answers"]
    ok_exc = answers[(CMD_SEND_MSG_EXCEPTION, 200)]
    ok_send = answers[(CMD_AFTER_SEND_MSG, 200)]
    rejected = sum(n for (_, status), n in answers.items() if status >= 400)
    assert ok_exc + ok_send + rejected == CALLBACKS
    assert ok_exc > CALLBACKS // 10 and rejected > CALLBACKS // 10, answers  # both paths taken
    # Every 200 is exactly one record on its topic (nothing else writes them yet).
    wait_until(
        lambda: (
            None
            if (topic_end(s, topics.exceptions), topic_end(s, topics.sends)) == (ok_exc, ok_send)
            else f"topics hold {topic_end(s, topics.exceptions)}/{topic_end(s, topics.sends)},"
            f" answered 200: {ok_exc}/{ok_send}"
        ),
        60,
    )
    ingress_dlq = topic_end(s, topics.dlq)
    assert ingress_dlq > 0

    fuzz_raw(stack, tally)
    total = {
        "exception": ok_exc + answers[("raw-exception", 0)],
        "send": ok_send + answers[("raw-send", 0)],
    }
    assert topic_end(s, topics.exceptions) == total["exception"]
    assert topic_end(s, topics.sends) == total["send"]

    # The stream: every record read is exactly one outcome.
    def stream_identity() -> str | None:
        text = requests.get(f"{stack.stream_url}/metrics", timeout=5).text
        seen = metric_sums(text, "groupwatch_stream_records_total", "kind")
        if dict(seen) != {k: float(v) for k, v in total.items()}:
            return f"stream accounted {dict(seen)} of {total}"
        return None

    wait_until(stream_identity, 240)
    stream_text = requests.get(f"{stack.stream_url}/metrics", timeout=5).text
    outcomes = metric_by(stream_text, "groupwatch_stream_records_total", "kind", "outcome")
    assert set(o for _, o in outcomes) <= {"counted", "duplicate", "late", "rejected", "replayed"}
    assert outcomes[("exception", "counted")] > 0
    stream_rejected = sum(n for (_, o), n in outcomes.items() if o == "rejected")
    assert stream_rejected > 0, outcomes  # the raw phase holds records no stage can apply

    # Each stream reject is a DLQ record with its source offset and exact bytes.
    from tests.support.kafka import consume_all

    wait_until(
        lambda: (
            None
            if topic_end(s, topics.dlq) == ingress_dlq + stream_rejected
            else f"dlq holds {topic_end(s, topics.dlq)}, want {ingress_dlq} + {stream_rejected}"
        ),
        60,
    )
    dlq = [
        decode(m.value(), DlqRecord)
        for m in consume_all(
            s.bootstrap_servers, topics.dlq, expected=int(ingress_dlq + stream_rejected)
        )
    ]
    from_stream = [r for r in dlq if r.stage == "stream"]
    assert len(from_stream) == stream_rejected
    sources = {(r.source_topic, r.source_partition, r.source_offset) for r in from_stream}
    assert len(sources) == len(from_stream)  # each reject once
    for r in from_stream:
        assert r.source_topic in (topics.exceptions, topics.sends) and r.raw_base64 is not None
        base64.b64decode(r.raw_base64)

    # The sink: every record consumed is exactly one outcome, rejects kept in sink_rejects.
    def sink_identity() -> str | None:
        text = requests.get(f"{stack.sink_url}/metrics", timeout=5).text
        by_topic = metric_sums(text, "groupwatch_sink_records_total", "topic")
        want = {"exceptions": total["exception"], "sends": total["send"]}
        got = {k: by_topic.get(k, 0.0) for k in want}
        if got != {k: float(v) for k, v in want.items()}:
            return f"sink accounted {dict(by_topic)}, want at least {want}"
        return None

    wait_until(sink_identity, 240)
    sink_text = requests.get(f"{stack.sink_url}/metrics", timeout=5).text
    sink_out = metric_by(sink_text, "groupwatch_sink_records_total", "topic", "outcome")
    db_rejects = dict(
        (t, n) for t, n in stack.sql("SELECT topic, count(*) FROM sink_rejects GROUP BY topic")
    )
    rejects_by_suffix = {t.rsplit(".", 1)[1]: n for t, n in db_rejects.items()}
    for (topic, outcome), n in sink_out.items():
        if outcome == "rejected":
            assert rejects_by_suffix.get(topic, 0) == n, (topic, n, db_rejects)
    stored_exc = stack.sql("SELECT count(*) FROM exceptions")[0][0]
    assert stored_exc == sink_out[("exceptions", "stored")]
    assert stored_exc > 0
    stack.assert_alive()
    statuses = Counter(status for (_, status), n in answers.items() for _ in range(n))
    print(  # the counts docs/RELIABILITY.md quotes (shown with -s)
        f"\nfuzz: {CALLBACKS} callbacks {dict(sorted(statuses.items()))}, {RAW} raw records;"
        f" stream {dict(sorted(outcomes.items()))}; sink {dict(sorted(sink_out.items()))}"
    )
