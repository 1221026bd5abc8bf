"""The notify loop: read a batch of alerts (and final failure windows), decide, deliver to
every channel, record what failed, save the state, and only then commit the offsets.

At-least-once: offsets are committed after every message of the batch reached its
receiver, was refused for good, or was given up on (each of the last two is a
notify-failures record, acknowledged by the broker before the commit). A SIGKILL re-reads
at most the uncommitted batch (``GROUPWATCH_NOTIFY_BATCH_MAX`` records); its messages are
sent again with the same idempotency keys. Channels are delivered in parallel, one thread
each, so one receiver's outage does not hold the others' messages back within a batch.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import msgspec
import requests
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from groupwatch.contracts import Settings, Topics
from groupwatch.contracts.keys import iso_utc
from groupwatch.contracts.membership import MembershipWatchdog, close_within
from groupwatch.contracts.records import Alert, FailureWindow, NotifyFailure, decode, encode
from groupwatch.contracts.startup import list_topics
from notify.channels import Channel, channels_of
from notify.delivery import Outgoing, Policy, Stopping, deliver
from notify.metrics import MetricsServer, NotifyMetrics
from notify.plan import Planner, Silences
from notify.state import StateFile

log = logging.getLogger(__name__)

RAW_KEEP_BYTES = 256 * 1024  # of a malformed record, kept in its notify-failures record
POLL_SECONDS = 0.5
SESSION_TIMEOUT_MS = 10000
STATE_SAVE_SECONDS = 5.0  # the longest a batch without notices leaves the state unsaved


def _now_ms() -> int:
    return int(time.time() * 1000)


class Notifier:
    def __init__(self, settings: Settings) -> None:
        s = self.settings = settings
        self.topics = Topics.from_settings(s)
        self.channels: list[Channel] = channels_of(s)
        if not self.channels:
            raise ValueError(
                "no notify channel is configured: set GROUPWATCH_NOTIFY_WECOM_URL, "
                "GROUPWATCH_NOTIFY_SLACK_URL or GROUPWATCH_NOTIFY_WEBHOOK_URL"
            )
        self.metrics = NotifyMetrics()
        self.stopping = threading.Event()
        self.state_file = StateFile(s.notify_dir / "state.json")
        self.state = self.state_file.load()
        self.planner = Planner(
            self.state,
            s.notify_cooldown_seconds,
            Silences(
                frozenset(s.notify_silence_apps),
                frozenset(s.notify_silence_groups),
                frozenset(s.notify_silence_codes),
            ),
        )
        self.policy = Policy(
            timeout=s.notify_timeout_seconds,
            initial=s.notify_retry_initial_seconds,
            max_backoff=s.notify_retry_max_backoff_seconds,
            max_total=s.notify_retry_max_seconds,
        )
        self.sessions = {ch.name: requests.Session() for ch in self.channels}
        self.pool = ThreadPoolExecutor(len(self.channels), thread_name_prefix="notify")
        self.server = MetricsServer(self.metrics, s.notify_host, s.notify_port)
        self.watchdog = MembershipWatchdog(
            self.topics.alerts, after_s=9 * SESSION_TIMEOUT_MS / 1000
        )
        self.consumer = self._new_consumer()
        self.producer = Producer(
            {"bootstrap.servers": s.bootstrap_servers, "enable.idempotence": True, "linger.ms": 5}
        )
        self._produce_errors: list[str] = []
        self._saved_at = 0.0
        self._labels = {
            self.topics.alerts: "alerts",
            self.topics.failure_windows: "failure-windows",
        }

    def _new_consumer(self) -> Consumer:
        s = self.settings
        return Consumer(
            {
                "bootstrap.servers": s.bootstrap_servers,
                "group.id": s.notify_group_id,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "allow.auto.create.topics": False,
                "session.timeout.ms": SESSION_TIMEOUT_MS,
                # a batch may wait out a receiver outage (GROUPWATCH_NOTIFY_RETRY_MAX_SECONDS)
                # and rate limits before the next poll: the longest interval librdkafka allows
                "max.poll.interval.ms": 86_400_000,
            }
        )

    def _subscribe(self) -> None:
        self.consumer.subscribe(
            [self.topics.alerts, self.topics.failure_windows],
            on_assign=lambda _c, parts: self.watchdog.assigned(len(parts)),
            on_revoke=lambda _c, _parts: self.watchdog.revoked(),
            on_lost=lambda _c, _parts: self.watchdog.revoked(),
        )
        self.watchdog.restarted()

    def _rebuild_consumer(self) -> None:
        """A consumer wedged out of its group (``groupwatch.contracts.membership``): a new one
        resumes from the committed offsets (delivered batches only: nothing is skipped)."""
        log.warning("rebuilding the notify consumer")
        close_within(self.consumer)
        self.consumer = self._new_consumer()
        self._subscribe()

    def stop(self, *_args: object) -> None:
        self.stopping.set()

    # --- the loop --------------------------------------------------------------------
    def run(self) -> None:
        t = self.topics
        present = list_topics(self.consumer, self.settings)
        missing = [n for n in (t.alerts, t.failure_windows, t.notify_failures) if n not in present]
        if missing:
            raise ValueError(
                f"topic {', '.join(missing)} does not exist: run `groupwatch topics create`"
            )
        self._subscribe()
        self.server.start()
        log.info(
            "notify: channels %s; /metrics on http://%s:%d",
            ", ".join(c.name for c in self.channels),
            self.settings.notify_host,
            self.server.port,
        )
        try:
            while not self.stopping.is_set():
                if self.watchdog.stale(self.consumer):
                    self._rebuild_consumer()
                msgs = self.consumer.consume(
                    num_messages=self.settings.notify_batch_max, timeout=POLL_SECONDS
                )
                if msgs:
                    self.handle(msgs)
        except Stopping:
            log.info("stopping with a batch undelivered: it is read again at the next start")
        finally:
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.consumer.close()
            self.producer.flush(10)
            self.server.stop()

    def handle(self, msgs: list[Message]) -> None:
        """One batch, end to end; raises ``Stopping`` (nothing committed) on shutdown."""
        read_at = time.monotonic()
        records: list[Alert | FailureWindow] = []
        failures: list[NotifyFailure] = []
        offsets: dict[tuple[str, int], int] = {}
        for msg in msgs:
            err = msg.error()
            if err is not None:
                if err.fatal() or err.code() == KafkaError._FATAL:
                    raise RuntimeError(f"fatal Kafka error, the consumer cannot continue: {err}")
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("kafka: %s", err)
                continue
            topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
            if topic is None or partition is None or offset is None:
                continue
            offsets[(topic, partition)] = offset + 1
            label = self._labels.get(topic, topic)
            self.metrics.records.labels(label).inc()
            value = msg.value()
            if value is None:  # a tombstone of the compacted failure-windows topic
                continue
            try:
                if topic == self.topics.alerts:
                    records.append(decode(value, Alert))
                else:
                    records.append(decode(value, FailureWindow))
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                self.metrics.malformed.labels(label).inc()
                failures.append(self._malformed(msg, value, str(exc)))
        planned = self.planner.plan(records)
        for why, n in planned.suppressed.items():
            self.metrics.suppressed.labels(why).inc(n)
        if planned.notices:
            futures = [
                self.pool.submit(self._send_all, ch, ch.messages(planned.notices), read_at)
                for ch in self.channels
            ]
            for f in futures:
                failures.extend(f.result())  # Stopping from a channel propagates
        if failures:
            self._record_failures(failures)
        # A batch that sent nothing and suppressed nothing changed only the watermark (and
        # pruned cooldowns): committing it asynchronously, with the state saved every few
        # seconds, loses nothing a restart needs (a lower watermark only delays a quiet
        # "resolved"). The failure-windows updates make most batches like that.
        quiet = not planned.notices and not failures and not planned.suppressed
        now = time.monotonic()
        if not quiet or now - self._saved_at >= STATE_SAVE_SECONDS:
            self.state_file.save(self.state)
            self._saved_at = now
        if offsets:
            tps = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
            try:
                if quiet:
                    self.consumer.commit(offsets=tps, asynchronous=True)
                else:
                    self.consumer.commit(offsets=tps, asynchronous=False)
            except KafkaException as exc:  # e.g. a rebalance: the batch may be read again
                log.warning("offset commit failed (the batch may be delivered again): %s", exc)

    # --- one channel's messages, in order ---------------------------------------------------
    def _send_all(
        self, ch: Channel, messages: list[Outgoing], read_at: float
    ) -> list[NotifyFailure]:
        failed: list[NotifyFailure] = []
        session = self.sessions[ch.name]
        retried = self.metrics.retried.labels(ch.name)
        for m in messages:
            if not ch.limiter.acquire(self.stopping):
                raise Stopping(m.key)
            result = deliver(session, m, self.policy, self.stopping, lambda _e: retried.inc())
            if result.delivered:
                self.metrics.delivered.labels(ch.name, m.kind).inc()
                self.metrics.latency.labels(ch.name).observe(time.monotonic() - read_at)
                continue
            self.metrics.failed.labels(ch.name).inc()
            log.warning("%s: %s %s not delivered: %s", ch.name, m.kind, m.key, result.reason)
            now = _now_ms()
            failed.append(
                NotifyFailure(
                    channel=ch.name,
                    kind=m.kind,  # type: ignore[arg-type]
                    reason=result.reason,
                    status=result.status,
                    attempts=result.attempts,
                    idempotency_key=m.key,
                    alert_keys=list(m.alert_keys),
                    alert=m.alert,
                    failed_at=iso_utc(now),
                    failed_at_ms=now,
                )
            )
        return failed

    # --- notify-failures ----------------------------------------------------------------
    def _malformed(self, msg: Message, value: bytes, why: str) -> NotifyFailure:
        now = _now_ms()
        log.warning(
            "%s[%s]@%s is not readable: %s", msg.topic(), msg.partition(), msg.offset(), why
        )
        return NotifyFailure(
            kind="malformed",
            reason=f"not a {'alert' if msg.topic() == self.topics.alerts else 'failure window'} "
            f"record: {why}",
            source_topic=msg.topic(),
            source_partition=msg.partition(),
            source_offset=msg.offset(),
            raw_base64=base64.b64encode(value[:RAW_KEEP_BYTES]).decode("ascii"),
            raw_truncated=len(value) > RAW_KEEP_BYTES,
            failed_at=iso_utc(now),
            failed_at_ms=now,
        )

    def _record_failures(self, failures: list[NotifyFailure]) -> None:
        """Every record acknowledged by the broker before the offsets are committed."""
        topic = self.topics.notify_failures

        def report(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                self._produce_errors.append(str(err))

        for f in failures:
            key = f.idempotency_key or f"{f.source_topic}:{f.source_partition}:{f.source_offset}"
            self.producer.produce(topic, value=encode(f), key=key, on_delivery=report)
        while self.producer.flush(1.0) > 0:
            if self.stopping.is_set():
                raise Stopping("notify-failures records not acknowledged")
        if self._produce_errors:
            errors, self._produce_errors = self._produce_errors, []
            raise RuntimeError(f"could not write to {topic}: {errors[0]}")
