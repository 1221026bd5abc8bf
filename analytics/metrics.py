"""The sink's batch statistics: Prometheus metrics plus recent batch latencies for /stats."""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class SinkStats:
    """Thread-safe counters of applied batches (written by the sink loop, read by HTTP)."""

    def __init__(self, keep: int = 20_000) -> None:
        self.registry = CollectorRegistry()
        self.batch_seconds = Histogram(
            "groupwatch_sink_batch_seconds",
            "Duration of one sink transaction (rows + offsets, BEGIN to COMMIT).",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=self.registry,
        )
        self.checkpoint_seconds = Histogram(
            "groupwatch_sink_checkpoint_seconds",
            "Duration of one checkpoint the sink ran between batches (WAL into the file).",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=self.registry,
        )
        self.rows = Counter(
            "groupwatch_sink_rows_total",
            "Records applied, by kind.",
            ["kind"],
            registry=self.registry,
        )
        self.rejects = Counter(
            "groupwatch_sink_rejects_total",
            "Records stored in sink_rejects (undecodable or unstorable).",
            registry=self.registry,
        )
        self.records = Counter(
            "groupwatch_sink_records_total",
            "Records consumed, by topic (suffix) and outcome: stored, duplicate (an "
            "exception or send already stored, or a redelivered offset), rejected "
            "(in sink_rejects). Every consumed record is counted exactly once.",
            ["topic", "outcome"],
            registry=self.registry,
        )
        self._outcomes: dict[str, dict[str, int]] = {}
        self.snapshot_seconds = Gauge(
            "groupwatch_sink_snapshot_seconds",
            "Duration of the last snapshot.",
            registry=self.registry,
        )
        self.snapshot_at = Gauge(
            "groupwatch_sink_snapshot_timestamp_seconds",
            "Unix time of the last published snapshot.",
            registry=self.registry,
        )
        self.queries = Counter(
            "groupwatch_sink_queries_total",
            "Served SQL requests, by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        self._lock = threading.Lock()
        self._recent: deque[tuple[float, float, int, float]] = deque(maxlen=keep)
        self._checkpoints: deque[tuple[float, float, float, int]] = deque(maxlen=keep)
        self.batches = 0
        self.checkpoints = 0
        self.total_rows = 0
        self.started_at = time.time()
        self.last_snapshot_at: float | None = None

    def record_batch(
        self, seconds: float, cpu_seconds: float, counts: dict[str, int], rejects: int
    ) -> None:
        """One committed batch: wall time, the sink thread's CPU time, rows by kind."""
        self.batch_seconds.observe(seconds)
        for kind, n in counts.items():
            if n:
                self.rows.labels(kind).inc(n)
        if rejects:
            self.rejects.inc(rejects)
        with self._lock:
            self.batches += 1
            self.total_rows += sum(counts.values()) + rejects
            self._recent.append((time.time(), seconds, sum(counts.values()) + rejects, cpu_seconds))

    def record_checkpoint(self, seconds: float, cpu_seconds: float, wal_bytes: int) -> None:
        """One checkpoint run between batches: wall time, CPU, the WAL it emptied."""
        self.checkpoint_seconds.observe(seconds)
        with self._lock:
            self.checkpoints += 1
            self._checkpoints.append((time.time(), seconds, cpu_seconds, wal_bytes))

    def count_records(self, topic: str, outcome: str, n: int) -> None:
        """``n`` consumed records of ``topic`` (its suffix) had ``outcome``."""
        if n <= 0:
            return
        self.records.labels(topic, outcome).inc(n)
        with self._lock:
            per_topic = self._outcomes.setdefault(topic, {})
            per_topic[outcome] = per_topic.get(outcome, 0) + n

    def outcomes(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {t: dict(o) for t, o in self._outcomes.items()}

    def record_snapshot(self, seconds: float) -> None:
        now = time.time()
        self.snapshot_seconds.set(seconds)
        self.snapshot_at.set(now)
        with self._lock:
            self.last_snapshot_at = now

    def summary(self, since: float | None = None) -> dict[str, Any]:
        """Batch counts and latencies; ``since`` (unix s) limits the latency window."""
        with self._lock:
            recent = [r for r in self._recent if since is None or r[0] >= since]
            checkpoints = [c for c in self._checkpoints if since is None or c[0] >= since]
            out: dict[str, Any] = {
                "batches": self.batches,
                "checkpoints": self.checkpoints,
                "rows": self.total_rows,
                "uptime_s": round(time.time() - self.started_at, 3),
                "last_snapshot_at": self.last_snapshot_at,
                "records": {t: dict(o) for t, o in self._outcomes.items()},
            }
        durations = sorted(r[1] for r in recent)
        out["window_batches"] = len(durations)
        out["window_rows"] = sum(r[2] for r in recent)
        if durations:
            out["max_batch_ms"] = round(durations[-1] * 1000, 3)
            out["p50_batch_ms"] = round(durations[len(durations) // 2] * 1000, 3)
            out["p95_batch_ms"] = round(durations[int(len(durations) * 0.95)] * 1000, 3)
            # CPU of the sink thread: a wall-time spike with low CPU means the host was busy
            out["max_batch_cpu_ms"] = round(max(r[3] for r in recent) * 1000, 3)
        else:
            out["max_batch_ms"] = out["p50_batch_ms"] = out["p95_batch_ms"] = None
            out["max_batch_cpu_ms"] = None
        # checkpoints run between batches (analytics/checkpoints.py): the batches queued
        # behind one wait this long on top of their own transaction
        out["window_checkpoints"] = len(checkpoints)
        out["max_checkpoint_ms"] = (
            round(max(c[1] for c in checkpoints) * 1000, 3) if checkpoints else None
        )
        out["checkpoint_ms_total"] = round(sum(c[1] for c in checkpoints) * 1000, 3)
        return out
