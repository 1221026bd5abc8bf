"""The processes benches start: a clean environment and the ingress under granian."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def clean_env() -> dict[str, str]:
    """This process's environment without any groupwatch setting or metrics dir, so a
    bench's subjects get exactly the settings the bench gives them."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("GROUPWATCH_") and k != "PROMETHEUS_MULTIPROC_DIR"
    }


def granian_argv(port: int, app: str, working_dir: Path | None = None) -> list[str]:
    """The ingress (or another WSGI ``module:attr``) under granian as production runs it:
    2 workers x 32 blocking threads on loopback."""
    argv = [
        str(Path(sys.executable).with_name("granian")),
        "--interface",
        "wsgi",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "2",
        "--blocking-threads",
        "32",
    ]
    if working_dir is not None:
        argv += ["--working-dir", str(working_dir)]
    return [*argv, app]
