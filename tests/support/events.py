"""Contract records for tests: what ingress writes (exceptions, sends) and what the
stream writes (failure windows, alerts), built without importing any stage."""

from __future__ import annotations

from typing import Any

from groupwatch.contracts.catalog import error_category
from groupwatch.contracts.keys import iso_utc, make_event_id
from groupwatch.contracts.records import Alert, ErrorCount, ExceptionEvent, FailureWindow, SendEvent

APP = "1400000001"
BASE_MS = 1_790_000_000_000 - (1_790_000_000_000 % 60_000)  # a minute boundary


def bare_exception(
    app: str, group: str, sender: str, random: int, t_ms: int, code: int = 10004, **fields: Any
) -> ExceptionEvent:
    """An exception event with only what the stream needs (received when it happened);
    ``fields`` set any other field."""
    values: dict[str, Any] = {"group_type": "Public", "received_at_ms": t_ms, **fields}
    return ExceptionEvent(
        event_id=make_event_id(app, group, sender, random, t_ms),
        sdkappid=app,
        group_id=group,
        from_account=sender,
        random=random,
        error_code=code,
        error_category=error_category(code),
        event_time_ms=t_ms,
        **values,
    )


def bare_send(
    app: str, group: str, sender: str, random: int, t_ms: int, **fields: Any
) -> SendEvent:
    """A send event with only the required fields (received when it happened)."""
    values: dict[str, Any] = {"received_at_ms": t_ms, **fields}
    return SendEvent(
        event_id=make_event_id(app, group, sender, random, t_ms),
        sdkappid=app,
        group_id=group,
        from_account=sender,
        random=random,
        event_time_ms=t_ms,
        **values,
    )


def exception(
    app: str, group: str, sender: str, random: int, t_ms: int, code: int = 10004
) -> ExceptionEvent:
    """An exception event with every optional field the ingress can fill."""
    return bare_exception(
        app,
        group,
        sender,
        random,
        t_ms,
        code,
        msg_types=["TIMTextElem"],
        error_info=f"error {code}",
        received_at_ms=t_ms + 50,
        client_ip="10.0.0.1",
        platform="Android",
        extra={"Unknown": 1} if random % 7 == 0 else {},
    )


def send(app: str, group: str, sender: str, random: int, t_ms: int) -> SendEvent:
    return bare_send(app, group, sender, random, t_ms, received_at_ms=t_ms + 20)


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
