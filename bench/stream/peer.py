"""``peer``: the stream worker against the library a Python team would pick instead,
Quix Streams, doing the same job on the same preloaded input, and the raw loop.

Input: ``--events`` records (70 % exceptions, 30 % sends; a few hundred groups with a
Pareto-skewed load, 8 error codes, one hour of event time, disorder of -10..+2 s, inside
the 30 s grace) on the two input topics, then one sentinel per partition of each topic
far enough ahead to close every window of the data. Every round, in rotating order:

* **groupwatch**: one ``groupwatch stream`` worker (all partitions) from process start,
  ``idle_close_seconds=0`` (event time only, as Quix); its finals are the ``final``
  records of ``<prefix>.failure-windows``;
* **quix-alos / quix-eos**: ``bench/stream/quix_app.py`` (Quix Streams 3.28 in its own
  venv, ``.venv-quix``, created by this bench on first use from
  ``bench/stream/quix-requirements.txt``) at-least-once and exactly-once;
* **raw**: the ``stream`` bench's confluent-kafka loop (decode, dict aggregation, no
  state store, no outputs), ``bench/stream/peer_raw.py``.

A side's output topics are created with ``message.timestamp.type=LogAppendTime``, so the
broker stamps each final when it is appended: a side's time runs from its first input
record (groupwatch: the first ``/metrics`` lag sample below the total; Quix: the time its
app saw its first record) to the append time of its last final; "from start" counts from
process start instead. CPU is utime + stime of the process (librdkafka threads included),
peak RSS its ``VmHWM``. The finals of every side are checked against each other and
against the counts computed here from the input (per app x group x code x window; sends
per app x group x window), with a diff when they differ."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import msgspec
from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
)

from bench import events as inputs
from bench.harness import (
    REFERENCE,
    ROOT,
    Run,
    Subject,
    common_options,
    kafka_option,
    stop_group,
    subjects,
)
from bench.processes import clean_env
from bench.stats import ratio
from bench.stream.worker import StreamWorker
from groupwatch.admin.topics import create_topics
from groupwatch.contracts import Settings, Topics, load_settings
from groupwatch.contracts.keys import group_key
from groupwatch.contracts.records import ExceptionEvent, SendEvent, encode
from tests.support.kafka import produce
from tests.support.processes import cpu_seconds

TARGET = (
    "groupwatch >= 1.0 x Quix Streams (exactly-once) ev/s with equal finals, >= 0.8 x raw; "
    "peak RSS <= Quix's"
)
QUIX_VENV = ROOT / ".venv-quix"
QUIX_REQUIREMENTS = Path(__file__).with_name("quix-requirements.txt")
QUIX_APP = Path(__file__).with_name("quix_app.py")
SENTINEL = "zz-sentinel-"
GUARANTEES = {"quix-alos": "at-least-once", "quix-eos": "exactly-once"}
# (app, group, code, window_start_ms) -> failures; (app, group, window_start_ms) -> sends
Finals = tuple[dict[tuple[str, str, int, int], int], dict[tuple[str, str, int], int]]


def quix_python() -> Path:
    """The Quix venv's interpreter, the venv created (pinned requirements) when missing."""
    python = QUIX_VENV / "bin" / "python"
    stamp = QUIX_VENV / ".installed"
    if stamp.exists() and stamp.stat().st_mtime >= QUIX_REQUIREMENTS.stat().st_mtime:
        return python
    click.echo(f"creating {QUIX_VENV} (quixstreams, {QUIX_REQUIREMENTS.name}) ...")
    subprocess.run([sys.executable, "-m", "venv", str(QUIX_VENV)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "-r", str(QUIX_REQUIREMENTS)],
        check=True,
    )
    stamp.touch()
    return python


def reference_finals(
    exceptions: list[ExceptionEvent], sends: list[SendEvent], window_ms: int
) -> Finals:
    """What every side must emit: counts of distinct events per window key."""
    failures: Counter[tuple[str, str, int, int]] = Counter()
    for ev in {e.event_id: e for e in exceptions}.values():
        w = ev.event_time_ms - ev.event_time_ms % window_ms
        failures[(ev.sdkappid, ev.group_id, ev.error_code, w)] += 1
    send_counts: Counter[tuple[str, str, int]] = Counter()
    for sv in {s.event_id: s for s in sends}.values():
        w = sv.event_time_ms - sv.event_time_ms % window_ms
        send_counts[(sv.sdkappid, sv.group_id, w)] += 1
    return dict(failures), dict(send_counts)


def sentinels(settings: Settings, topics: Topics, t: int) -> None:
    """One exception and one send per partition at event time ``t``: stream time passes
    every data window's end + grace on every partition of both topics."""
    for p in range(settings.partitions):
        group = f"{SENTINEL}{p}"
        key = group_key(inputs.APP, group).encode()
        exc = inputs.exception(inputs.APP, group, "s", p, t, inputs.CODES[0])
        snd = inputs.send(inputs.APP, group, "s", p, t)
        produce(settings.bootstrap_servers, topics.exceptions, [(key, encode(exc), t)], partition=p)
        produce(settings.bootstrap_servers, topics.sends, [(key, encode(snd), t)], partition=p)


def admin(settings: Settings) -> AdminClient:
    return AdminClient({"bootstrap.servers": settings.bootstrap_servers})


def log_append_time(settings: Settings, topic: str) -> None:
    """Let the broker stamp ``topic``'s records with their append time (the topic's other
    configs unchanged)."""
    entry = ConfigEntry(
        "message.timestamp.type",
        "LogAppendTime",
        incremental_operation=AlterConfigOpType.SET,
    )
    client = admin(settings)
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[entry])
    for fut in client.incremental_alter_configs([resource]).values():
        fut.result(30)


def output_topic(settings: Settings, name: str) -> None:
    """A fresh output topic for one Quix run, append-time stamped."""
    topic = NewTopic(
        name,
        settings.partitions,
        1,
        config={"message.timestamp.type": "LogAppendTime"},
    )
    client = admin(settings)
    for fut in client.create_topics([topic]).values():
        fut.result(30)


@dataclass
class Outputs:
    """Finals read from an output topic while a side runs (read_committed)."""

    settings: Settings
    topic: str
    parse: Callable[[bytes, Finals], bool]
    failures: dict[tuple[str, str, int, int], int] = field(default_factory=dict)
    sends: dict[tuple[str, str, int], int] = field(default_factory=dict)
    last_append_ms: int = 0
    records: int = 0

    def __post_init__(self) -> None:
        self.consumer = Consumer(
            {
                "bootstrap.servers": self.settings.bootstrap_servers,
                "group.id": f"bench-peer-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            }
        )
        self.consumer.assign(
            [TopicPartition(self.topic, p, self._end(p)) for p in range(self.settings.partitions)]
        )

    def _end(self, partition: int) -> int:
        """The partition's end offset now (retried while a fresh topic has no leader)."""
        deadline = time.monotonic() + 60
        while True:
            try:
                return int(
                    self.consumer.get_watermark_offsets(TopicPartition(self.topic, partition), 10)[
                        1
                    ]
                )
            except KafkaException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def poll(self, timeout: float) -> None:
        for msg in self.consumer.consume(10_000, timeout):
            value = msg.value()
            if msg.error() or value is None:
                continue
            self.records += 1
            if self.parse(value, (self.failures, self.sends)):
                self.last_append_ms = max(self.last_append_ms, msg.timestamp()[1])

    def complete(self, expected: Finals, with_sends: bool) -> bool:
        if len(self.failures) < len(expected[0]):
            return False
        return not with_sends or len(self.sends) >= len(expected[1])

    def close(self) -> None:
        self.consumer.close()


_windows = msgspec.json.Decoder()


def parse_groupwatch(value: bytes, into: Finals) -> bool:
    """A final of ``failure-windows`` into the finals (sends from ``group_sends``)."""
    rec = _windows.decode(value)
    if not rec.get("final") or rec["group_id"].startswith(SENTINEL):
        return False
    w = rec["window_start_ms"]
    into[0][(rec["sdkappid"], rec["group_id"], rec["error_code"], w)] = rec["failures"]
    if rec.get("group_sends"):  # 0 (or null) when the window had no sends
        into[1][(rec["sdkappid"], rec["group_id"], w)] = rec["group_sends"]
    return True


def parse_quix(value: bytes, into: Finals) -> bool:
    """A Quix window result (``{"start", "end", "value"}``) into the finals."""
    rec = _windows.decode(value)
    agg, w = rec["value"], rec["start"]
    if agg["group"].startswith(SENTINEL):
        return False
    if agg["kind"] == "exceptions":
        for code, n in agg["codes"].items():
            into[0][(agg["app"], agg["group"], int(code), w)] = n
    else:
        into[1][(agg["app"], agg["group"], w)] = agg["sends"]
    return True


def peak_rss_mib(pid: int) -> float | None:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return None


def follow(
    proc: subprocess.Popen[bytes],
    outputs: Outputs,
    expected: Finals,
    with_sends: bool,
    first: Callable[[], float | None],
    name: str,
    timeout: float,
    tail: Callable[[], str],
) -> tuple[float | None, dict[str, float | None]]:
    """Poll outputs until every expected final is there; (first record time, process
    facts) read before the process is stopped."""
    deadline = time.monotonic() + timeout
    first_at = None
    while not outputs.complete(expected, with_sends):
        if proc.poll() is not None:
            raise SideFailed(f"{name} exited {proc.returncode}: {tail()}")
        if time.monotonic() > deadline:
            click.echo(f"{name}: not every final after {timeout:.0f} s; stopping it")
            break
        if first_at is None:
            first_at = first()
        outputs.poll(0.2)
    if first_at is None:
        first_at = first()
    return first_at, {
        "cpu_s": cpu_seconds(proc.pid),
        "peak_rss_mib": peak_rss_mib(proc.pid),
    }


def rates(
    total: int, started: float, first_at: float | None, outputs: Outputs, facts: dict[str, Any]
) -> dict[str, float | None]:
    end = outputs.last_append_ms / 1000
    return {
        "events_per_s": total / (end - first_at) if first_at and end > first_at else None,
        "events_per_s_from_start": total / (end - started) if end > started else None,
        "cpu_us_per_event": facts["cpu_s"] / total * 1e6,
        "peak_rss_mib": facts["peak_rss_mib"],
        "finals": len(outputs.failures),
    }


def run_groupwatch(
    subject: Subject, settings: Settings, workdir: Path, total: int, expected: Finals
) -> tuple[dict[str, float | None], Finals]:
    topics = Topics.from_settings(settings)
    outputs = Outputs(settings, topics.failure_windows, parse_groupwatch)
    worker = StreamWorker(subject, settings, workdir)
    started = time.time()
    worker.start()
    assert worker.proc is not None
    seen_first: list[float] = []

    def first() -> float | None:
        lag = worker.lag(min_series=2 * settings.partitions)
        if lag is not None and lag < total:
            seen_first.append(time.time())
            return seen_first[0]
        return None

    try:
        first_at, facts = follow(
            worker.proc, outputs, expected, False, first, subject.name, 900, worker.tail
        )
        values = rates(total, started, first_at, outputs, facts)
        values["events_counted"] = worker.counter("groupwatch_stream_events_total")
    finally:
        worker.stop()
        outputs.close()
    return values, (outputs.failures, outputs.sends)


class SideFailed(click.ClickException):
    """A side's process exited before emitting every final."""


def run_quix_retrying(
    python: Path, guarantee: str, settings: Settings, workdir: Path, total: int, expected: Finals
) -> tuple[dict[str, float | None], Finals]:
    """``run_quix``, once more from scratch (fresh group, state and output topic) if the
    app crashed (Quix 3.28 exactly-once once failed on a record of its own changelog
    under load 20, ``KeyError: 'changelog__…'``); the crash is logged and counted."""
    try:
        return run_quix(python, guarantee, settings, workdir, total, expected)
    except SideFailed as exc:
        click.echo(f"{guarantee}: the app crashed, run again from scratch: {exc.message[-600:]}")
        values, got = run_quix(
            python,
            guarantee,
            settings,
            workdir.with_name(workdir.name + "-again"),
            total,
            expected,
        )
        values["crashed_runs"] = 1
        return values, got


def run_quix(
    python: Path,
    guarantee: str,
    settings: Settings,
    workdir: Path,
    total: int,
    expected: Finals,
) -> tuple[dict[str, float | None], Finals]:
    topics = Topics.from_settings(settings)
    workdir.mkdir(parents=True)
    out_topic = f"{settings.topic_prefix}.quix-{workdir.name}"
    output_topic(settings, out_topic)
    outputs = Outputs(settings, out_topic, parse_quix)
    first_file = workdir / "first"
    log_path = workdir / "quix.log"
    argv = [
        str(python),
        str(QUIX_APP),
        "--bootstrap",
        settings.bootstrap_servers,
        "--exceptions",
        topics.exceptions,
        "--sends",
        topics.sends,
        "--output",
        out_topic,
        "--group",
        f"quix-{workdir.name}-{uuid.uuid4().hex[:6]}",
        "--state-dir",
        str(workdir / "state"),
        "--guarantee",
        guarantee,
        "--window-ms",
        str(settings.window_seconds * 1000),
        "--grace-ms",
        str(settings.grace_seconds * 1000),
        "--first-file",
        str(first_file),
    ]
    with open(log_path, "ab") as log:
        started = time.time()
        proc = subprocess.Popen(
            argv,
            env=clean_env(),
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

        def first() -> float | None:
            with contextlib.suppress(OSError, ValueError):
                return float(first_file.read_text())
            return None

        def tail() -> str:
            return log_path.read_text(errors="replace")[-3000:]

        try:
            first_at, facts = follow(proc, outputs, expected, True, first, guarantee, 900, tail)
            values = rates(total, started, first_at, outputs, facts)
        finally:
            stop_group(proc)
            outputs.close()
    return values, (outputs.failures, outputs.sends)


def run_raw(settings: Settings, total: int) -> dict[str, float]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.stream.peer_raw",
            "--bootstrap",
            settings.bootstrap_servers,
            "--prefix",
            settings.topic_prefix,
            "--partitions",
            str(settings.partitions),
            "--total",
            str(total),
        ],
        env={**clean_env(), "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if done.returncode != 0:
        raise click.ClickException(f"raw loop exited {done.returncode}: {done.stderr[-3000:]}")
    out: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return out


def diff(name: str, got: Finals, want: Finals, limit: int = 10) -> list[str]:
    """Lines naming the window keys where ``got`` differs from ``want`` (first ``limit``)."""
    bad = [k for k in sorted(set(got[0]) | set(want[0])) if got[0].get(k) != want[0].get(k)]
    shown = [f"{name} failures {k}: {got[0].get(k)} (expected {want[0].get(k)})" for k in bad]
    # groupwatch carries sends only in a group's failure windows (group_sends): its keys
    send_keys = set(got[1]) | (set() if name not in GUARANTEES else set(want[1]))
    sends = [k for k in sorted(send_keys) if got[1].get(k) != want[1].get(k)]
    shown += [f"{name} sends {k}: {got[1].get(k)} (expected {want[1].get(k)})" for k in sends]
    lines = shown[:limit]
    if len(shown) > limit:
        lines.append(f"{name}: {len(shown) - limit} more window keys differ")
    return lines


@contextlib.contextmanager
def workspace() -> Iterator[Path]:
    tmp = Path(tempfile.mkdtemp(prefix="gw-bench-peer-"))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@click.command("peer", short_help="Stream worker vs Quix Streams (at-least / exactly-once), raw.")
@common_options
@kafka_option
@click.option(
    "--events",
    type=click.IntRange(1000),
    default=720_000,
    show_default=True,
    help="Input records (70 %% exceptions: the default gives ~504k exceptions).",
)
@click.option("--partitions", type=click.IntRange(1), default=3, show_default=True)
@click.option(
    "--sides",
    default="raw,groupwatch,quix-alos,quix-eos",
    show_default=True,
    help="Which sides to run (comma-separated).",
)
def command(
    rounds: int,
    baseline_ref: str | None,
    output: Path | None,
    bootstrap: str,
    events: int,
    partitions: int,
    sides: str,
) -> None:
    """The stream worker (from start, one process, all partitions) against a Quix Streams
    app computing the same per (app, group, error code) tumbling-window counts with the
    same window and grace and emitting finals (`.final()`), at-least-once and
    exactly-once, and the raw confluent-kafka loop, on the same preloaded input.
    Interleaved rounds, medians; events/s from first record to last final, CPU µs per
    event, peak RSS; the finals of every side checked against each other and the input.
    Last line: `stream/quix ratio R (groupwatch N ev/s, quix M ev/s, finals equal: yes|no)`."""
    chosen = [s.strip() for s in sides.split(",") if s.strip()]
    python = quix_python() if any(s in GUARANTEES for s in chosen) else None
    prefix = f"gwpeer-{uuid.uuid4().hex[:8]}"
    with workspace() as tmp:
        settings = load_settings(
            kafka_bootstrap_servers=bootstrap,
            topic_prefix=prefix,
            partitions=partitions,
            state_dir=tmp / "state",
            stream_app_id=f"gw-{prefix}",
            idle_close_seconds=0,
        )
        create_topics(settings)
        topics = Topics.from_settings(settings)
        log_append_time(settings, topics.failure_windows)
        exceptions, sends = inputs.mixed_hour(events)
        window_ms = settings.window_seconds * 1000
        expected = reference_finals(exceptions, sends, window_ms)
        last = max(max(e.event_time_ms for e in exceptions), max(s.event_time_ms for s in sends))
        inputs.produce(bootstrap, topics.exceptions, exceptions)
        inputs.produce(bootstrap, topics.sends, sends)
        sentinels(settings, topics, last + 2 * window_ms + settings.grace_seconds * 1000)
        total = len(exceptions) + len(sends) + 2 * partitions
        groups = len({e.group_id for e in exceptions})
        click.echo(
            f"preloaded {len(exceptions):,} exceptions + {len(sends):,} sends over {groups} "
            f"groups; {len(expected[0]):,} failure finals, {len(expected[1]):,} send finals "
            "expected"
        )
        del exceptions, sends
        with subjects(baseline_ref) as checkouts:
            run = Run(
                "peer",
                "groupwatch stream worker vs a Quix Streams app (same tumbling counts, "
                "finals) at-least-once and exactly-once, and the raw confluent-kafka loop",
                TARGET,
                {
                    "events": total,
                    "partitions": partitions,
                    "rounds": rounds,
                    "window_seconds": settings.window_seconds,
                    "grace_seconds": settings.grace_seconds,
                    "groups": groups,
                    "expected_failure_finals": len(expected[0]),
                    "quix_requirements": [
                        x for x in QUIX_REQUIREMENTS.read_text().split() if "==" in x
                    ],
                },
                checkouts,
            )
            order = [s for s in ("raw", "groupwatch", *GUARANTEES) if s in chosen]
            problems: list[str] = []
            for r in range(rounds):
                k = r % len(order)
                for side in order[k:] + order[:k]:
                    if side == "raw":
                        run.record(r, REFERENCE, run_raw(settings, total))
                    elif side == "groupwatch":
                        for s in run.order(r):
                            ws = settings.model_copy(
                                update={"stream_app_id": f"gw-{prefix}-{s.name}{r}"}
                            )
                            values, got = run_groupwatch(
                                s, ws, tmp / f"{s.name}-{r}", total, expected
                            )
                            found = diff(s.name, got, expected)
                            values["finals_equal"] = float(not found)
                            problems += found
                            run.record(r, s.name, values)
                    else:
                        assert python is not None
                        values, got = run_quix_retrying(
                            python,
                            GUARANTEES[side],
                            settings,
                            tmp / f"{side}-{r}",
                            total,
                            expected,
                        )
                        found = diff(side, got, expected)
                        values["finals_equal"] = float(not found)
                        problems += found
                        run.record(r, side, values)
            for line in problems[:40]:
                click.echo(line)
            result = run.finish(output, summarize, "events_per_s")
            click.echo(result["summary"]["line"])


def summarize(medians: dict[str, dict[str, float | None]]) -> tuple[dict[str, Any], str]:
    cur = medians.get("current", {})
    eos = medians.get("quix-eos", {})
    alos = medians.get("quix-alos", {})
    raw = medians.get(REFERENCE, {})
    gw = cur.get("events_per_s")
    equal = all(
        (m.get("finals_equal") or 0) == 1 for m in (cur, eos, alos) if m
    )  # medians of 0/1 per round: 1 only if most rounds were equal
    summary: dict[str, Any] = {
        "groupwatch_over_quix_eos": ratio(gw, eos.get("events_per_s")),
        "groupwatch_over_quix_alos": ratio(gw, alos.get("events_per_s")),
        "groupwatch_over_raw": ratio(gw, raw.get("raw_events_per_s")),
        "groupwatch_rss_over_quix_eos": ratio(cur.get("peak_rss_mib"), eos.get("peak_rss_mib")),
        "finals_equal": equal,
    }
    text = (
        f"{summary['groupwatch_over_quix_eos']} x Quix exactly-once, "
        f"{summary['groupwatch_over_quix_alos']} x at-least-once, "
        f"{summary['groupwatch_over_raw']} x raw ({_n(gw)} vs {_n(eos.get('events_per_s'))} / "
        f"{_n(alos.get('events_per_s'))} / {_n(raw.get('raw_events_per_s'))} ev/s); CPU "
        f"{_f(cur.get('cpu_us_per_event'))} vs {_f(eos.get('cpu_us_per_event'))} us/event; "
        f"RSS {_f(cur.get('peak_rss_mib'))} vs {_f(eos.get('peak_rss_mib'))} MiB; finals equal: "
        f"{'yes' if equal else 'no'}"
    )
    summary["line"] = (
        f"stream/quix ratio {summary['groupwatch_over_quix_eos']} (groupwatch {_n(gw)} ev/s, "
        f"quix {_n(eos.get('events_per_s'))} ev/s, finals equal: {'yes' if equal else 'no'})"
    )
    return summary, text


def _n(v: float | None) -> str:
    return "-" if v is None else f"{v:,.0f}"


def _f(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"
