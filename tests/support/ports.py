"""A free loopback port (the tests never use the default ports)."""

from __future__ import annotations

import random
import socket
from pathlib import Path


def free_port() -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_port_run(count: int, attempts: int = 200) -> int:
    """The first of ``count`` consecutive free ports (a local cluster's brokers), below the
    kernel's ephemeral range: there, a client's outgoing connection (one node's to another,
    say) can take a port between the check and the node's bind."""
    low = _ephemeral_low()
    for _ in range(attempts):
        first = random.randrange(max(1024, low - 12000), low - count)
        sockets = []
        try:
            for port in range(first, first + count):
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError(f"no run of {count} free ports found")


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768
