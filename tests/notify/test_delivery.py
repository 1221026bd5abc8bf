"""``groupwatch notify`` as a real process on the real broker, delivering to real local
receivers (WeCom, Slack, webhook): everything arrives through 500s, 429 + Retry-After,
slow answers and a receiver that is down at first; cooldown and silences hold; a refusal
and malformed records are notify-failures records; a SIGKILL mid-delivery loses nothing
and re-delivers at most the in-flight batch, with the same keys."""

from __future__ import annotations

import collections
import hashlib
import hmac
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from groupwatch.contracts import Settings, Topics
from groupwatch.contracts.keys import alert_key, window_key
from groupwatch.contracts.records import Alert, ErrorCount, encode
from notify.notice import alert_id
from tests.notify.receivers import Receiver, wait_until
from tests.support import events, kafka
from tests.support.events import APP
from tests.support.metrics import metric
from tests.support.ports import free_port
from tests.support.processes import StageProcess, settings_env
from tests.support.stream import T0, read_topic

pytestmark = [pytest.mark.kafka]

W = 60_000
SECRET = "webhook-secret"


def alert(group: str, ws: int = T0, app: str = APP, failures: int = 40) -> Alert:
    a = events.alert(app, group, ws, failures, ws + W + 30_000)
    return msgspec.structs.replace(
        a,
        group_sends=100,
        failure_ratio=failures / (failures + 100),
        top_error_codes=[
            ErrorCount(error_code=10023, error_category="rate_limited", failures=failures)
        ],
    )


def produce_alerts(settings: Settings, topics: Topics, alerts: list[Alert]) -> None:
    kafka.produce(
        settings.bootstrap_servers,
        topics.alerts,
        [
            (alert_key(a.sdkappid, a.group_id, a.window_start_ms, a.reason), encode(a))
            for a in alerts
        ],
    )


def notify_process(settings: Settings, tmp_path: Path, name: str = "notify") -> StageProcess:
    return StageProcess(
        name,
        ["notify"],
        settings_env(settings),
        tmp_path / f"{name}.log",
        f"http://127.0.0.1:{settings.notify_port}/healthz",
    )


def notify_settings(
    make_settings: Callable[..., Settings], topic_prefix: str, **overrides: Any
) -> Settings:
    values: dict[str, Any] = {
        "notify_port": free_port(),
        "notify_group_id": f"{topic_prefix}-notify",
        "notify_timeout_seconds": 1.0,
        "notify_retry_initial_seconds": 0.1,
        "notify_retry_max_backoff_seconds": 2.0,
        "notify_retry_max_seconds": 90.0,
        **overrides,
    }
    return make_settings(**values)


def groups_in(receiver: Receiver, groups: list[str]) -> dict[str, set[str]]:
    """group -> the distinct idempotency keys of accepted messages naming it."""
    found: dict[str, set[str]] = collections.defaultdict(set)
    for r in receiver.accepted():
        for g in groups:
            if f"`{g}`" in r.text:
                found[g].add(r.key)
    return found


def test_every_receiver_gets_every_alert_through_faults(
    make_settings: Callable[..., Settings], topics: Topics, topic_prefix: str, tmp_path: Path
) -> None:
    refused = "g-refused"
    wecom = Receiver("wecom", script=[500, 500, (429, {"Retry-After": "1"}), "slow"]).start()
    webhook = Receiver(
        "webhook",
        script=[500, "slow", (429, {"Retry-After": "1"})],
        refuse=lambda body: refused.encode() in body,
    ).start()
    slack = Receiver("slack", script=["slow", 503])  # down (connection refused) at first
    slack_port = free_port()
    settings = notify_settings(
        make_settings,
        topic_prefix,
        notify_wecom_url=wecom.url,
        notify_slack_url=f"http://127.0.0.1:{slack_port}/hook",
        notify_webhook_url=webhook.url,
        notify_webhook_secret=SECRET,
        notify_cooldown_seconds=300,
        notify_digest_threshold=50,
        notify_silence_apps=["1400000009"],
        notify_silence_groups=[f"{APP}:quiet"],
        notify_silence_codes=[10017],
        notify_dashboard_url="http://127.0.0.1:8780",
    )
    proc = notify_process(settings, tmp_path)
    groups = [f"g{i:02d}" for i in range(10)]
    sent = [alert(g) for g in groups]
    try:
        proc.start()
        produce_alerts(
            settings,
            topics,
            [
                *sent,
                alert(refused),
                alert("x", app="1400000009"),
                alert("quiet"),  # silenced app, group
                msgspec.structs.replace(
                    alert("muted"),
                    top_error_codes=[  # silenced code
                        ErrorCount(error_code=10017, error_category="muted", failures=40)
                    ],
                ),
            ],
        )
        kafka.produce(
            settings.bootstrap_servers,
            topics.alerts,
            [(b"bad-1", b'{"not": "an alert"}'), (b"bad-2", b"\xff\x00 not json")],
        )
        threading.Timer(3.0, lambda: slack.start(slack_port)).start()

        expected = {alert_id(a) for a in sent}
        wait_until(
            lambda: expected <= {r.key for r in webhook.accepted()},
            90,
            lambda: f"webhook got {len(webhook.accepted())}: {proc.log_tail()}",
        )
        for receiver in (wecom, slack):
            wait_until(
                lambda r=receiver: len(groups_in(r, [*groups, refused])) == 11,
                90,
                lambda r=receiver: f"{r.kind}: {[x.text[:80] for x in r.accepted()]}",
            )
        # g00 again one window later, inside the cooldown: produced only now, so it is
        # certainly read after the first g00 alert (alerts of other windows may sit on
        # other partitions, read in any order)
        cooled = alert("g00", ws=T0 + W)
        produce_alerts(settings, topics, [cooled])
        wait_until(
            lambda: (
                metric(proc_metrics(settings), "groupwatch_notify_suppressed_total", why="cooldown")
                == 1
            ),
            30,
            proc.log_tail,
        )
        # each alert reached each receiver as one message (a slow answer was retried with
        # the same key), with the group page link
        for receiver in (wecom, slack):
            found = groups_in(receiver, [*groups, refused])
            assert all(len(keys) == 1 for keys in found.values()), found
            assert all("http://127.0.0.1:8780/group/" in r.text for r in receiver.accepted())
        assert all(
            "markdown" in r.json() and len(r.text.encode()) <= 4096 for r in wecom.accepted()
        )
        # the webhook: the records themselves, signed, keyed by alert
        accepted = webhook.accepted()
        assert {r.key for r in accepted} == expected
        for r in accepted:
            assert alert_id(msgspec.json.decode(r.body, type=Alert)) == r.key
            mac = hmac.new(SECRET.encode(), r.body, hashlib.sha256).hexdigest()
            assert r.headers["X-Groupwatch-Signature"] == f"sha256={mac}"
        # nothing silenced or cooled down reached anyone
        everything = " ".join(r.text for x in (wecom, slack) for r in x.accepted())
        assert "`quiet`" not in everything and "`muted`" not in everything
        assert "`x`" not in everything
        # the cooled-down g00 alert reached no one: its key is nowhere, and g00 arrived as one
        # alert (a slow answer retried with the same key is the same alert: WeCom has no
        # idempotency, so a message may be seen twice; counting messages would count that)
        assert all(r.key != alert_id(cooled) for x in (wecom, slack, webhook) for r in x.accepted())
        for receiver in (wecom, slack):
            assert groups_in(receiver, ["g00"])["g00"] == {alert_id(sent[0])}

        # the refusal and the two malformed records are on notify-failures
        failures = read_topic(settings, topics.notify_failures, until=lambda recs: len(recs) >= 3)
        by_kind = collections.Counter(v["kind"] for _, v in failures)
        assert by_kind == {"malformed": 2, "alert": 1}, failures
        (refusal,) = [v for _, v in failures if v["kind"] == "alert"]
        assert refusal["channel"] == "webhook" and refusal["status"] == 400
        assert refusal["attempts"] == 1 and "HTTP 400" in refusal["reason"]
        assert refusal["alert"]["group_id"] == refused

        # g01 back under the threshold in the next window: "resolved" everywhere
        w = events.window(APP, "g01", 10023, T0 + W, 2, final=True, updated_ms=T0 + 2 * W)
        kafka.produce(
            settings.bootstrap_servers,
            topics.failure_windows,
            [(window_key(APP, "g01", 10023, T0 + W), encode(w))],
        )
        wait_until(
            lambda: any(
                r.headers.get("X-Groupwatch-Event") == "resolved" for r in webhook.accepted()
            ),
            60,
            proc.log_tail,
        )
        for receiver in (wecom, slack):
            wait_until(
                lambda r=receiver: any(
                    "resolved" in x.text and "`g01`" in x.text for x in r.accepted()
                ),
                30,
                proc.log_tail,
            )
        resolved = [
            r.json()
            for r in webhook.accepted()
            if r.headers.get("X-Groupwatch-Event") == "resolved"
        ]
        assert [(x["group_id"], x["failures"], x["threshold"]) for x in resolved] == [
            ("g01", 2, 20)
        ]

        text = proc_metrics(settings)
        assert metric(text, "groupwatch_notify_suppressed_total", why="cooldown") == 1
        assert metric(text, "groupwatch_notify_suppressed_total", why="silence") == 3
        assert metric(text, "groupwatch_notify_retried_total", channel="wecom") >= 4
        assert metric(text, "groupwatch_notify_retried_total", channel="slack") >= 2
        assert metric(text, "groupwatch_notify_failed_total", channel="webhook") == 1
        assert metric(text, "groupwatch_notify_malformed_total") == 2
        assert metric(text, "groupwatch_notify_delivered_total", channel="webhook") == 11
        assert metric(text, "groupwatch_notify_delivery_seconds_count", channel="wecom") == 12
    finally:
        proc.stop()
        for r in (wecom, slack, webhook):
            r.stop()


def proc_metrics(settings: Settings) -> str:
    import requests

    return requests.get(f"http://127.0.0.1:{settings.notify_port}/metrics", timeout=5).text


def test_sigkill_mid_delivery_loses_nothing_and_repeats_only_the_batch_in_flight(
    make_settings: Callable[..., Settings],
    topics: Topics,
    topic_prefix: str,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    batch = 5
    webhook = Receiver("webhook", delay=0.15).start()
    settings = notify_settings(
        make_settings, topic_prefix, notify_webhook_url=webhook.url, notify_batch_max=batch
    )
    proc = notify_process(settings, tmp_path)
    alerts = [alert(f"k{i:02d}") for i in range(30)]
    expected = {alert_id(a) for a in alerts}
    try:
        proc.start()
        produce_alerts(settings, topics, alerts)
        wait_until(lambda: len(webhook.accepted()) >= 8, 60, proc.log_tail)
        proc.kill()
        before = len(webhook.accepted())
        proc.start()
        wait_until(lambda: expected <= {r.key for r in webhook.accepted()}, 90, proc.log_tail)
        keys = [r.key for r in webhook.accepted()]
        duplicates = len(keys) - len(set(keys))
        record_property("duplicates", duplicates)
        print(
            f"\nSIGKILL after {before} deliveries: {len(keys)} requests for "
            f"{len(set(keys))} alerts, {duplicates} re-delivered (batch of {batch})"
        )
        assert set(keys) == expected
        assert duplicates <= batch
        # a re-delivery is the same record under the same key
        bodies: dict[str, set[bytes]] = collections.defaultdict(set)
        for r in webhook.accepted():
            bodies[r.key].add(r.body)
        assert all(len(b) == 1 for b in bodies.values())
    finally:
        proc.stop()
        webhook.stop()


def test_a_crowded_window_and_the_rate_limit_give_digests_and_drop_nothing(
    make_settings: Callable[..., Settings], topics: Topics, topic_prefix: str, tmp_path: Path
) -> None:
    wecom = Receiver("wecom").start()
    settings = notify_settings(
        make_settings,
        topic_prefix,
        notify_wecom_url=wecom.url,
        notify_wecom_per_minute=3,
        notify_digest_threshold=4,
    )
    proc = notify_process(settings, tmp_path)
    crowd = [f"c{i}" for i in range(4)]  # one window: a digest
    later = [f"h{i}" for i in range(5)]  # a window each: beyond the limit, a digest
    try:
        proc.start()
        produce_alerts(
            settings,
            topics,
            [
                *(alert(g) for g in crowd),
                *(alert(g, ws=T0 + (i + 1) * W) for i, g in enumerate(later)),
            ],
        )
        wait_until(
            lambda: len(groups_in(wecom, crowd + later)) == 9,
            60,
            lambda: f"{[r.text[:200] for r in wecom.accepted()]} {proc.log_tail()}",
        )
        messages = wecom.accepted()
        assert len(messages) == 3  # the robot's limit this minute, never more
        assert sum("groupwatch digest" in r.text for r in messages) == 2
        # every group in exactly one message
        for g in crowd + later:
            assert sum(f"`{g}`" in r.text for r in messages) == 1, g
        assert all(len(r.text.encode()) <= 4096 for r in messages)
    finally:
        proc.stop()
        wecom.stop()
