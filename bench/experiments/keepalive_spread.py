"""How persistent connections spread over the server's worker processes.

Opens N keep-alive connections one after another (as a client pool grows), asks each
which worker serves it (GET /pid on the bare app), and prints the per-worker counts.

    python -m bench.experiments.keepalive_spread http://127.0.0.1:PORT [N]
"""

from __future__ import annotations

import http.client
import sys
import time
from collections import Counter
from urllib.parse import urlparse


def spread(url: str, n: int, gap_s: float = 0.05) -> Counter[str]:
    parsed = urlparse(url)
    if not parsed.hostname:
        raise ValueError(f"not an http URL: {url!r}")
    conns = []
    owners: Counter[str] = Counter()
    for _ in range(n):
        conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=5)
        conn.request("GET", "/pid")
        owners[conn.getresponse().read().decode()] += 1
        conns.append(conn)
        time.sleep(gap_s)
    # the same connections again: keep-alive keeps each on its worker
    for conn in conns:
        conn.request("GET", "/pid")
        conn.getresponse().read()
        conn.close()
    return owners


if __name__ == "__main__":
    target = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 16
    result = spread(target, count)
    print(dict(result), "max share", round(max(result.values()) / count, 2))
