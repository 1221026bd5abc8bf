"""The ingress with one part switched off, to attribute its CPU (profiling only).

``BENCH_VARIANT=stub``: the publisher returns at once (handler cost, no Kafka).
``BENCH_VARIANT=nowait``: each record is produced but the request does not wait for its
delivery report (it is NOT durable: measures what the wait itself costs).
Serve with ``granian --interface wsgi --working-dir bench/ingest variant_wsgi:app``.
"""

from __future__ import annotations

import os

from ingest.envelope import Envelope
from ingest.publisher import Publisher
from ingest.wsgi import app

_publisher: Publisher = app.extensions["groupwatch.publisher"]
_variant = os.environ.get("BENCH_VARIANT", "")


def _stub(env: Envelope) -> str:
    return "delivered"


def _nowait(env: Envelope) -> str:
    outbox, _, _ = _publisher._ensure()
    outbox.produce(env, lambda err, msg: None)
    return "delivered"


if _variant == "stub":
    _publisher.publish = _stub  # type: ignore[method-assign,assignment]
elif _variant == "nowait":
    _publisher.publish = _nowait  # type: ignore[method-assign,assignment]
elif _variant:
    raise SystemExit(f"BENCH_VARIANT must be stub or nowait, not {_variant!r}")
