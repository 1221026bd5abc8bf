"""Unit tests of the allow-list and the callback signature."""

from __future__ import annotations

import pytest

from ingest.auth import Authenticator, make_sign
from ingest.errors import Rejected

NOW = 1669872112


def auth(skew: int = 60) -> Authenticator:
    return Authenticator(["1", "2"], {"2": "xxxxyyyy"}, skew, clock=lambda: float(NOW))


def test_sign_matches_the_documented_example() -> None:
    assert (
        make_sign("xxxxyyyy", "1669872112")
        == "17773bc39a671d7b9aa835458704d2a6db81360a5940292b587d6d760d484061"
    )


def test_allowed_app_without_token_needs_no_sign() -> None:
    auth().check("1", None, None)


def test_unknown_app_is_403() -> None:
    with pytest.raises(Rejected) as exc:
        auth().check("3", None, None)
    assert exc.value.status == 403 and exc.value.field == "SdkAppid"


@pytest.mark.parametrize(
    ("sign", "request_time", "field"),
    [
        (None, str(NOW), "Sign"),
        ("", str(NOW), "Sign"),
        (make_sign("xxxxyyyy", str(NOW)), None, "RequestTime"),
        (make_sign("xxxxyyyy", str(NOW)), "soon", "RequestTime"),
        (make_sign("wrong", str(NOW)), str(NOW), "Sign"),
        (make_sign("xxxxyyyy", str(NOW)).upper(), str(NOW), "Sign"),
        (make_sign("xxxxyyyy", str(NOW - 61)), str(NOW - 61), "RequestTime"),
        (make_sign("xxxxyyyy", str(NOW + 61)), str(NOW + 61), "RequestTime"),
        ("\u00e9" * 64, str(NOW), "Sign"),
    ],
)
def test_bad_signatures_are_401_naming_the_field(
    sign: str | None, request_time: str | None, field: str
) -> None:
    with pytest.raises(Rejected) as exc:
        auth().check("2", sign, request_time)
    assert exc.value.status == 401
    assert exc.value.field == field
    assert "xxxxyyyy" not in exc.value.reason


@pytest.mark.parametrize("offset", [-60, 0, 60])
def test_valid_signature_within_skew_passes(offset: int) -> None:
    t = str(NOW + offset)
    auth().check("2", make_sign("xxxxyyyy", t), t)


def test_skew_is_configurable() -> None:
    t = str(NOW - 30)
    with pytest.raises(Rejected):
        auth(skew=10).check("2", make_sign("xxxxyyyy", t), t)
