"""Reject logs cost a bounded amount: truncated caller fields, at most N lines a second."""

from __future__ import annotations

import logging

import pytest

from ingest import metrics
from ingest.logs import FIELD_MAX_CHARS, RateLimitedLog, truncate
from ingest.normalize import FIELDS


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_truncate_cuts_long_values_and_says_by_how_much() -> None:
    assert truncate("short") == "short"
    assert truncate(None) is None and truncate(7) == 7
    cut = truncate("x" * 10_000)
    assert isinstance(cut, str)
    assert cut.startswith("x" * FIELD_MAX_CHARS) and cut.endswith(f"(+{10_000 - 200} chars)")
    assert len(cut) < FIELD_MAX_CHARS + 30


def test_rate_limit_writes_n_lines_a_second_then_counts_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    limited = RateLimitedLog(logging.getLogger("t.reject"), "rejected", per_second=5, clock=clock)
    with caplog.at_level(logging.INFO, logger="t.reject"):
        written = [limited.log(logging.INFO, "rejected", sdkappid="a" * 5000) for _ in range(50)]
        assert written == [True] * 5 + [False] * 45
        assert len(caplog.records) == 5
        assert all(len(r.sdkappid) < FIELD_MAX_CHARS + 30 for r in caplog.records)  # type: ignore[attr-defined]
        clock.now += 1.0
        assert limited.log(logging.INFO, "rejected", sdkappid="b")
    summary, line = caplog.records[5:]
    assert summary.levelno == logging.WARNING and summary.suppressed == 45  # type: ignore[attr-defined]
    assert "45 'rejected' log lines suppressed" in summary.getMessage()
    assert line.sdkappid == "b"  # type: ignore[attr-defined]


def test_rate_limit_flush_reports_what_is_pending(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    limited = RateLimitedLog(logging.getLogger("t.flush"), "x", per_second=1, clock=clock)
    with caplog.at_level(logging.INFO, logger="t.flush"):
        for _ in range(3):
            limited.log(logging.INFO, "x")
        limited.flush()
        limited.flush()
    assert [getattr(r, "suppressed", None) for r in caplog.records] == [None, 2]


def test_command_labels_are_a_fixed_set() -> None:
    assert metrics.command_label("Group.CallbackBeforeSendMsg") == "Group.CallbackBeforeSendMsg"
    assert metrics.command_label("Group.CallbackBeforeSendMsg2") == "other"
    assert metrics.command_label("a" * 60) == "other"
    assert metrics.command_label("") == metrics.command_label(None) == "missing"


def test_field_labels_are_a_fixed_set() -> None:
    assert metrics.field_label("ErrorCode") == "ErrorCode"
    assert metrics.field_label("Whatever the caller sent") == "other"
    assert metrics.field_label(None) == "none"
    assert {"ErrorCode", "Random", "MsgSeq", "EventTime", "OnlineOnlyFlag", "body"} <= FIELDS


def test_every_field_the_ingress_names_is_a_known_label() -> None:
    """Each ``field=`` of a rejection in ingest/ is in FIELDS (so the DLQ label set is fixed)."""
    import re
    from pathlib import Path

    source = "".join(p.read_text() for p in (Path(metrics.__file__).parent).glob("*.py"))
    named = set(re.findall(r'field="([A-Za-z_]+)"', source))
    named |= set(re.findall(r'_(?:required|optional)_(?:str|int)\(\s*body, "([A-Za-z_]+)"', source))
    named |= set(re.findall(r'_too_long\("([A-Za-z_]+)"', source))
    named |= set(re.findall(r'_query_str\(ctx\.\w+, "([A-Za-z_]+)"', source))
    assert named >= {"SdkAppid", "Sign", "GroupId", "ErrorCode", "MsgSeq", "MsgBody", "ClientIP"}
    assert named <= FIELDS
