"""The simulator's Python API on a thread, as the fault suites drive it: paced, retrying
what was not answered 200 (as the Chat backend re-delivers), writing one ledger."""

from __future__ import annotations

import threading
import time
from typing import Any

from groupwatch.simulate.generator import Generator, SimConfig
from groupwatch.simulate.ledger import Ledger
from groupwatch.simulate.sender import Sender, SendOptions
from groupwatch.simulate.signing import App


class Load:
    """Callbacks at ``rate`` per second to ``url``; event time runs at wall-clock speed."""

    def __init__(
        self,
        url: str,
        apps: tuple[App, ...],
        *,
        rate: float,
        window_s: int,
        grace_s: int,
        retry_for_s: float,
        seed: int = 11,
        storm_start: int = 2000,
    ) -> None:
        self.config = SimConfig(
            apps=apps,
            event_time_start_ms=int(time.time() * 1000),
            step_ms=1000.0 / rate,
            seed=seed,
            groups=60,
            window_seconds=window_s,
            grace_seconds=grace_s,
            dup_rate=0.03,
            late_rate=0.01,
            storm_start=storm_start,
            storm_length=600,
        )
        self.generator = Generator(self.config)
        self.ledger = Ledger(window_s, grace_s)
        options = SendOptions(
            url=f"{url}/callback",
            connections=4,
            rate=rate,
            timeout_s=5.0,
            retry_for_s=retry_for_s,
        )
        self.sender = Sender(options, self.ledger)
        self.stopping = threading.Event()
        self.sent = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.sent = self.sender.run(self.generator, stop=self.stopping)

    def start(self) -> None:
        self.thread.start()

    def finish(self) -> dict[str, Any]:
        """Stop the load, then close every window of the run with the flush events."""
        self.stopping.set()
        self.thread.join(120)
        assert not self.thread.is_alive(), "the load did not stop"
        flush = self.generator.flush_events()
        self.sender.run(flush)
        self.sent += len(flush)
        return self.ledger.to_dict()

    def reply_stats(self) -> dict[str, float]:
        """Max and p99 of the ingress's reply times so far (seconds)."""
        times = sorted(self.sender.reply_seconds)
        if not times:
            return {"replies": 0, "max_s": 0.0, "p99_s": 0.0}
        p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
        return {"replies": len(times), "max_s": round(times[-1], 3), "p99_s": round(p99, 3)}
