"""Callback signing and the query string."""

from __future__ import annotations

import pytest

from groupwatch.simulate.signing import App, callback_query, sign


def test_sign_matches_the_documented_example() -> None:
    assert (
        sign("xxxxyyyy", 1669872112)
        == "17773bc39a671d7b9aa835458704d2a6db81360a5940292b587d6d760d484061"
    )
    assert sign("xxxxyyyy", "1669872112") == sign("xxxxyyyy", 1669872112)
    assert sign("xxxxyyyz", 1669872112) != sign("xxxxyyyy", 1669872112)


def test_signed_query_carries_sign_and_request_time() -> None:
    query = callback_query(
        App("1400000001", "xxxxyyyy"),
        "Group.CallbackSendMsgException",
        client_ip="10.0.0.1",
        platform="iOS",
        request_time=1669872112,
    )
    assert query == {
        "SdkAppid": "1400000001",
        "CallbackCommand": "Group.CallbackSendMsgException",
        "contenttype": "json",
        "ClientIP": "10.0.0.1",
        "OptPlatform": "iOS",
        "RequestTime": "1669872112",
        "Sign": "17773bc39a671d7b9aa835458704d2a6db81360a5940292b587d6d760d484061",
    }


def test_unsigned_app_sends_no_sign() -> None:
    query = callback_query(
        App("1400000002"),
        "Group.CallbackAfterSendMsg",
        client_ip="1.2.3.4",
        platform="Web",
        request_time=5,
    )
    assert "Sign" not in query and "RequestTime" not in query


@pytest.mark.parametrize(
    ("spec", "expected"),
    [("140", App("140")), ("140:tok", App("140", "tok")), (" 140 :a:b", App("140", "a:b"))],
)
def test_app_parse(spec: str, expected: App) -> None:
    assert App.parse(spec) == expected


@pytest.mark.parametrize("spec", ["", ":tok", "140:", "140:" + "x" * 129])
def test_app_parse_rejects_bad_specs(spec: str) -> None:
    with pytest.raises(ValueError, match="--app"):
        App.parse(spec)


def test_sign_rejects_bad_token() -> None:
    with pytest.raises(ValueError, match="1 to 128"):
        sign("", 1)
