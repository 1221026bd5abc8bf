"""The wire contracts: settings parsing, catalog, keys, record codecs and schema files."""

from __future__ import annotations

import json

import msgspec
import orjson
import pytest
from pydantic import ValidationError

from groupwatch.contracts import (
    ExceptionEvent,
    FailureWindow,
    SendEvent,
    Settings,
    Topics,
    decode,
    encode,
    error_category,
    iso_utc,
    make_event_id,
    topic_specs,
    window_key,
)
from groupwatch.contracts.schema_files import SCHEMA_DIR, stale_files


def test_schema_files_match_the_models() -> None:
    assert stale_files() == []


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GROUPWATCH_SDKAPPIDS", " 1400000001, 1400000002 ,")
    monkeypatch.setenv("GROUPWATCH_CALLBACK_TOKENS", "1400000001:s3cret:with:colons")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "k1:9092,k2:9092")
    monkeypatch.setenv("GROUPWATCH_WINDOW_SECONDS", "120")
    s = Settings()
    assert s.sdkappids == ["1400000001", "1400000002"]
    assert s.callback_tokens == {"1400000001": "s3cret:with:colons"}
    assert s.bootstrap_servers == "k1:9092,k2:9092" and s.uses_external_kafka
    assert s.window_seconds == 120
    assert "s3cret" not in repr(s)


def test_local_bootstrap_and_derived_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    s = Settings(kafka_port=19999, state_dir="/var/gw")  # type: ignore[arg-type]
    assert s.bootstrap_servers == "127.0.0.1:19999" and not s.uses_external_kafka
    assert str(s.kafka_dir) == "/var/gw/kafka" and str(s.spool_path) == "/var/gw/spool"


@pytest.mark.parametrize("raw", ["1400", "1400:", ":tok", "1400:" + "x" * 129])
def test_bad_token_settings_are_rejected(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("GROUPWATCH_CALLBACK_TOKENS", raw)
    with pytest.raises(ValidationError, match="callback_tokens"):
        Settings()


def test_bad_number_setting_names_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GROUPWATCH_PARTITIONS", "zero")
    with pytest.raises(ValidationError, match="partitions"):
        Settings()


@pytest.mark.parametrize(
    ("code", "category"),
    [
        (10002, "internal"),
        (10004, "invalid_param"),
        (10010, "invalid_param"),
        (10006, "rate_limited"),
        (10023, "rate_limited"),
        (10007, "permission"),
        (10016, "rejected_by_app"),
        (10017, "muted"),
        (80001, "content_filtered"),
        (80004, "content_filtered"),
        (12345, "other"),
        (0, "other"),
    ],
)
def test_error_categories(code: int, category: str) -> None:
    assert error_category(code) == category


def test_event_id_is_deterministic_and_distinguishes_fields() -> None:
    a = make_event_id("1400", "@TGS#1", "jared", 123456, 1)
    assert a == make_event_id("1400", "@TGS#1", "jared", 123456, 999)  # time ignored
    assert (
        len(
            {
                a,
                make_event_id("1400", "@TGS#1", "jared", 123457, 1),
                make_event_id("1400", "@TGS#2", "jared", 123456, 1),
                make_event_id("1401", "@TGS#1", "jared", 123456, 1),
                make_event_id("1400", "@TGS#1", "kate", 123456, 1),
            }
        )
        == 5
    )
    # no Random: event time stands in, so two such messages are not merged
    assert make_event_id("1400", "g", "u", None, 1) != make_event_id("1400", "g", "u", None, 2)


def test_keys_and_time_format() -> None:
    assert window_key("1400", "@TGS#1", 10023, 1670574360000) == "1400:@TGS#1:10023:1670574360000"
    assert iso_utc(1670574414123) == "2022-12-09T08:26:54.123Z"


def test_topic_names_and_compaction() -> None:
    s = Settings(topic_prefix="acme", partitions=4)
    t = Topics.from_settings(s)
    assert t.exceptions == "acme.exceptions" and t.failure_windows == "acme.failure-windows"
    specs = {spec.name: spec for spec in topic_specs(s)}
    assert set(specs) == {
        "acme.exceptions",
        "acme.sends",
        "acme.dlq",
        "acme.failure-windows",
        "acme.late-events",
        "acme.alerts",
        "acme.notify-failures",
    }
    assert all(spec.partitions == 4 for spec in specs.values())
    assert specs["acme.failure-windows"].config["cleanup.policy"] == "compact,delete"
    assert specs["acme.exceptions"].config["cleanup.policy"] == "delete"


def test_record_round_trip_and_validation_names_field() -> None:
    event = ExceptionEvent(
        event_id="e1",
        sdkappid="1400",
        group_id="g",
        error_code=10023,
        error_category="rate_limited",
        event_time_ms=1_700_000_000_000,
        received_at_ms=1_700_000_000_002,
        extra={"Custom": [1, 2]},
    )
    assert decode(encode(event), ExceptionEvent) == event
    with pytest.raises(msgspec.ValidationError, match="error_code"):
        decode(
            b'{"event_id":"e","sdkappid":"1","group_id":"g","error_code":"x",'
            b'"error_category":"other","event_time_ms":1,"received_at_ms":1}',
            ExceptionEvent,
        )
    with pytest.raises(msgspec.ValidationError, match="missing required field `sdkappid`"):
        decode(b"{}", FailureWindow)


EVENT = {
    "event_id": "e1",
    "sdkappid": "1400000001",
    "group_id": "g",
    "error_code": 10023,
    "error_category": "rate_limited",
    "event_time_ms": 1_700_000_000_000,
    "received_at_ms": 1_700_000_000_000,
}
SEND = {k: v for k, v in EVENT.items() if k not in ("error_code", "error_category")}


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("error_code", 2**31),
        ("error_code", -(2**31) - 1),
        ("error_code", 2**40),
        ("random", 2**32),
        ("random", -1),
        ("event_time_ms", 946_684_800_000 - 1),
        ("event_time_ms", 4_102_444_800_000 + 1),
        ("event_time_ms", -5),
        ("received_at_ms", 95_617_584_000_000),
        ("event_id", ""),
        ("event_id", "e" * 65),
        ("sdkappid", ""),
        ("group_id", ""),
        ("group_id", "g" * 129),
        ("from_account", "a" * 129),
        ("error_info", "e" * 1025),
        ("msg_types", ["T"] * 257),
        ("msg_types", ["T" * 65]),
        ("msg_body", [{}] * 257),
        ("client_ip", "1" * 65),
    ],
)
def test_event_records_out_of_range_are_refused_by_decode(field: str, bad: object) -> None:
    """The stream and sink decode with these types: an out-of-range record is a reject."""
    with pytest.raises(msgspec.ValidationError, match=field):
        decode(orjson.dumps({**EVENT, field: bad}), ExceptionEvent)


@pytest.mark.parametrize(
    ("field", "bad"), [("msg_seq", 2**32), ("random", -1), ("event_time_ms", 0)]
)
def test_send_records_out_of_range_are_refused_by_decode(field: str, bad: object) -> None:
    with pytest.raises(msgspec.ValidationError, match=field):
        decode(orjson.dumps({**SEND, field: bad}), SendEvent)


def test_event_records_at_the_bounds_decode() -> None:
    event = {
        **EVENT,
        "error_code": -(2**31),
        "random": 2**32 - 1,
        "event_time_ms": 946_684_800_000,
        "received_at_ms": 4_102_444_800_000,
        "group_id": "g" * 128,
        "msg_types": ["T" * 64] * 256,
    }
    assert decode(orjson.dumps(event), ExceptionEvent).error_code == -(2**31)
    assert decode(orjson.dumps({**SEND, "msg_seq": 2**32 - 1}), SendEvent).msg_seq == 2**32 - 1


def test_schema_files_state_the_field_ranges() -> None:
    """The checked-in JSON Schemas carry the same bounds as the record types."""
    exceptions = json.loads((SCHEMA_DIR / "exceptions.schema.json").read_text())
    props = exceptions["$defs"]["ExceptionEvent"]["properties"]
    assert props["error_code"] == {
        "type": "integer",
        "minimum": -(2**31),
        "maximum": 2**31 - 1,
    }
    assert props["event_time_ms"] == {
        "type": "integer",
        "minimum": 946_684_800_000,
        "maximum": 4_102_444_800_000,
    }
    assert props["received_at_ms"] == props["event_time_ms"]
    assert {"type": "integer", "minimum": 0, "maximum": 2**32 - 1} in props["random"]["anyOf"]
    assert props["group_id"] == {"type": "string", "minLength": 1, "maxLength": 128}
    assert {"type": "string", "maxLength": 128} in props["from_account"]["anyOf"]
    assert {"type": "string", "maxLength": 1024} in props["error_info"]["anyOf"]
    assert props["msg_types"]["maxItems"] == 256
    assert props["msg_types"]["items"] == {"type": "string", "maxLength": 64}
    assert props["event_id"] == {"type": "string", "minLength": 1, "maxLength": 64}
    sends = json.loads((SCHEMA_DIR / "sends.schema.json").read_text())
    send_props = sends["$defs"]["SendEvent"]["properties"]
    assert {"type": "integer", "minimum": 0, "maximum": 2**32 - 1} in send_props["msg_seq"]["anyOf"]
    assert send_props["event_time_ms"] == props["event_time_ms"]


def test_unsigned_apps_and_appid_length_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GROUPWATCH_UNSIGNED_SDKAPPIDS", " 1400000002 ,")
    assert Settings().unsigned_sdkappids == ["1400000002"]
    with pytest.raises(ValidationError, match="at most 64 characters"):
        Settings(sdkappids=["1" * 65])
