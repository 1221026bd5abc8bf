"""Unit tests of the allow-list and the callback signature."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from click.testing import CliRunner

from groupwatch.cli import cli
from groupwatch.contracts import Settings
from ingest.auth import AuthConfigError, Authenticator, check_auth_settings, make_sign
from ingest.errors import Rejected

NOW = 1669872112


def auth(skew: int = 60, unsigned: tuple[str, ...] = ("1",)) -> Authenticator:
    return Authenticator(
        ["1", "2", "4"], {"2": "xxxxyyyy"}, skew, clock=lambda: float(NOW), unsigned=unsigned
    )


def test_sign_matches_the_documented_example() -> None:
    assert (
        make_sign("xxxxyyyy", "1669872112")
        == "17773bc39a671d7b9aa835458704d2a6db81360a5940292b587d6d760d484061"
    )


def test_opted_in_app_without_token_needs_no_sign() -> None:
    auth().check("1", None, None)


@pytest.mark.parametrize("unsigned", [(), ("1",)])
def test_allowed_app_without_token_and_not_opted_in_is_401(unsigned: tuple[str, ...]) -> None:
    with pytest.raises(Rejected) as exc:
        auth(unsigned=unsigned).check("4", None, None)
    assert exc.value.status == 401 and exc.value.field == "Sign"
    assert "token" in exc.value.reason


def test_opting_in_an_app_with_a_token_does_not_skip_its_sign() -> None:
    with pytest.raises(Rejected) as exc:
        auth(unsigned=("1", "2")).check("2", None, str(NOW))
    assert exc.value.status == 401 and exc.value.field == "Sign"
    auth(unsigned=("1", "2")).check("2", make_sign("xxxxyyyy", str(NOW)), str(NOW))


def test_startup_check_names_the_apps_without_a_token() -> None:
    settings = Settings(sdkappids=["1", "2", "3"], callback_tokens={"2": "t"})
    with pytest.raises(AuthConfigError) as exc:
        check_auth_settings(settings)
    message = str(exc.value)
    assert "SdkAppid 1, 3 " in message and "GROUPWATCH_UNSIGNED_SDKAPPIDS=1,3" in message
    assert message.count(". ") == 0 and message.endswith(".")  # one sentence
    assert check_auth_settings(settings.model_copy(update={"unsigned_sdkappids": ["1", "3"]})) == [
        "1",
        "3",
    ]
    signed = Settings(sdkappids=["2"], callback_tokens={"2": "t"}, unsigned_sdkappids=["2"])
    assert check_auth_settings(signed) == []  # has a token: signed all the same


def _ingest(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> tuple[Any, list[Any]]:
    """Run ``groupwatch ingest`` with ``env`` (``serve`` replaced: no server is started)."""
    import ingest.server

    served: list[Any] = []
    monkeypatch.setattr(ingest.server, "serve", lambda settings, **kw: served.append(settings))
    for name in ("GROUPWATCH_SDKAPPIDS", "GROUPWATCH_CALLBACK_TOKENS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("GROUPWATCH_UNSIGNED_SDKAPPIDS", raising=False)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        result = CliRunner().invoke(cli, ["ingest"], env=env)
    finally:
        root.handlers[:], root.level = handlers, level
    return result, served


def test_ingest_refuses_to_start_with_an_app_without_a_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    result, served = _ingest(
        {
            "GROUPWATCH_SDKAPPIDS": "1400000001,1400000002",
            "GROUPWATCH_CALLBACK_TOKENS": "1400000001:tok",
        },
        monkeypatch,
    )
    assert result.exit_code == 1 and served == []
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("Error: SdkAppid 1400000002 is allowed")
    assert "GROUPWATCH_UNSIGNED_SDKAPPIDS" in line


def test_ingest_starts_with_the_opt_in_and_warns_once(monkeypatch: pytest.MonkeyPatch) -> None:
    result, served = _ingest(
        {
            "GROUPWATCH_SDKAPPIDS": "1400000001,1400000002",
            "GROUPWATCH_CALLBACK_TOKENS": "1400000001:tok",
            "GROUPWATCH_UNSIGNED_SDKAPPIDS": "1400000002",
        },
        monkeypatch,
    )
    assert result.exit_code == 0, result.output
    assert [s.unsigned_sdkappids for s in served] == [["1400000002"]]
    warnings = [json.loads(line) for line in result.stderr.splitlines() if "WITHOUT" in line]
    assert len(warnings) == 1 and warnings[0]["level"] == "warning"
    assert warnings[0]["unsigned_sdkappids"] == ["1400000002"]


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


def test_compose_requires_tokens_and_its_proof_script_passes_the_ingress_check() -> None:
    """docker-compose.yml fails without tokens; compose-e2e.sh's defaults start the ingress."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    compose = (root / "docker-compose.yml").read_text()
    for name in ("GROUPWATCH_SDKAPPIDS", "GROUPWATCH_CALLBACK_TOKENS"):
        assert re.search(rf"^\s+{name}: \$\{{{name}:\?[^}}]+\}}$", compose, re.M), name
    assert "GROUPWATCH_UNSIGNED_SDKAPPIDS: ${GROUPWATCH_UNSIGNED_SDKAPPIDS:-}" in compose
    script = (root / "docker" / "compose-e2e.sh").read_text()
    defaults = dict(re.findall(r'^export (GROUPWATCH_\w+)="\$\{\1:?-([^}]*)\}"$', script, re.M))
    tokens = defaults["GROUPWATCH_CALLBACK_TOKENS"].replace("$RANDOM", "7")
    settings = Settings(
        sdkappids=defaults["GROUPWATCH_SDKAPPIDS"],
        callback_tokens=tokens,
        unsigned_sdkappids=defaults["GROUPWATCH_UNSIGNED_SDKAPPIDS"],
    )
    assert check_auth_settings(settings) == ["1400000002"]
