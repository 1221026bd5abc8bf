"""The in-memory state of one input partition: what it holds, how it is stored and loaded.

``PartitionState`` holds the open windows' aggregates, the dedup histories (and their
stored buckets), the baselines, the stream clock and the per-kind applied offsets. The
worker drives one batch at a time through one ``Effects``: ``begin``, then
``stream.step.step`` per record (``stream.ticks.tick`` for the ticks), then ``finish``.
Changed keys are only marked while stepping and serialised once, at ``finish`` (or just
before a window close deletes them, ``flush``); the meta is serialised once per batch.
"""

from __future__ import annotations

from dataclasses import dataclass

from groupwatch.contracts.records import EventKind
from stream import codecs, dedup, keys
from stream.aggregate import AppId, CodeAgg, Count, GroupId
from stream.alerts import AlertRules, Baseline
from stream.effects import Effects
from stream.windows import KINDS, StreamClock, WindowSpec


@dataclass(frozen=True)
class Config:
    spec: WindowSpec
    rules: AlertRules
    dedup_ms: int
    update_interval_ms: int
    idle_close_ms: int  # idle allowance; 0 = off (event time only)
    max_future_ms: int = 5_000  # stream time <= min(wall clock, received_at) + this


class PartitionState:
    """Open windows, dedup history, baselines and stream clock of one partition."""

    def __init__(
        self, partition: int, cfg: Config, seen: dict[EventKind, bool] | None = None
    ) -> None:
        self.p = partition
        self.cfg = cfg
        self.clock = StreamClock()
        if seen:
            for kind, flag in seen.items():
                self.clock.seen[kind] = self.clock.seen[kind] or flag
        self.offsets: dict[EventKind, int] = dict.fromkeys(KINDS, -1)
        self.codes: dict[tuple[int, str, str, int], CodeAgg] = {}
        # the same aggregates by group, then error code (finals and updates per group)
        self.by_group: dict[GroupId, dict[int, CodeAgg]] = {}
        self.gsends: dict[GroupId, Count] = {}
        self.asends: dict[AppId, Count] = {}
        # per input kind: event_id -> its counted occurrences
        self.dedup: dict[EventKind, dict[str, list[dedup.Occurrence]]] = {k: {} for k in KINDS}
        # stored form of the dedup histories: bucket -> event_id -> occurrences
        self.dbuckets: dict[dedup.BucketId, dict[str, list[dedup.Occurrence]]] = {}
        self.baselines: dict[tuple[str, str], Baseline] = {}
        self.windows: set[int] = set()  # starts of open windows (any key)
        self.pending_deletes: list[str] = []
        self.dirty: set[GroupId] = set()  # groups with changes not yet sent as an update
        self.last_update: dict[GroupId, int] = {}
        # wall clock (worker) of the last record read per input kind; None: since start
        self.last_read_ms: dict[EventKind, int | None] = dict.fromkeys(KINDS)
        self.next_close: int | None = None  # earliest close time of the open windows
        # keys changed since the last flush (serialised once per batch)
        self.dirty_codes: list[CodeAgg] = []  # each with ``dirty`` set
        self.dirty_gsends: set[GroupId] = set()
        self.dirty_asends: set[AppId] = set()
        self.dirty_buckets: set[dedup.BucketId] = set()
        self.meta_due = False
        # per-event constants
        self.size_ms = cfg.spec.size_ms
        self.grace_ms = cfg.spec.grace_ms
        self.dedup_ms = cfg.dedup_ms
        self.future_ms = cfg.max_future_ms

    # --- one batch -------------------------------------------------------------------
    def begin(self) -> Effects:
        """A new ``Effects`` for a batch of steps (takes the pending deletions)."""
        fx = Effects(deletes=self.pending_deletes)
        self.pending_deletes = []
        return fx

    def finish(self, fx: Effects) -> Effects:
        """Serialise the changed keys into ``fx``, and the meta once if it changed."""
        self.flush(fx)
        if self.meta_due:
            fx.meta = (keys.meta(self.p), codecs.encode_meta(self.offsets, self.clock))
            self.meta_due = False
        return fx

    def flush(self, fx: Effects) -> None:
        """Serialise every key changed since the last flush into ``fx.writes``."""
        p, writes, codes = self.p, fx.writes, self.codes
        for agg in self.dirty_codes:
            agg.dirty = False
            ck = (agg.ws, agg.app, agg.grp, agg.code)
            if codes.get(ck) is agg:
                writes[keys.code(p, *ck)] = codecs.encode_code(agg)
        for gk in self.dirty_gsends:
            g = self.gsends.get(gk)
            if g is not None:
                writes[keys.group_sends(p, *gk)] = codecs.encode_group_sends(gk, g)
        for ak in self.dirty_asends:
            a = self.asends.get(ak)
            if a is not None:
                writes[keys.app_sends(p, *ak)] = codecs.encode_app_sends(ak, a)
        for bk in self.dirty_buckets:
            entries = self.dbuckets.get(bk)
            if entries is not None:
                writes[keys.dedup(p, *bk)] = codecs.encode_bucket(bk, entries)
        self.dirty_codes.clear()
        self.dirty_gsends.clear()
        self.dirty_asends.clear()
        self.dirty_buckets.clear()

    # --- loading ---------------------------------------------------------------------
    def load(self, key: str, value: bytes) -> None:
        """Restore one stored entry (from the table, after a start or rebalance)."""
        kind = keys.key_type(self.p, key)
        if kind == keys.META:
            self.offsets, clock = codecs.decode_meta(value)
            for k, flag in self.clock.seen.items():  # keep startup knowledge
                clock.seen[k] = clock.seen[k] or flag
            self.clock = clock
        elif kind == keys.CODE:
            agg = codecs.decode_code(value)
            self.codes[(agg.ws, agg.app, agg.grp, agg.code)] = agg
            self.by_group.setdefault((agg.ws, agg.app, agg.grp), {})[agg.code] = agg
            self.windows.add(agg.ws)
        elif kind == keys.GROUP_SENDS:
            gk, count = codecs.decode_group_sends(value)
            self.gsends[gk] = count
            self.windows.add(gk[0])
        elif kind == keys.APP_SENDS:
            ak, count = codecs.decode_app_sends(value)
            self.asends[ak] = count
            self.windows.add(ak[0])
        elif kind == keys.DEDUP:
            input_kind, occurrences, bucket = codecs.decode_dedup(value)
            for event_id, t, offset in occurrences:
                self._remember(input_kind, event_id, t, offset)
            if bucket is None:
                # one history per event_id (before dedup buckets): moved into its buckets
                # (written before the next meta), the old key deleted after that meta
                self.pending_deletes.append(key)
            else:
                self.dirty_buckets.discard(bucket)
        elif kind == keys.BASELINE:
            group, baseline = codecs.decode_baseline(value)
            self.baselines[group] = baseline
        else:
            raise ValueError(f"unknown table key type in {key!r}")

    def _remember(self, kind: EventKind, event_id: str, t: int, offset: int) -> None:
        """Add one restored counted occurrence to its history and its bucket."""
        history = self.dedup[kind].setdefault(event_id, [])
        if any(o == offset for _, o in history):
            return
        history.append((t, offset))
        history.sort(key=lambda occ: occ[1])
        bk = dedup.bucket(kind, t, offset)
        self.dbuckets.setdefault(bk, {}).setdefault(event_id, []).append((t, offset))
        self.dirty_buckets.add(bk)

    def finish_load(self) -> None:
        """Drop entries of windows the meta already marks closed (deletes not yet stored)."""
        cu = self.clock.closed_until
        spec = self.cfg.spec
        if cu is not None:
            for ws in sorted(self.open_windows()):
                if spec.close_time(ws) <= cu:
                    self.pending_deletes.extend(self.drop_window(ws))
        self.recompute_next_close()

    # --- windows ---------------------------------------------------------------------
    def open_windows(self) -> set[int]:
        return set(self.windows)

    def recompute_next_close(self) -> None:
        spec = self.cfg.spec
        self.next_close = min((spec.close_time(ws) for ws in self.windows), default=None)

    def drop_window(self, ws: int) -> list[str]:
        """Forget a window's aggregates; the table keys to delete."""
        p = self.p
        self.windows.discard(ws)
        dropped: list[str] = []
        for ck in [k for k in self.codes if k[0] == ws]:
            del self.codes[ck]
            dropped.append(keys.code(p, *ck))
        for gk in [k for k in self.by_group if k[0] == ws]:
            del self.by_group[gk]
        for gk in [k for k in self.gsends if k[0] == ws]:
            del self.gsends[gk]
            dropped.append(keys.group_sends(p, *gk))
        for ak in [k for k in self.asends if k[0] == ws]:
            del self.asends[ak]
            dropped.append(keys.app_sends(p, *ak))
        for dk in [k for k in self.dirty if k[0] == ws]:
            self.dirty.discard(dk)
            self.last_update.pop(dk, None)
        self.recompute_next_close()
        return dropped
