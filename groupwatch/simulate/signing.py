"""Callback authentication and the query string the Chat backend sends with every callback."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


def sign(token: str, request_time: int | str) -> str:
    """``Sign`` = lower-case hex SHA-256 of the token and the RequestTime string, concatenated."""
    if not 1 <= len(token) <= 128:
        raise ValueError("a callback token is 1 to 128 characters long")
    return hashlib.sha256(f"{token}{request_time}".encode()).hexdigest()


@dataclass(frozen=True)
class App:
    """One simulated app: its SDKAppID and, when authentication is on, its callback token."""

    sdkappid: str
    token: str | None = None

    @classmethod
    def parse(cls, spec: str) -> App:
        """``"appid"`` or ``"appid:token"`` (the form of ``--app``)."""
        appid, sep, token = spec.partition(":")
        appid = appid.strip()
        if not appid:
            raise ValueError(f"--app {spec!r}: the SdkAppid is empty (use appid or appid:token)")
        if sep and not 1 <= len(token) <= 128:
            raise ValueError(f"--app {appid}: a callback token is 1 to 128 characters long")
        return cls(appid, token if sep else None)


def callback_query(
    app: App,
    command: str,
    *,
    client_ip: str,
    platform: str,
    request_time: int,
) -> dict[str, str]:
    """The query parameters of one callback; ``Sign``/``RequestTime`` only when signed."""
    query = {
        "SdkAppid": app.sdkappid,
        "CallbackCommand": command,
        "contenttype": "json",
        "ClientIP": client_ip,
        "OptPlatform": platform,
    }
    if app.token is not None:
        query["RequestTime"] = str(request_time)
        query["Sign"] = sign(app.token, request_time)
    return query
