"""A free loopback port (the tests never use the default ports)."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
