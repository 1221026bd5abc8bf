"""The demo app ID and callback token that ``up`` generates on first run and then reuses."""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from groupwatch.contracts import Settings

DEMO_FILE = "demo-app.json"


@dataclass(frozen=True)
class DemoApp:
    sdkappid: str
    token: str
    path: Path
    created: bool


def ensure_demo_app(settings: Settings) -> DemoApp:
    """Load ``<state_dir>/demo-app.json``, creating it (mode 0600) on first run."""
    path = settings.state_dir / DEMO_FILE
    if path.exists():
        data = json.loads(path.read_text(encoding="utf-8"))
        return DemoApp(str(data["sdkappid"]), str(data["token"]), path, created=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    app = DemoApp(f"14{secrets.randbelow(10**8):08d}", secrets.token_urlsafe(24), path, True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump({"sdkappid": app.sdkappid, "token": app.token}, out)
    return app


def stage_environment(settings: Settings, app: DemoApp, base: dict[str, str]) -> dict[str, str]:
    """Environment for the stage processes: the demo app is allowed unless apps are configured.

    The demo app always comes with its token (the ingress fails closed on an allowed app
    without one): it is added to any tokens already configured.
    """
    env = dict(base)
    if not settings.sdkappids:
        env["GROUPWATCH_SDKAPPIDS"] = app.sdkappid
        tokens = {**settings.callback_tokens, app.sdkappid: app.token}
        env["GROUPWATCH_CALLBACK_TOKENS"] = ",".join(f"{a}:{t}" for a, t in tokens.items())
    return env
