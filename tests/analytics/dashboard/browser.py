"""The dashboard as a real process and headless Debian Chromium driven by Playwright.

Chromium is the system's (``/usr/bin/chromium``, Debian's package, installed by
``.ci/run``); Playwright never downloads a browser here.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from playwright.sync_api import Browser, sync_playwright

from groupwatch.contracts import Settings
from tests.support.processes import StageProcess, settings_env

CHROMIUM = Path(os.environ.get("GROUPWATCH_CHROMIUM", "/usr/bin/chromium"))


class DashboardProcess(StageProcess):
    """``groupwatch dashboard`` with these settings; ``/healthz`` is its health URL."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.url = f"http://{settings.dashboard_host}:{settings.dashboard_port}"
        env = settings_env(settings)
        super().__init__("dashboard", ["dashboard"], env, log_path, f"{self.url}/healthz")


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        raise RuntimeError(f"no Chromium at {CHROMIUM}: apt-get install chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()
