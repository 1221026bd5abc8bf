"""``Ledger.answered_event_ids``: the event_ids a stack must store, per kind."""

from __future__ import annotations

from groupwatch.simulate.ledger import Ledger
from tests.simulate.test_ledger import W0, dup, event


def test_answered_ids_are_the_200s_on_time_and_late_once_each() -> None:
    ledger = Ledger(60, 30)
    a, b, c = event(0, sender="u1"), event(1, sender="u2"), event(2, sender="u3")
    s = event(3, "send", sender="u4")
    late = event(4, sender="u5", t=W0 - 600_000, late_ref=0, late_ref_time_ms=W0 + 1000)
    ledger.record(a, 200)
    ledger.record(dup(a, 5), 200)
    ledger.record(b, 503, "spool full")  # never answered 200: not expected
    ledger.record(c, 0, "ConnectionError")
    ledger.record(dup(c, 6), 200)  # its re-delivery was: expected once
    ledger.record(s, 200)
    ledger.record(late, 200)
    assert ledger.answered_event_ids("exception") == {a.event_id, c.event_id, late.event_id}
    assert ledger.answered_event_ids("send") == {s.event_id}
