"""Contract records for analytics tests (the stream stage is not imported)."""

from __future__ import annotations

from groupwatch.contracts.catalog import error_category
from groupwatch.contracts.keys import iso_utc, make_event_id
from groupwatch.contracts.records import Alert, ErrorCount, ExceptionEvent, FailureWindow, SendEvent

BASE_MS = 1_790_000_000_000 - (1_790_000_000_000 % 60_000)  # a minute boundary


def exception(
    app: str, group: str, sender: str, random: int, t_ms: int, code: int = 10004
) -> ExceptionEvent:
    return ExceptionEvent(
        event_id=make_event_id(app, group, sender, random, t_ms),
        sdkappid=app,
        group_id=group,
        group_type="Public",
        from_account=sender,
        random=random,
        msg_types=["TIMTextElem"],
        error_code=code,
        error_info=f"error {code}",
        error_category=error_category(code),
        event_time_ms=t_ms,
        received_at_ms=t_ms + 50,
        client_ip="10.0.0.1",
        platform="Android",
        extra={"Unknown": 1} if random % 7 == 0 else {},
    )


def send(app: str, group: str, sender: str, random: int, t_ms: int) -> SendEvent:
    return SendEvent(
        event_id=make_event_id(app, group, sender, random, t_ms),
        sdkappid=app,
        group_id=group,
        from_account=sender,
        random=random,
        event_time_ms=t_ms,
        received_at_ms=t_ms + 20,
    )


def window(
    app: str,
    group: str,
    code: int,
    start_ms: int,
    failures: int,
    *,
    final: bool,
    updated_ms: int,
    sends: int | None = None,
) -> FailureWindow:
    end = start_ms + 60_000
    return FailureWindow(
        sdkappid=app,
        group_id=group,
        group_type="Public",
        error_code=code,
        error_category=error_category(code),
        window_start=iso_utc(start_ms),
        window_end=iso_utc(end),
        window_start_ms=start_ms,
        window_end_ms=end,
        failures=failures,
        failures_per_minute=float(failures),
        senders=max(1, failures // 2),
        first_event_time_ms=start_ms + 1,
        last_event_time_ms=start_ms + 59_000,
        group_failures=failures,
        group_sends=sends,
        failure_ratio=None if sends is None else failures / (failures + sends),
        final=final,
        updated_at=iso_utc(updated_ms),
        updated_at_ms=updated_ms,
    )


def alert(app: str, group: str, start_ms: int, failures: int, raised_ms: int) -> Alert:
    return Alert(
        sdkappid=app,
        group_id=group,
        group_type="Public",
        window_start=iso_utc(start_ms),
        window_end=iso_utc(start_ms + 60_000),
        window_start_ms=start_ms,
        window_end_ms=start_ms + 60_000,
        reason="threshold",
        failures=failures,
        threshold=20,
        baseline=None,
        baseline_factor=3.0,
        top_error_codes=[
            ErrorCount(error_code=10004, error_category="invalid_param", failures=failures)
        ],
        raised_at=iso_utc(raised_ms),
        raised_at_ms=raised_ms,
    )
