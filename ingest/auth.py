"""Who may call: the SdkAppid allow-list and the per-app callback signature.

Sign = lower-hex sha256(token + RequestTime), compared in constant time, with
|now - RequestTime| bounded (replay protection). Tokens never leave this module.

Fail closed: an allowed app is accepted without a Sign only when it is listed in
``GROUPWATCH_UNSIGNED_SDKAPPIDS`` and has no token. ``check_auth_settings`` refuses a
configuration with an allowed app that has neither (``groupwatch ingest`` then does not
start); ``Authenticator`` answers such an app 401 anyway, should it be built regardless.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Callable, Mapping

from groupwatch.contracts import Settings
from ingest.errors import Rejected

_DIGITS = re.compile(r"[0-9]{1,12}")


class AuthConfigError(Exception):
    """Allowed apps without a callback token that are not opted in to unsigned callbacks."""


def unsigned_apps(settings: Settings) -> list[str]:
    """Allowed apps accepted without a Sign check: opted in and without a token."""
    opted_in = set(settings.unsigned_sdkappids)
    return [
        app for app in settings.sdkappids if app in opted_in and app not in settings.callback_tokens
    ]


def check_auth_settings(settings: Settings) -> list[str]:
    """Raise ``AuthConfigError`` (one sentence naming the apps) or return the unsigned apps."""
    problem = settings.token_problem()
    if problem is not None:
        raise AuthConfigError(problem)
    return unsigned_apps(settings)


def make_sign(token: str, request_time: str) -> str:
    """The Sign the Chat backend sends: hex(sha256(token + RequestTime))."""
    return hashlib.sha256((token + request_time).encode("utf-8")).hexdigest()


class Authenticator:
    """Checks ``SdkAppid``, ``Sign`` and ``RequestTime`` of one request."""

    def __init__(
        self,
        allowed: list[str],
        tokens: Mapping[str, str],
        max_skew_seconds: int,
        clock: Callable[[], float] = time.time,
        unsigned: list[str] | tuple[str, ...] = (),
    ) -> None:
        self._allowed = frozenset(allowed)
        self._tokens = dict(tokens)
        # Only apps explicitly opted in skip the Sign check, and only without a token.
        self._unsigned = frozenset(a for a in unsigned if a not in self._tokens)
        self._max_skew = max_skew_seconds
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: Settings) -> Authenticator:
        return cls(
            settings.sdkappids,
            settings.callback_tokens,
            settings.sign_max_skew_seconds,
            unsigned=settings.unsigned_sdkappids,
        )

    def check(self, sdkappid: str, sign: str | None, request_time: str | None) -> None:
        """Raise ``Rejected`` (403 unknown app, 401 bad/missing signature) or return."""
        if sdkappid not in self._allowed:
            raise Rejected(403, "SdkAppid is not allowed", field="SdkAppid")
        token = self._tokens.get(sdkappid)
        if token is None:
            if sdkappid in self._unsigned:
                return
            raise Rejected(401, "no callback token is configured for this SdkAppid", field="Sign")
        if not sign:
            raise Rejected(401, "Sign is required for this SdkAppid", field="Sign")
        if not request_time or not _DIGITS.fullmatch(request_time):
            raise Rejected(401, "RequestTime is required as Unix seconds", field="RequestTime")
        if abs(self._clock() - int(request_time)) > self._max_skew:
            raise Rejected(401, "RequestTime is outside the allowed skew", field="RequestTime")
        expected = make_sign(token, request_time)
        if not hmac.compare_digest(expected.encode("ascii"), sign.encode("utf-8", "replace")):
            raise Rejected(401, "Sign does not match", field="Sign")
