"""Property-based fuzz of query strings, headers and bodies: never a 5xx, never a crash."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from groupwatch.contracts import CMD_AFTER_SEND_MSG, CMD_SEND_MSG_EXCEPTION
from tests.support.callbacks import APPID, SIGNED_APPID, SPEC_SAMPLE

pytestmark = pytest.mark.kafka

EXAMPLES = int(os.environ.get("GROUPWATCH_FUZZ_EXAMPLES", "2500"))

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
field_values = (
    json_values
    | st.integers(min_value=0, max_value=2**64 - 1)
    | st.from_regex(r"-?[0-9]{1,22}", fullmatch=True)
)


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["mutated", "json", "raw", "sample"]))
    if kind == "raw":
        return draw(st.binary(max_size=300))
    if kind == "json":
        return json.dumps(draw(json_values)).encode()
    body: dict[str, Any] = dict(SPEC_SAMPLE)
    if kind == "mutated":
        for name in draw(st.lists(st.sampled_from([*SPEC_SAMPLE, "MsgSeq", "X"]), max_size=4)):
            if draw(st.booleans()):
                body.pop(name, None)
            else:
                body[name] = draw(field_values)
    return json.dumps(body).encode()  # big ints and Infinity included


query_keys = st.sampled_from(
    ["SdkAppid", "CallbackCommand", "contenttype", "ClientIP", "OptPlatform", "Sign", "RequestTime"]
) | st.text(min_size=1, max_size=10)
query_values = st.sampled_from(
    [
        APPID,
        SIGNED_APPID,
        CMD_SEND_MSG_EXCEPTION,
        CMD_AFTER_SEND_MSG,
        "Group.CallbackBeforeSendMsg",
        "",
    ]
) | st.text(max_size=20)


@st.composite
def queries(draw: st.DrawFn) -> dict[str, str]:
    params = {"SdkAppid": APPID, "CallbackCommand": draw(query_values)}
    if draw(st.booleans()):
        params.update(draw(st.dictionaries(query_keys, query_values, max_size=5)))
    return params


header_text = st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=30
)
headers = st.dictionaries(
    st.sampled_from(["Content-Type", "X-Forwarded-For", "Content-Encoding", "Accept", "X-A"]),
    header_text,
    max_size=3,
)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    method=st.sampled_from(["POST"] * 8 + ["GET", "PUT", "DELETE", "PATCH"]),
    path=st.sampled_from(["/callback", "/callback", "/", "/callback/", "/x"]),
    params=queries(),
    body=bodies(),
    extra_headers=headers,
)
def test_fuzzed_requests_never_5xx(
    client: FlaskClient,
    method: str,
    path: str,
    params: dict[str, str],
    body: bytes,
    extra_headers: dict[str, str],
) -> None:
    reply = client.open(path, method=method, query_string=params, data=body, headers=extra_headers)
    assert reply.status_code < 500, reply.get_data()
    payload = reply.get_json(force=True)
    if reply.status_code == 200:
        assert payload == {"ActionStatus": "OK", "ErrorInfo": "", "ErrorCode": 0}
    else:
        assert payload["ActionStatus"] == "FAIL" and payload["ErrorCode"] == reply.status_code
        assert payload["ErrorInfo"]
