"""A deterministic mixed input for the sink: every topic, with duplicates and reorderings."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from groupwatch.contracts import Topics
from groupwatch.contracts.keys import alert_key, group_key, window_key
from groupwatch.contracts.records import Alert, ExceptionEvent, FailureWindow, SendEvent, encode
from tests.support import events as f
from tests.support.kafka import produce

CODES = (10004, 10006, 10017, 80001, 10002, 12345)


@dataclass
class Workload:
    exceptions: list[ExceptionEvent] = field(default_factory=list)
    sends: list[SendEvent] = field(default_factory=list)
    windows: list[FailureWindow] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    garbage: list[bytes] = field(default_factory=list)

    def produce(self, bootstrap: str, topics: Topics) -> None:
        produce(
            bootstrap,
            topics.exceptions,
            [(group_key(e.sdkappid, e.group_id), encode(e)) for e in self.exceptions],
        )
        produce(
            bootstrap,
            topics.sends,
            [(group_key(e.sdkappid, e.group_id), encode(e)) for e in self.sends],
        )
        produce(
            bootstrap,
            topics.failure_windows,
            [
                (window_key(r.sdkappid, r.group_id, r.error_code, r.window_start_ms), encode(r))
                for r in self.windows
            ],
        )
        produce(
            bootstrap,
            topics.alerts,
            [
                (alert_key(r.sdkappid, r.group_id, r.window_start_ms, r.reason), encode(r))
                for r in self.alerts
            ],
        )
        if self.garbage:
            produce(bootstrap, topics.exceptions, [(b"bad", g) for g in self.garbage])


def make_workload(
    seed: int, n_exceptions: int, n_sends: int, n_window_keys: int, base_ms: int = f.BASE_MS
) -> Workload:
    rng = random.Random(seed)
    w = Workload()
    apps = ("1400000001", "1400000002")
    for i in range(n_exceptions):
        app = apps[i % 2]
        e = f.exception(
            app,
            f"@TGS#{rng.randrange(40)}",
            f"user{rng.randrange(200)}",
            i,
            base_ms + rng.randrange(30 * 60_000),
            rng.choice(CODES),
        )
        w.exceptions.append(e)
        if rng.random() < 0.1:  # a redelivered copy
            w.exceptions.append(e)
    for i in range(n_sends):
        e = f.send(
            apps[i % 2],
            f"@TGS#{rng.randrange(40)}",
            f"user{rng.randrange(200)}",
            10_000_000 + i,
            base_ms + rng.randrange(30 * 60_000),
        )
        w.sends.append(e)
        if rng.random() < 0.1:
            w.sends.append(e)
    for k in range(n_window_keys):
        app, group = apps[k % 2], f"@TGS#{k % 40}"
        code, start = CODES[k % len(CODES)], base_ms + (k // 40) * 60_000
        updates = sorted(rng.randrange(1, 50) for _ in range(rng.randrange(1, 4)))
        t = start + 1000
        for n in updates:
            t += 1000
            w.windows.append(f.window(app, group, code, start, n, final=False, updated_ms=t))
        final = f.window(
            app,
            group,
            code,
            start,
            updates[-1] + rng.randrange(3),
            final=True,
            updated_ms=t + 1000,
            sends=rng.randrange(100),
        )
        w.windows.append(final)
        if rng.random() < 0.3:  # a late non-final after the final must not win
            w.windows.append(
                f.window(
                    app, group, code, start, updates[-1] + 100, final=False, updated_ms=t + 5000
                )
            )
        if rng.random() < 0.2:  # the final delivered twice
            w.windows.append(final)
        if rng.random() < 0.1:
            a = f.alert(app, group, start, updates[-1] + 30, t + 2000)
            w.alerts.extend([a, a])
    w.garbage = [b"not json", b'{"event_id": 5}']
    return w
