"""All state of one input partition and the pure step function the Faust agent drives.

``PartitionState.apply`` takes one event (with its source offset) and returns
``Effects``: output records that must be acknowledged first, then table writes, then the
partition's meta record (written last: it marks the event as fully applied), then
deletions. Stored in that order on one changelog partition, any crash leaves a prefix
from which replaying the source topics from the committed offset gives the same result.

The worker drives a whole batch through one ``Effects``: ``begin``, ``step`` per event
(``tick`` for a tick), ``finish``. Changed keys are only marked during the steps and
serialised once, at ``finish`` (or before a window close deletes them); the meta is
serialised once per batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from groupwatch.contracts.keys import alert_key, iso_utc, window_key
from groupwatch.contracts.records import (
    Alert,
    ErrorCount,
    ExceptionEvent,
    FailureWindow,
    LateEvent,
    SendEvent,
    encode,
)
from stream import alerts, dedup
from stream.aggregate import CodeAgg, Count, GroupId, failure_window, group_totals
from stream.alerts import AlertRules, Baseline
from stream.dedup import BUCKET_MS, BUCKET_OFFSETS
from stream.windows import KINDS, Kind, StreamClock, WindowSpec

OutTopic = Literal["failure_windows", "late_events", "alerts", "dlq"]
TOP_CODES = 5


@dataclass(frozen=True)
class Output:
    topic: OutTopic
    key: str
    value: bytes


_OTHER = {"e": "s", "s": "e"}
# indexes into Effects.outcomes[kind]; REJECTED: sent to the DLQ (see stream.guard)
COUNTED, DUPLICATE, LATE, REPLAYED, REJECTED = range(5)


@dataclass
class Effects:
    """What one step (or one batch of steps) asks the Faust layer to do, in this order."""

    outputs: list[Output] = field(default_factory=list)  # send and await the acks
    writes: dict[str, bytes] = field(default_factory=dict)  # table puts
    meta: tuple[str, bytes] | None = None  # the partition meta, last put
    deletes: list[str] = field(default_factory=list)  # after meta
    updates: list[Output] = field(default_factory=list)  # non-final, no ack needed
    # per input kind: records counted / duplicate / late / replayed / rejected
    outcomes: dict[str, list[int]] = field(
        default_factory=lambda: {"e": [0, 0, 0, 0, 0], "s": [0, 0, 0, 0, 0]}
    )
    windows_opened: int = 0
    windows_closed: int = 0
    finals: int = 0
    alerts: int = 0

    def _total(self, outcome: int) -> int:
        return self.outcomes["e"][outcome] + self.outcomes["s"][outcome]

    @property
    def counted(self) -> int:
        return self._total(COUNTED)

    @property
    def duplicates(self) -> int:
        return self._total(DUPLICATE)

    @property
    def late(self) -> int:
        return self._total(LATE)

    @property
    def replayed(self) -> int:
        return self._total(REPLAYED)

    @property
    def rejected(self) -> int:
        return self._total(REJECTED)


@dataclass(frozen=True)
class Config:
    spec: WindowSpec
    rules: AlertRules
    dedup_ms: int
    update_interval_ms: int
    idle_close_ms: int  # idle allowance; 0 = off (event time only)
    max_future_ms: int = 5_000  # stream time <= min(wall clock, received_at) + this


def _dump(value: dict[str, Any]) -> bytes:
    return orjson.dumps(value)


class PartitionState:
    """Open windows, dedup history, baselines and stream clock of one partition."""

    def __init__(self, partition: int, cfg: Config, seen: dict[str, bool] | None = None) -> None:
        self.p = partition
        self.cfg = cfg
        self.clock = StreamClock()
        if seen:
            for kind, flag in seen.items():
                self.clock.seen[kind] = self.clock.seen[kind] or flag
        self.offsets: dict[str, int] = {"e": -1, "s": -1}
        self.codes: dict[tuple[int, str, str, int], CodeAgg] = {}
        # the same aggregates by group, then error code (finals and updates per group)
        self.by_group: dict[GroupId, dict[int, CodeAgg]] = {}
        self.gsends: dict[GroupId, Count] = {}
        self.asends: dict[tuple[int, str], Count] = {}
        self.dedup: dict[tuple[str, str], list[dedup.Occurrence]] = {}  # (kind, event_id)
        # stored form of the dedup histories: bucket -> event_id -> occurrences
        self.dbuckets: dict[dedup.BucketId, dict[str, list[dedup.Occurrence]]] = {}
        self.baselines: dict[tuple[str, str], Baseline] = {}
        self.windows: set[int] = set()  # starts of open windows (any key)
        self.pending_deletes: list[str] = []
        self.dirty: set[GroupId] = set()
        self.last_update: dict[GroupId, int] = {}
        # wall clock (worker) of the last record read per input kind; None: since start
        self.last_read_ms: dict[str, int | None] = {"e": None, "s": None}
        self.next_close: int | None = None  # earliest close time of the open windows
        # keys changed since the last flush (serialised once per batch)
        self._dirty_codes: list[CodeAgg] = []  # each with ``dirty`` set
        self._dirty_gsends: set[GroupId] = set()
        self._dirty_asends: set[tuple[int, str]] = set()
        self._dirty_buckets: set[dedup.BucketId] = set()
        self._meta_due = False
        # per-event constants
        self._size = cfg.spec.size_ms
        self._grace = cfg.spec.grace_ms
        self._dedup_ms = cfg.dedup_ms
        self._future_ms = cfg.max_future_ms

    # --- table keys ------------------------------------------------------------------
    def k_meta(self) -> str:
        return f"{self.p}|m"

    def k_code(self, ws: int, app: str, grp: str, code: int) -> str:
        return f"{self.p}|c|{ws}|" + orjson.dumps([app, grp, code]).decode()

    def k_gsend(self, ws: int, app: str, grp: str) -> str:
        return f"{self.p}|g|{ws}|" + orjson.dumps([app, grp]).decode()

    def k_asend(self, ws: int, app: str) -> str:
        return f"{self.p}|a|{ws}|" + orjson.dumps([app]).decode()

    def k_dedup(self, kind: str, bucket_start: int, chunk: int) -> str:
        return f"{self.p}|d|{kind}|{bucket_start}|{chunk}"

    def k_base(self, app: str, grp: str) -> str:
        return f"{self.p}|b|" + orjson.dumps([app, grp]).decode()

    # --- persistence -----------------------------------------------------------------
    def meta_value(self) -> bytes:
        return _dump({"off": self.offsets, "clock": self.clock.to_json()})

    def load(self, key: str, value: bytes) -> None:
        """Restore one stored entry (from the table, after a start or rebalance)."""
        parts = key.split("|", 3)
        if len(parts) < 2 or parts[0] != str(self.p):
            raise ValueError(f"table key {key!r} does not belong to partition {self.p}")
        kind = parts[1]
        d = orjson.loads(value)
        if kind == "m":
            self.offsets = {"e": int(d["off"]["e"]), "s": int(d["off"]["s"])}
            clock = StreamClock.from_json(d["clock"])
            for k, flag in self.clock.seen.items():  # keep startup knowledge
                clock.seen[k] = clock.seen[k] or flag
            self.clock = clock
        elif kind == "c":
            agg = CodeAgg.from_json(d)
            self.codes[(agg.ws, agg.app, agg.grp, agg.code)] = agg
            self.by_group.setdefault((agg.ws, agg.app, agg.grp), {})[agg.code] = agg
            self.windows.add(agg.ws)
        elif kind == "g":
            self.gsends[(d["ws"], d["app"], d["grp"])] = Count(d["n"], d["off"])
            self.windows.add(d["ws"])
        elif kind == "a":
            self.asends[(d["ws"], d["app"])] = Count(d["n"], d["off"])
            self.windows.add(d["ws"])
        elif kind == "d" and "id" in d:
            # one history per event_id (before dedup buckets): move it into its buckets
            # (written before the next meta), delete the old key after that meta
            for t, o in d["h"]:
                self._remember(d["k"], d["id"], int(t), int(o))
            self.pending_deletes.append(key)
        elif kind == "d":
            for event_id, history in d["h"].items():
                for t, o in history:
                    self._remember(d["k"], event_id, int(t), int(o))
            self._dirty_buckets.discard((d["k"], int(d["b"]), int(d["c"])))
        elif kind == "b":
            self.baselines[(d["app"], d["grp"])] = Baseline.from_json(d["b"])
        else:
            raise ValueError(f"unknown table key type in {key!r}")

    def _remember(self, kind: str, event_id: str, t: int, offset: int) -> None:
        """Add one restored counted occurrence to its history and its bucket."""
        history = self.dedup.setdefault((kind, event_id), [])
        if any(o == offset for _, o in history):
            return
        history.append((t, offset))
        history.sort(key=lambda occ: occ[1])
        bk = dedup.bucket(kind, t, offset)
        self.dbuckets.setdefault(bk, {}).setdefault(event_id, []).append((t, offset))
        self._dirty_buckets.add(bk)

    def finish_load(self) -> None:
        """Drop entries of windows the meta already marks closed (deletes not yet stored)."""
        cu = self.clock.closed_until
        spec = self.cfg.spec
        if cu is not None:
            for ws in sorted(self.open_windows()):
                if spec.close_time(ws) <= cu:
                    self.pending_deletes.extend(self._drop_window(ws))
        self._recompute_next_close()

    def _recompute_next_close(self) -> None:
        spec = self.cfg.spec
        self.next_close = min((spec.close_time(ws) for ws in self.windows), default=None)

    # --- queries ---------------------------------------------------------------------
    def open_windows(self) -> set[int]:
        return set(self.windows)

    def _group_record(
        self, agg: CodeAgg, failures: int, final: bool, updated_at_ms: int
    ) -> FailureWindow:
        gs = self.gsends.get(agg.group)
        totals = group_totals(failures, gs.n if gs else 0, (agg.ws, agg.app) in self.asends)
        return failure_window(agg, totals, self.cfg.spec.size_ms, final, updated_at_ms)

    # --- the step --------------------------------------------------------------------
    def begin(self) -> Effects:
        """A new ``Effects`` for one step or a batch of steps (takes pending deletions)."""
        fx = Effects(deletes=self.pending_deletes)
        self.pending_deletes = []
        return fx

    def finish(self, fx: Effects) -> Effects:
        """Serialise the changed keys into ``fx``, and the meta once if it changed."""
        self._flush(fx)
        if self._meta_due:
            fx.meta = (self.k_meta(), self.meta_value())
            self._meta_due = False
        return fx

    def apply(
        self,
        kind: Kind,
        offset: int,
        event: ExceptionEvent | SendEvent,
        source_topic: str,
        now_ms: int,
    ) -> Effects:
        """Apply one input event read at ``offset`` of its topic-partition."""
        fx = self.begin()
        self.step(fx, kind, offset, event, source_topic, now_ms)
        return self.finish(fx)

    def step(
        self,
        fx: Effects,
        kind: Kind,
        offset: int,
        event: ExceptionEvent | SendEvent,
        source_topic: str,
        now_ms: int,
    ) -> None:
        """Apply one event in memory; its writes are serialised by ``finish``.

        The hot path of the worker: the window test, clock, dedup and counting are
        written out here (no per-event helper calls or temporary objects beyond the
        dict keys).
        """
        self.last_read_ms[kind] = now_ms
        offsets = self.offsets
        if offset <= offsets[kind]:
            fx.outcomes[kind][REPLAYED] += 1
            return
        size = self._size
        t = event.event_time_ms
        ws = t - t % size
        close = ws + size + self._grace
        clock = self.clock
        stream_time = clock.stream_time
        st = stream_time[kind]
        cu = clock.closed_until
        if (st is not None and st >= close) or (cu is not None and cu >= close):
            self._late(fx, kind, event, ws, source_topic, now_ms)
            clock.observe(kind, t)
            st = stream_time[kind]
        else:
            clock.seen[kind] = True
            if st is None or t > st:
                # stream time stays within max_future of the clocks that read the event
                # (the ingress's receive time, the worker's wall clock): an event dated
                # ahead is counted in its own window but does not move the clock there
                rcv = event.received_at_ms
                cap = (rcv if rcv < now_ms else now_ms) + self._future_ms
                if t <= cap:
                    stream_time[kind] = st = t
                elif st is None or cap > st:
                    stream_time[kind] = st = cap
            event_id = event.event_id
            dk = (kind, event_id)
            dedup_map = self.dedup
            history = dedup_map.get(dk)
            occ = (t, offset)
            if history is None:
                counted = changed = True
                dedup_map[dk] = [occ]
            else:
                decision = dedup.decide(history, t, offset, self._dedup_ms)
                counted, changed = decision.counted, decision.changed
                if changed:
                    dedup_map[dk] = decision.history
            if not counted:
                fx.outcomes[kind][DUPLICATE] += 1
            else:
                fx.outcomes[kind][COUNTED] += 1
                if changed:
                    bk = (kind, t - t % BUCKET_MS, offset // BUCKET_OFFSETS)
                    entries = self.dbuckets.get(bk)
                    if entries is None:
                        entries = self.dbuckets[bk] = {}
                    held = entries.get(event_id)
                    if held is None:
                        entries[event_id] = [occ]
                    else:
                        held.append(occ)
                    self._dirty_buckets.add(bk)
                if ws not in self.windows:
                    fx.windows_opened += 1
                    self.windows.add(ws)
                    if self.next_close is None or close < self.next_close:
                        self.next_close = close
                app, grp = event.sdkappid, event.group_id
                gk = (ws, app, grp)
                if isinstance(event, ExceptionEvent):
                    by_code = self.by_group.get(gk)
                    if by_code is None:
                        by_code = self.by_group[gk] = {}
                    code = event.error_code
                    agg = by_code.get(code)
                    if agg is None:
                        agg = by_code[code] = self.codes[(ws, app, grp, code)] = CodeAgg(
                            ws, app, grp, code, event.error_category
                        )
                    if offset > agg.off:  # CodeAgg.add, written out
                        agg.n += 1
                        sender = event.from_account
                        if sender:
                            agg.senders.add(sender)
                        if not agg.gt:
                            gt = event.group_type
                            if gt:
                                agg.gt = gt
                        first = agg.first
                        if first is None or t < first:
                            agg.first = t
                        last = agg.last
                        if last is None or t > last:
                            agg.last = t
                        agg.off = offset
                        if not agg.dirty:
                            agg.dirty = True
                            self._dirty_codes.append(agg)
                else:
                    g = self.gsends.get(gk)
                    if g is None:
                        g = self.gsends[gk] = Count()
                    if offset > g.off:  # Count.add, written out
                        g.n += 1
                        g.off = offset
                        self._dirty_gsends.add(gk)
                    ak = (ws, app)
                    a = self.asends.get(ak)
                    if a is None:
                        a = self.asends[ak] = Count()
                    if offset > a.off:
                        a.n += 1
                        a.off = offset
                        self._dirty_asends.add(ak)
                self.dirty.add(gk)
        offsets[kind] = offset
        self._meta_due = True
        nc = self.next_close
        if nc is not None:
            # clock.close_mark() >= nc, written out: closed_until reached it, or the
            # watermark (min stream time of the seen topics; this topic is seen) did
            cu = clock.closed_until
            if (cu is not None and cu >= nc) or (
                st is not None
                and st >= nc
                and (
                    not clock.seen[_OTHER[kind]]
                    or ((o := stream_time[_OTHER[kind]]) is not None and o >= nc)
                )
            ):
                self._close_ready(fx)

    def _late(
        self,
        fx: Effects,
        kind: Kind,
        event: ExceptionEvent | SendEvent,
        ws: int,
        source_topic: str,
        now_ms: int,
    ) -> None:
        """Report an event whose window already closed (not counted)."""
        clock, t = self.clock, event.event_time_ms
        marks = [m for m in (clock.stream_time[kind], clock.closed_until) if m is not None]
        late_rec = LateEvent(
            reason="window_closed",
            source_topic=source_topic,
            event_kind="exception" if kind == "e" else "send",
            event_id=event.event_id,
            sdkappid=event.sdkappid,
            group_id=event.group_id,
            event_time_ms=t,
            window_start_ms=ws,
            window_end_ms=self.cfg.spec.end(ws),
            stream_time_ms=max(marks, default=t),
            detected_at_ms=now_ms,
            event=orjson.loads(encode(event)),
        )
        fx.outputs.append(
            Output("late_events", f"{event.sdkappid}:{event.group_id}", encode(late_rec))
        )
        fx.outcomes[kind][LATE] += 1

    def reject(self, fx: Effects, kind: Kind, offset: int, dlq: Output, now_ms: int) -> None:
        """Record a record that cannot be applied: its DLQ record, and its offset as done.

        The DLQ record is acknowledged before the meta covering ``offset`` is written, so
        a crash in between re-sends it (at least once); a replay past the meta skips it.
        """
        fx.outputs.append(dlq)
        fx.outcomes[kind][REJECTED] += 1
        self.last_read_ms[kind] = now_ms
        if offset > self.offsets[kind]:
            self.offsets[kind] = offset
            self._meta_due = True

    def is_replay(self, fx: Effects, kind: Kind, offset: int) -> bool:
        """True (counted as replayed) when ``offset`` of ``kind`` was already applied."""
        if offset <= self.offsets[kind]:
            fx.outcomes[kind][REPLAYED] += 1
            return True
        return False

    def _flush(self, fx: Effects) -> None:
        """Serialise every key changed since the last flush into ``fx.writes``."""
        writes = fx.writes
        codes = self.codes
        for agg in self._dirty_codes:
            agg.dirty = False
            ck = (agg.ws, agg.app, agg.grp, agg.code)
            if codes.get(ck) is agg:
                writes[self.k_code(*ck)] = _dump(agg.to_json())
        for gk in self._dirty_gsends:
            g = self.gsends.get(gk)
            if g is not None:
                ws, app, grp = gk
                writes[self.k_gsend(*gk)] = _dump(
                    {"ws": ws, "app": app, "grp": grp, "n": g.n, "off": g.off}
                )
        for ak in self._dirty_asends:
            a = self.asends.get(ak)
            if a is not None:
                ws, app = ak
                writes[self.k_asend(*ak)] = _dump({"ws": ws, "app": app, "n": a.n, "off": a.off})
        for bk in self._dirty_buckets:
            entries = self.dbuckets.get(bk)
            if entries is not None:
                kind, start, chunk = bk
                writes[self.k_dedup(*bk)] = _dump({"k": kind, "b": start, "c": chunk, "h": entries})
        self._dirty_codes.clear()
        self._dirty_gsends.clear()
        self._dirty_asends.clear()
        self._dirty_buckets.clear()

    # --- closing ---------------------------------------------------------------------
    def _close_ready(self, fx: Effects) -> None:
        spec = self.cfg.spec
        ready = self.clock.closable(spec, self.windows)
        mark = self.clock.close_mark()
        if ready:
            self._flush(fx)  # keys are put (with their last value) before being deleted
        for ws in ready:
            self._close_window(fx, ws)
        if ready and mark is not None:
            self.clock.advance_to(mark)
            self._prune_dedup(fx)

    def _close_window(self, fx: Effects, ws: int) -> None:
        spec, rules = self.cfg.spec, self.cfg.rules
        closed_at = spec.close_time(ws)
        by_group = self.by_group
        for gk in sorted(gk for gk in by_group if gk[0] == ws):
            _, app, grp = gk
            codes = by_group[gk]
            aggs = [codes[c] for c in sorted(codes)]
            total = sum(a.n for a in aggs)
            records = [self._group_record(a, total, True, closed_at) for a in aggs]
            for rec in records:
                fx.outputs.append(
                    Output(
                        "failure_windows",
                        window_key(app, grp, rec.error_code, ws),
                        encode(rec),
                    )
                )
                fx.finals += 1
            first = records[0]
            failures = first.group_failures
            prior = self.baselines.get((app, grp))
            base = alerts.baseline_for(prior, ws, spec.size_ms, rules.ewma_alpha)
            for reason in alerts.reasons(failures, base, rules):
                top = sorted(aggs, key=lambda a: (-a.n, a.code))[:TOP_CODES]
                alert = Alert(
                    sdkappid=app,
                    group_id=grp,
                    group_type=first.group_type,
                    window_start=iso_utc(ws),
                    window_end=iso_utc(spec.end(ws)),
                    window_start_ms=ws,
                    window_end_ms=spec.end(ws),
                    reason=reason,  # type: ignore[arg-type]
                    failures=failures,
                    threshold=rules.threshold,
                    baseline=None if base is None else round(base, 6),
                    baseline_factor=rules.baseline_factor,
                    top_error_codes=[
                        ErrorCount(error_code=a.code, error_category=a.cat, failures=a.n)
                        for a in top
                    ],
                    group_sends=first.group_sends,
                    failure_ratio=first.failure_ratio,
                    raised_at=iso_utc(closed_at),
                    raised_at_ms=closed_at,
                )
                fx.outputs.append(Output("alerts", alert_key(app, grp, ws, reason), encode(alert)))
                fx.alerts += 1
            updated = alerts.update(prior, ws, failures, spec.size_ms, rules.ewma_alpha)
            if updated != prior:
                self.baselines[(app, grp)] = updated
                fx.writes[self.k_base(app, grp)] = _dump(
                    {"app": app, "grp": grp, "b": updated.to_json()}
                )
        fx.deletes.extend(self._drop_window(ws))
        fx.windows_closed += 1

    def _drop_window(self, ws: int) -> list[str]:
        self.windows.discard(ws)
        keys: list[str] = []
        for ck in [k for k in self.codes if k[0] == ws]:
            del self.codes[ck]
            keys.append(self.k_code(*ck))
        for gk in [k for k in self.by_group if k[0] == ws]:
            del self.by_group[gk]
        for gk in [k for k in self.gsends if k[0] == ws]:
            del self.gsends[gk]
            keys.append(self.k_gsend(*gk))
        for ak in [k for k in self.asends if k[0] == ws]:
            del self.asends[ak]
            keys.append(self.k_asend(*ak))
        for dk in [k for k in self.dirty if k[0] == ws]:
            self.dirty.discard(dk)
            self.last_update.pop(dk, None)
        self._recompute_next_close()
        return keys

    def _prune_dedup(self, fx: Effects) -> None:
        spec = self.cfg.spec
        keep = spec.size_ms + spec.grace_ms + self.cfg.dedup_ms
        for bk in list(self.dbuckets):
            kind = bk[0]
            st = self.clock.stream_time[kind]
            if st is None or not dedup.bucket_expired(bk[1], st - keep):
                continue
            # the bucket's occurrences leave the in-memory histories too (only the
            # expired entries are visited, not every history)
            histories = self.dedup
            for event_id, gone in self.dbuckets.pop(bk).items():
                dk = (kind, event_id)
                history = histories.pop(dk, None)
                if history is None or history == gone:  # usually all of it is in here
                    continue
                rest = [occ for occ in history if occ not in gone]
                if rest:
                    histories[dk] = rest
            self._dirty_buckets.discard(bk)
            fx.deletes.append(self.k_dedup(*bk))

    # --- wall-clock work -------------------------------------------------------------
    def tick(
        self,
        now_ms: int,
        fx: Effects | None = None,
        unread: Mapping[str, bool] | None = None,
    ) -> Effects:
        """Non-final updates due now, and the idle close (``idle_mark``).

        ``unread[kind]`` says the worker knows of records of that input topic-partition
        it has not read yet (None: nothing unread). With ``fx`` (a batch in progress) the
        effects are added to it; alone, the changed keys and the meta are serialised.
        """
        alone = fx is None
        if fx is None:
            fx = self.begin()
        interval = self.cfg.update_interval_ms
        for gk in sorted(self.dirty):
            if now_ms - self.last_update.get(gk, -(10**15)) < interval:
                continue
            self.dirty.discard(gk)
            self.last_update[gk] = now_ms
            codes = self.by_group.get(gk)
            aggs = [codes[c] for c in sorted(codes)] if codes else []
            total = sum(a.n for a in aggs)
            for agg in aggs:
                rec = self._group_record(agg, total, False, now_ms)
                fx.updates.append(
                    Output(
                        "failure_windows",
                        window_key(agg.app, agg.grp, agg.code, agg.ws),
                        encode(rec),
                    )
                )
        last = self.last_read_ms
        for k in KINDS:
            if last[k] is None:  # after a start: the quiet time counts from the first tick
                last[k] = now_ms
        mark = self.idle_mark(now_ms, unread)
        nc = self.next_close
        spec = self.cfg.spec
        ready = (
            sorted(ws for ws in self.windows if spec.close_time(ws) <= mark)
            if mark is not None and nc is not None and nc <= mark
            else []
        )
        if ready:
            self._flush(fx)
            for ws in ready:
                self._close_window(fx, ws)
            # closed up to the last window closed (not to ``mark``): an event for a
            # window that never opened is still counted (and closed at the next tick)
            self.clock.advance_to(spec.close_time(ready[-1]))
            self._prune_dedup(fx)
            self._meta_due = True
        return self.finish(fx) if alone else fx

    def idle_mark(self, now_ms: int, unread: Mapping[str, bool] | None = None) -> int | None:
        """The close watermark with idle input topic-partitions taken at wall clock - A.

        A = ``idle_close_ms``. An input topic-partition is *idle* when nothing of it is
        unread and no record of it was read for A (worker wall clock); an idle topic holds
        windows open only up to ``now - A`` (its own stream time if later). The mark is
        the minimum over the topics that carry records; None when no topic is idle (then
        event time alone closes windows, in ``step``) or the idle close is off.
        """
        allowance = self.cfg.idle_close_ms
        if allowance <= 0:
            return None
        floor = now_ms - allowance
        clock = self.clock
        last = self.last_read_ms
        low: int | None = None
        any_idle = False
        for k in KINDS:
            if not clock.seen[k]:
                continue
            st = clock.stream_time[k]
            read = last[k]
            if not (unread and unread.get(k)) and (read is None or now_ms - read >= allowance):
                any_idle = True
                t = floor if st is None or st < floor else st
            elif st is None:
                return None
            else:
                t = st
            if low is None or t < low:
                low = t
        return low if any_idle else None
