"""The C++ JSON path for raw exceptions equals the contract's per-record path, or steps aside."""

from __future__ import annotations

from collections.abc import Callable

import msgspec
import pyarrow as pa
import pytest

from analytics.batch import exceptions_from_json, exceptions_table
from groupwatch.contracts.records import ExceptionEvent, decode, encode
from tests.support import events as f


def contract_table(values: list[bytes]) -> pa.Table | None:
    events = []
    for value in values:
        try:
            events.append(decode(value, ExceptionEvent))
        except (msgspec.ValidationError, msgspec.DecodeError):
            return None
    return exceptions_table(events)


def values() -> list[bytes]:
    # random % 7 != 0: no extra (the factory adds one to every seventh record)
    return [
        encode(f.exception("1", f"g{i % 3}", f"u{i}", 7 * i + 1, f.BASE_MS + i)) for i in range(20)
    ]


def test_a_clean_batch_takes_the_json_path_and_equals_the_contract_path() -> None:
    vals = values()
    fast = exceptions_from_json(vals)
    assert fast is not None
    assert fast.schema.equals(contract_table(vals).schema)
    assert fast.to_pylist() == contract_table(vals).to_pylist()


MUTATIONS: dict[str, Callable[[bytes], bytes]] = {
    "string field as number": lambda v: v.replace(b'"sdkappid":"1"', b'"sdkappid":1'),
    "non-empty extra": lambda v: v.replace(b'"extra":{}', b'"extra":{"a":1.5}'),
    "null extra": lambda v: v.replace(b'"extra":{}', b'"extra":null'),
    "message body kept": lambda v: v.replace(b'"msg_body":null', b'"msg_body":[{"a":1}]'),
    "null in msg_types": lambda v: v.replace(b'"msg_types":[', b'"msg_types":[null,'),
    "unknown category": lambda v: v.replace(b'"error_category":"', b'"error_category":"x'),
    "float for an int": lambda v: v.replace(b'"random":', b'"random":0.5,"r":'),
    "two records in one value": lambda v: v + v,
    "two lines in one value": lambda v: v + b"\n" + v,
    "empty value": lambda v: b"",
    "blank value": lambda v: b" \t ",
    "byte order mark": lambda v: b"\xef\xbb\xbf" + v,
    "truncated": lambda v: v[:-1],
    "unknown top-level field": lambda v: v.replace(b'{"event_id"', b'{"zz":1,"event_id"'),
    "null optional field": lambda v: v.replace(b'"platform":"Android"', b'"platform":null'),
    "escapes in a string": lambda v: v.replace(
        b'"platform":"Android"', b'"platform":"i\\u00e9\\n\\"'
    ),
}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
@pytest.mark.parametrize("position", [0, 10, 19])
def test_any_value_the_json_path_does_not_take_exactly_falls_back(
    mutation: str, position: int
) -> None:
    vals = values()
    vals[position] = MUTATIONS[mutation](vals[position])
    fast, reference = exceptions_from_json(vals), contract_table(vals)
    if fast is not None:  # taken only when it equals the contract's result
        assert reference is not None
        assert fast.to_pylist() == reference.to_pylist()
    if reference is None:  # a record the contract rejects is never taken
        assert fast is None
