"""A notify consumer its group has forgotten is rebuilt and delivers every alert after it
(in-process notifier, real broker, a real local webhook receiver)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Consumer

from groupwatch.contracts import Settings, Topics
from groupwatch.contracts.membership import MembershipWatchdog
from notify.notice import alert_id
from notify.service import Notifier
from tests.notify.receivers import Receiver, wait_until
from tests.notify.test_delivery import alert, notify_settings, produce_alerts

pytestmark = [pytest.mark.kafka]


class WedgedOnce(MembershipWatchdog):
    """Says "wedged" once ``fire`` is set: the state a test cannot put librdkafka in on
    cue; the rebuild that follows is notify's real one, on the real broker."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(Topics.from_settings(settings).alerts, after_s=90)
        self.fire = threading.Event()
        self.fired = 0

    def stale(self, consumer: Consumer) -> bool:
        if self.fire.is_set() and not self.fired:
            self.fired += 1
            return True
        return False


def test_a_rebuilt_notify_consumer_delivers_every_later_alert(
    make_settings: Callable[..., Settings], topics: Topics, topic_prefix: str, tmp_path: Path
) -> None:
    webhook = Receiver("webhook").start()
    settings = notify_settings(
        make_settings, topic_prefix, notify_webhook_url=webhook.url, notify_port=0
    )
    notifier = Notifier(settings)
    dog = WedgedOnce(settings)
    notifier.watchdog = dog
    runner = threading.Thread(target=notifier.run, daemon=True)
    first = [alert(f"m{i:02d}") for i in range(5)]
    later = [alert(f"n{i:02d}") for i in range(5)]

    def keys() -> set[str]:
        return {r.key for r in webhook.accepted()}

    try:
        runner.start()
        produce_alerts(settings, topics, first)
        wait_until(lambda: {alert_id(a) for a in first} <= keys(), 60, str)
        dog.fire.set()
        wait_until(lambda: dog.fired == 1, 30, lambda: "the watchdog was never asked")
        produce_alerts(settings, topics, later)
        want = {alert_id(a) for a in first + later}
        wait_until(lambda: want <= keys(), 90, lambda: f"delivered {sorted(keys())}")
    finally:
        notifier.stop()
        runner.join(30)
        webhook.stop()
    assert keys() == want
    assert not runner.is_alive()
