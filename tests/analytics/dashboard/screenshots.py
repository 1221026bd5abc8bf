"""``make screenshots``: a PNG of every dashboard page into docs/, in headless Chromium.

    python -m tests.analytics.dashboard.screenshots docs

Serves the dashboard in this process over a demo snapshot (``database.demo``).
"""

from __future__ import annotations

import sys
import tempfile
import threading
from pathlib import Path

from werkzeug.serving import make_server

from analytics.dashboard.app import create_app
from groupwatch.contracts import Settings
from tests.analytics.dashboard.browser import chromium
from tests.analytics.dashboard.database import APP, demo

PAGES = {
    "overview": f"/?app={APP}&range=1h",
    "overview-dark": f"/?app={APP}&range=1h",
    "group": f"/group/%40TGS%23demo3?app={APP}&range=1h",
    "code": f"/code/10006?app={APP}&range=1h",
    "alerts": f"/alerts?app={APP}&range=1h",
    "not-found": f"/group/%40TGS%23nosuch?app={APP}&range=1h",
}


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        snapshot = Path(tmp) / "snapshot.duckdb"
        demo(snapshot)
        app = create_app(Settings(snapshot_path=snapshot, duckdb_path=Path(tmp) / "none"))
        server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{server.server_port}"
        try:
            with chromium() as browser:
                for name, path in PAGES.items():
                    scheme = "dark" if name.endswith("-dark") else "light"
                    page = browser.new_page(
                        viewport={"width": 1280, "height": 900}, color_scheme=scheme
                    )
                    page.goto(base + path)
                    if name != "not-found":
                        page.wait_for_selector("body[data-loaded]")
                    target = out / f"dashboard-{name}.png"
                    page.screenshot(path=str(target), full_page=True)
                    page.close()
                    print(f"wrote {target}")
        finally:
            server.shutdown()
            app.extensions["groupwatch_source"].close()


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs"))
