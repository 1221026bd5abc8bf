"""HTTP delivery of the plan: keep-alive sessions on several threads, paced to a rate."""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import requests
from requests.adapters import HTTPAdapter

from groupwatch.simulate.generator import Planned
from groupwatch.simulate.ledger import Ledger
from groupwatch.simulate.signing import callback_query

_STOP = object()


@dataclass(frozen=True)
class SendOptions:
    url: str
    connections: int = 4
    rate: float = 0.0  # callbacks per second; 0 = as fast as the receiver answers
    timeout_s: float = 5.0
    # Re-deliver a callback not answered 200 for up to this long (0 = never), as the Chat
    # backend does with "retry on timeout" switched on; a re-delivery has the same event_id.
    retry_for_s: float = 0.0
    retry_wait_s: float = 0.25
    slow_s: float = 2.0  # answers slower than this (the Chat backend's timeout) are counted

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"--url {self.url!r}: give an http:// or https:// URL")
        if self.connections < 1:
            raise ValueError("--connections must be at least 1")
        if self.rate < 0:
            raise ValueError("--rate must be >= 0")
        if self.retry_for_s < 0 or self.retry_wait_s <= 0:
            raise ValueError("--retry-for must be >= 0 (and the wait between tries > 0)")


def _closed_without_response(exc: requests.RequestException) -> bool:
    """The connection was dropped before any response (not a timeout, not an HTTP error)."""
    return isinstance(exc, requests.ConnectionError) and not isinstance(exc, requests.Timeout)


def encode_body(planned: Planned) -> bytes:
    return json.dumps(planned.body, separators=(",", ":"), ensure_ascii=False).encode()


class _Completion:
    """Which seqs have been answered: late events wait for their reference event."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._done: set[int] = set()

    def mark(self, seq: int) -> None:
        with self._cond:
            self._done.add(seq)
            self._cond.notify_all()

    def wait_for(self, seq: int) -> None:
        with self._cond:
            self._cond.wait_for(lambda: seq in self._done)


class Sender:
    """Sends planned callbacks and records every outcome in the ledger."""

    def __init__(
        self,
        options: SendOptions,
        ledger: Ledger,
        on_done: Callable[[Planned, int], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.options = options
        self.ledger = ledger
        self.on_done = on_done
        self.clock = clock
        self._completion = _Completion()
        self._local = threading.local()
        self.reply_seconds: list[float] = []  # every answered request's reply time

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.mount("http://", HTTPAdapter(pool_connections=1, pool_maxsize=1))
            session.mount("https://", HTTPAdapter(pool_connections=1, pool_maxsize=1))
            self._local.session = session
        return session

    def send_one(self, planned: Planned) -> int:
        """POST one callback (signed now); returns the status, 0 on a transport error.

        With ``retry_for_s`` a callback not answered 200 is delivered again (after
        ``retry_wait_s``) until it is, or that much time has passed; every failed attempt is
        counted under ``attempt_failed_<status>`` (0 = no answer) in the ledger's totals.
        """
        if planned.late_ref is not None:
            self._completion.wait_for(planned.late_ref)
        first = time.monotonic()
        while True:
            status, error = self._deliver(planned)
            if status == 200 or self.options.retry_for_s <= 0:
                break
            self.ledger.count(f"attempt_failed_{status}")
            if time.monotonic() - first + self.options.retry_wait_s > self.options.retry_for_s:
                break
            self.ledger.count("retried_non_ok")
            time.sleep(self.options.retry_wait_s)
        self.ledger.record(planned, status, error)
        self._completion.mark(planned.seq)
        if self.on_done is not None:
            self.on_done(planned, status)
        return status

    def _deliver(self, planned: Planned) -> tuple[int, str | None]:
        """One delivery (a second try only on a dropped keep-alive): (status, error)."""
        query = callback_query(
            planned.app,
            planned.command,
            client_ip=planned.client_ip,
            platform=planned.platform,
            request_time=int(self.clock()),
        )
        status, error = 0, None
        for attempt in (1, 2):
            began = time.monotonic()
            try:
                response = self._session().post(
                    self.options.url,
                    params=query,
                    data=encode_body(planned),
                    headers={"Content-Type": "application/json"},
                    timeout=self.options.timeout_s,
                )
                status, error = response.status_code, None
                self.reply_seconds.append(time.monotonic() - began)
                if time.monotonic() - began > self.options.slow_s:
                    self.ledger.count("slow_answers")
                if status != 200:
                    error = response.text[:300]
                break
            except requests.RequestException as exc:
                error = f"{type(exc).__name__}: {exc}"
                if isinstance(exc, requests.Timeout):
                    self.ledger.count("timeouts")
                # A keep-alive connection the server closed without any response: send once
                # more on a fresh connection. Safe for the ledger and the pipeline alike,
                # because a re-delivery carries the same event_id (counted once).
                if attempt == 1 and _closed_without_response(exc):
                    self.ledger.count("retried_closed_connection")
                    continue
                break
        return status, error

    def _worker(self, work: queue.Queue[object]) -> None:
        while True:
            item = work.get()
            if item is _STOP:
                return
            assert isinstance(item, Planned)
            self.send_one(item)

    def run(
        self,
        plan: Iterable[Planned],
        *,
        count: int | None = None,
        deadline: float | None = None,
        stop: threading.Event | None = None,
    ) -> int:
        """Send ``plan`` until ``count`` callbacks, the monotonic ``deadline`` or ``stop``.

        Returns how many callbacks were dispatched. Blocks until all were answered.
        """
        work: queue.Queue[object] = queue.Queue(maxsize=self.options.connections * 4)
        threads = [
            threading.Thread(target=self._worker, args=(work,), daemon=True, name=f"sim-{i}")
            for i in range(self.options.connections)
        ]
        for t in threads:
            t.start()
        dispatched = 0
        start = time.monotonic()
        try:
            for planned in plan:
                if count is not None and dispatched >= count:
                    break
                now = time.monotonic()
                if (deadline is not None and now >= deadline) or (stop and stop.is_set()):
                    break
                if self.options.rate > 0:
                    due = start + dispatched / self.options.rate
                    if due > now:
                        time.sleep(due - now)
                work.put(planned)
                dispatched += 1
        finally:
            for _ in threads:
                work.put(_STOP)
            for t in threads:
                t.join()
        return dispatched
