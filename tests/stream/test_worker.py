"""A real ``groupwatch stream`` worker on the real broker: a crafted sequence, exact results.

Everything is produced to partition 0 in a chosen order, so stream time is exactly known
at every step: window W0 = [T0, T0+60 s), grace 30 s, so W0 closes at stream time T0+90 s.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from groupwatch.admin.topics import create_topics
from groupwatch.contracts import Settings, Topics
from tests.support.metrics import metric
from tests.support.stream import (
    T0,
    Worker,
    close_all,
    exc,
    final_set,
    finals,
    produce,
    read_topic,
    send,
)

pytestmark = pytest.mark.kafka
S = 1000
W = 60 * S


def ws(i: int) -> int:
    return T0 + i * W


def scenario() -> tuple[list[Any], list[Any]]:
    """(exceptions, sends) in produce order, all for partition 0."""
    e: list[Any] = []
    s: list[Any] = []
    # g-count, W0: 4 x 10004 (3 senders), 2 x 10017, 1 x 80001, 1 x 99999 (unknown code)
    for i, sender in enumerate(["a", "b", "c", "a"]):
        e.append(exc("g-count", 10004, T0 + (1 + i) * S, sender=sender))
    e += [exc("g-count", 10017, T0 + 10 * S, sender="d"), exc("g-count", 10017, T0 + 11 * S, "d")]
    e += [exc("g-count", 80001, T0 + 20 * S), exc("g-count", 99999, T0 + 21 * S)]
    s += [send("g-count", T0 + (1 + i) * 3 * S) for i in range(12)]
    # noise: 2 failures in every window W0..W5
    e += [exc("g-noise", 10006, T0 + k * S) for k in (5, 6)]
    # dedup: same event_id (same sender and Random) 10 s apart -> once
    e += [exc("g-dup", 10004, T0 + 10 * S, "x", random=777)]
    e += [exc("g-dup", 10004, T0 + 20 * S, "x", random=777)]
    # grace: 10006 at 59 s, stream time to 80 s, then an in-grace event for W0 at 30 s
    e.append(exc("g-grace", 10006, T0 + 59 * S))
    e.append(exc("g-other", 10002, T0 + 80 * S))
    e.append(exc("g-grace", 10006, T0 + 30 * S))
    # stream time 95 s >= 90 s on both topics: W0 closes
    e.append(exc("g-other", 10002, T0 + 95 * S))
    s.append(send("g-other", T0 + 95 * S))
    # after close: late exception and late send for W0
    e.append(exc("g-grace", 10006, T0 + 40 * S))
    s.append(send("g-count", T0 + 10 * S, sender="late"))
    # windows W1..W5 in time order
    for w in range(1, 6):
        base = ws(w)
        e += [exc("g-noise", 10006, base + k * S) for k in (5, 6)]
        n_spike = 12 if w == 5 else 2
        e += [
            exc("g-spike", 10023, base + 10 * S + k * 100, sender=f"s{k}") for k in range(n_spike)
        ]
        if w == 2:
            e += [exc("g-thresh", 10007, base + 15 * S + k * 100) for k in range(25)]
        if w == 5:
            # the same event_id as in W0, 301 s later: counts again
            e.append(exc("g-dup", 10004, T0 + 311 * S, "x", random=777))
        s.append(send("g-other", base + 30 * S))
    return e, s


EXPECTED_FINALS: dict[tuple[str, int, int], dict[str, Any]] = {
    # (group, code, window index): expected fields
    ("g-count", 10004, 0): {"failures": 4, "senders": 3, "error_category": "invalid_param"},
    ("g-count", 10017, 0): {"failures": 2, "senders": 1, "error_category": "muted"},
    ("g-count", 80001, 0): {"failures": 1, "senders": 1, "error_category": "content_filtered"},
    ("g-count", 99999, 0): {"failures": 1, "senders": 1, "error_category": "other"},
    ("g-dup", 10004, 0): {"failures": 1, "senders": 1},
    ("g-dup", 10004, 5): {"failures": 1, "senders": 1},
    ("g-grace", 10006, 0): {"failures": 2, "error_category": "rate_limited"},
    ("g-other", 10002, 1): {"failures": 2, "error_category": "internal"},
    ("g-thresh", 10007, 2): {"failures": 25, "error_category": "permission"},
    **{("g-noise", 10006, w): {"failures": 2} for w in range(6)},
    **{("g-spike", 10023, w): {"failures": 2, "senders": 2} for w in range(1, 5)},
    ("g-spike", 10023, 5): {"failures": 12, "senders": 12},
}


@pytest.fixture(scope="module")
def run(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Produce the scenario, run one worker until every window closed, collect outputs."""
    import uuid

    tmp = tmp_path_factory.mktemp("stream-worker")
    prefix = f"gwtest-{uuid.uuid4().hex[:10]}"
    settings = Settings(
        kafka_bootstrap_servers=kafka_bootstrap,
        topic_prefix=prefix,
        state_dir=tmp / "state",
        partitions=3,
        stream_app_id=f"gw-stream-{prefix}",
        window_seconds=60,
        grace_seconds=30,
        dedup_seconds=300,
        alert_threshold=20,
        alert_baseline_factor=3.0,
        alert_min_failures=5,
        update_interval_seconds=1.0,
    )
    create_topics(settings)
    topics = Topics.from_settings(settings)
    e, s = scenario()
    produce(settings, topics.exceptions, e, partition=0)
    produce(settings, topics.sends, s, partition=0)
    close_all(settings, topics, T0 + 600 * S)
    worker = Worker(settings, tmp).start()
    try:
        worker.wait_healthy()
        want = len(EXPECTED_FINALS)
        windows = read_topic(
            settings, topics.failure_windows, until=lambda r: len(final_set(r)) >= want
        )
        late = read_topic(settings, topics.late_events, until=lambda r: len(r) >= 2, timeout=30)
        alerts = read_topic(settings, topics.alerts, until=lambda r: len(r) >= 2, timeout=30)
        text = worker.metrics()
    finally:
        worker.stop()
    yield {
        "settings": settings,
        "topics": topics,
        "windows": windows,
        "late": late,
        "alerts": alerts,
        "metrics": text,
        "log": worker.tail(20000),
    }


def _finals_by_key(run: dict[str, Any]) -> dict[tuple[str, int, int], dict[str, Any]]:
    out = {}
    for _, v in finals(run["windows"]):
        if v["group_id"].startswith("zz-sentinel"):
            continue
        out[(v["group_id"], v["error_code"], (v["window_start_ms"] - T0) // W)] = v
    return out


def test_exact_counts_categories_and_senders(run: dict[str, Any]) -> None:
    got = _finals_by_key(run)
    assert set(got) == set(EXPECTED_FINALS), run["log"][-3000:]
    for key, fields in EXPECTED_FINALS.items():
        for name, value in fields.items():
            assert got[key][name] == value, (key, name, got[key])
        assert got[key]["failures_per_minute"] == pytest.approx(got[key]["failures"])


def test_group_totals_and_failure_ratio(run: dict[str, Any]) -> None:
    got = _finals_by_key(run)
    count = got[("g-count", 10004, 0)]
    assert count["group_failures"] == 8
    assert count["group_sends"] == 12  # the late send is not counted
    assert count["failure_ratio"] == pytest.approx(8 / 20)
    # the app had sends in W0 but g-noise had none: ratio 1.0, not null
    noise = got[("g-noise", 10006, 0)]
    assert noise["group_sends"] == 0 and noise["failure_ratio"] == 1.0
    other = got[("g-other", 10002, 1)]
    # sends at T0+95 s and T0+90 s (W1), failures at T0+80 s and T0+95 s
    assert other["group_sends"] == 2 and other["failure_ratio"] == pytest.approx(0.5)


def test_window_fields_are_consistent(run: dict[str, Any]) -> None:
    v = _finals_by_key(run)[("g-count", 10004, 0)]
    start = datetime.fromtimestamp(T0 / 1000, tz=UTC)
    assert v["window_start"] == start.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    assert v["window_end"] == (start + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    assert v["window_end_ms"] - v["window_start_ms"] == W
    assert v["first_event_time_ms"] == T0 + 1 * S and v["last_event_time_ms"] == T0 + 4 * S
    assert v["group_type"] == "Public"


def test_exactly_one_final_per_key_equal_to_count(run: dict[str, Any]) -> None:
    per_key = Counter(k for k, _ in finals(run["windows"]))
    assert per_key and max(per_key.values()) == 1
    last: dict[str, dict[str, Any]] = {}
    for key, value in run["windows"]:
        if key in last:
            assert not last[key]["final"], f"record after the final for {key}"
        last[key] = value
    for key, value in run["windows"]:
        assert value["failures"] <= last[key]["failures"]
        assert key == (
            f"{value['sdkappid']}:{value['group_id']}:{value['error_code']}:"
            f"{value['window_start_ms']}"
        )


def test_late_events_go_to_late_topic(run: dict[str, Any]) -> None:
    late = [v for _, v in run["late"]]
    assert sorted((v["event_kind"], v["group_id"], v["event_time_ms"]) for v in late) == [
        ("exception", "g-grace", T0 + 40 * S),
        ("send", "g-count", T0 + 10 * S),
    ]
    for v in late:
        assert v["reason"] == "window_closed"
        assert v["window_start_ms"] == T0 and v["stream_time_ms"] >= T0 + 90 * S
        assert v["event"]["event_id"] == v["event_id"]
    assert metric(run["metrics"], "groupwatch_stream_late_events_total") == 2


def test_duplicates_counted_in_metric(run: dict[str, Any]) -> None:
    assert metric(run["metrics"], "groupwatch_stream_duplicates_dropped_total") == 1
    assert metric(run["metrics"], "groupwatch_stream_finals_total") >= len(EXPECTED_FINALS)


def test_records_arrive_through_the_fast_batch_drain(run: dict[str, Any]) -> None:
    """The batch drain (stream/faust_compat.py) handed the records over, not Faust's agent."""
    assert metric(run["metrics"], "groupwatch_stream_drained_batches_total") > 0
    assert "reached the Faust agent" not in run["log"]


def test_spike_fires_one_alert_noise_none(run: dict[str, Any]) -> None:
    got = sorted(
        (v["group_id"], (v["window_start_ms"] - T0) // W, v["reason"]) for _, v in run["alerts"]
    )
    assert got == [("g-spike", 5, "baseline"), ("g-thresh", 2, "threshold")]
    spike = next(v for _, v in run["alerts"] if v["group_id"] == "g-spike")
    assert spike["failures"] == 12
    assert spike["baseline"] == pytest.approx(2.0)
    assert spike["top_error_codes"] == [
        {"error_code": 10023, "error_category": "rate_limited", "failures": 12}
    ]
    keys = [k for k, _ in run["alerts"]]
    assert len(keys) == len(set(keys))


def test_kcat_reads_failure_windows(run: dict[str, Any], tmp_path: Path) -> None:
    kcat = shutil.which("kcat")
    if kcat is None:
        pytest.skip("kcat not installed (apt-get install -y kcat)")
    settings, topics = run["settings"], run["topics"]
    out = subprocess.run(
        [
            kcat,
            "-b",
            settings.bootstrap_servers,
            "-C",
            "-t",
            topics.failure_windows,
            "-e",
            "-J",
            "-o",
            "beginning",
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    seen = {(r["key"], json.dumps(json.loads(r["payload"]), sort_keys=True)) for r in rows}
    for key, value in run["windows"]:
        assert (key, json.dumps(value, sort_keys=True)) in seen
    key = f"1400000001:g-count:10004:{T0}"
    values = [json.loads(r["payload"]) for r in rows if r["key"] == key]
    assert values[-1]["final"] is True and values[-1]["failures"] == 4


def test_missing_topics_give_a_clear_error(make_settings: Any) -> None:
    from click.testing import CliRunner

    from groupwatch.cli import cli
    from tests.support.processes import settings_env

    settings = make_settings()  # no topics created for this prefix
    result = CliRunner().invoke(cli, ["stream", "--web-port", "0"], env=settings_env(settings))
    assert result.exit_code != 0
    assert "groupwatch topics create" in result.output
