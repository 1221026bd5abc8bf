"""The deterministic callback plan: what to send, in order, with event times on a simulated clock.

Nothing here touches the network or the wall clock: the same ``SimConfig`` (seed included)
always yields the same sequence, so tests and ledgers are reproducible. ``RequestTime`` and
``Sign`` are added by the sender at send time (they must be close to the real clock).

Event time rule (documented in docs/SIMULATE.md):
- The simulated clock starts at ``event_time_start_ms`` and advances ``step_ms`` per
  callback (a fifth of that during the rate-limit storm, so the storm is dense in time).
- On-time events carry the clock minus a small jitter; duplicates repeat an earlier body a
  few callbacks later. Both stay within ``disorder_ms`` (half the grace) behind the clock,
  so they are on time on every partition.
- A late event of group G and kind K (exception or send) is only planned after G already
  had a K event ``ref``; its event time is at least ``window + grace + late_margin`` older
  than ``ref``'s. The sender sends it only after ``ref`` was answered, and G's events share
  one partition (key ``appid:group``), so that partition's stream time is >= ref's event
  time and the late event's window has closed there, whatever other partitions saw.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from groupwatch.contracts.keys import make_event_id
from groupwatch.contracts.records import CMD_AFTER_SEND_MSG, CMD_SEND_MSG_EXCEPTION
from groupwatch.simulate import population
from groupwatch.simulate.population import ERROR_INFO, Group, WeightedChoice
from groupwatch.simulate.signing import App

CMD_BEFORE_SEND_MSG: Final = "Group.CallbackBeforeSendMsg"

Kind = Literal["exception", "send", "other"]
_COMMANDS: Final[dict[str, str]] = {
    "exception": CMD_SEND_MSG_EXCEPTION,
    "send": CMD_AFTER_SEND_MSG,
    "other": CMD_BEFORE_SEND_MSG,
}


@dataclass(frozen=True)
class SimConfig:
    """Everything that shapes the plan. Rates are shares of all callbacks."""

    apps: tuple[App, ...]
    event_time_start_ms: int
    step_ms: float = 10.0
    seed: int = 1
    groups: int = 200
    window_seconds: int = 60
    grace_seconds: int = 30
    send_ratio: float = 0.6
    other_rate: float = 0.02
    dup_rate: float = 0.02
    late_rate: float = 0.01
    late_margin_ms: int | None = None  # default: one window
    storm_start: int | None = 1000  # callback index where the storm begins; None = no storm
    storm_length: int = 500
    string_event_time_rate: float = 0.1  # EventTime as a digit string, like the spec sample

    def __post_init__(self) -> None:
        if not self.apps:
            raise ValueError("at least one app (--app appid[:token]) is needed")
        if len({a.sdkappid for a in self.apps}) != len(self.apps):
            raise ValueError("each --app SdkAppid may be given once")
        if self.step_ms <= 0:
            raise ValueError("the simulated clock step must be > 0 ms")
        if self.event_time_start_ms <= 0:
            raise ValueError("--event-time-start must be after 1970")
        if self.window_seconds < 1 or self.grace_seconds < 0:
            raise ValueError("window must be >= 1 s and grace >= 0 s")
        for name in ("send_ratio", "other_rate", "dup_rate", "late_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name.replace('_', '-')} must be between 0 and 1, got {value}")
        if self.other_rate + self.dup_rate + self.late_rate >= 1.0:
            raise ValueError("other-rate + dup-rate + late-rate must stay below 1")
        if self.storm_length < 0:
            raise ValueError("storm length must be >= 0")

    @property
    def window_ms(self) -> int:
        return self.window_seconds * 1000

    @property
    def disorder_ms(self) -> float:
        """How far behind the clock on-time events (jitter, duplicates) may be."""
        return self.grace_seconds * 1000 / 2

    @property
    def late_by_ms(self) -> int:
        """A late event is at least this much older than its reference event."""
        margin = self.window_ms if self.late_margin_ms is None else self.late_margin_ms
        return self.window_ms + self.grace_seconds * 1000 + max(1, margin)


@dataclass(frozen=True)
class Planned:
    """One callback to send."""

    seq: int
    kind: Kind
    app: App
    group_id: str
    group_type: str
    from_account: str
    event_time_ms: int
    event_id: str
    body: dict[str, Any] = field(compare=True)
    client_ip: str = "127.0.0.1"
    platform: str = "Android"
    error_code: int | None = None
    duplicate_of: int | None = None  # seq of the original delivery
    late_ref: int | None = None  # seq of the event that makes this one late
    late_ref_time_ms: int | None = None
    storm: bool = False
    flush: bool = False

    @property
    def command(self) -> str:
        return _COMMANDS[self.kind]

    @property
    def late(self) -> bool:
        return self.late_ref is not None


class Generator:
    """Iterate to get the plan, one ``Planned`` per callback, forever."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.groups: list[Group] = population.make_groups(
            self.rng, list(config.apps), config.groups
        )
        self._by_key = {(g.app.sdkappid, g.group_id): g for g in self.groups}
        self._group_pick = WeightedChoice(
            list(self.groups), population.zipf_weights(len(self.groups))
        )
        self._codes = population.code_choice()
        self._storm_codes = population.storm_code_choice()
        self._platforms = population.platform_choice()
        self._msg_types = population.msg_type_choice()
        hot = self.groups[1 : min(len(self.groups), 5)] or self.groups
        self.storm_group: Group = self.rng.choice(hot)
        self.clock_ms: float = float(config.event_time_start_ms)
        self.max_event_time_ms: int = config.event_time_start_ms
        self.seq = 0
        self._used_ids: set[tuple[str, str, str, int]] = set()
        self._msg_seq: dict[str, int] = {}
        self._last: dict[tuple[str, str, str], tuple[int, int]] = {}  # (app,group,kind)->seq,t
        self._pending_dups: dict[int, list[Planned]] = {}
        self.touched: dict[tuple[str, str], Group] = {}  # every (app, group) that got an event

    def __iter__(self) -> Iterator[Planned]:
        return self

    def __next__(self) -> Planned:
        planned = self._next()
        self.seq += 1
        if planned.kind != "other":
            key = (planned.app.sdkappid, planned.group_id)
            if key not in self.touched:
                self.touched[key] = self._by_key[key]
            if not planned.late:
                self.max_event_time_ms = max(self.max_event_time_ms, planned.event_time_ms)
                self._last[(planned.app.sdkappid, planned.group_id, planned.kind)] = (
                    planned.seq,
                    planned.event_time_ms,
                )
        return planned

    def take(self, n: int) -> list[Planned]:
        return [next(self) for _ in range(n)]

    # --- one step ---------------------------------------------------------------------
    def _in_storm(self) -> bool:
        start = self.config.storm_start
        return start is not None and start <= self.seq < start + self.config.storm_length

    def _next(self) -> Planned:
        cfg, rng = self.config, self.rng
        storm = self._in_storm()
        self.clock_ms += cfg.step_ms / 5 if storm else cfg.step_ms

        due = self._pending_dups.get(self.seq)
        if due:
            original = due.pop(0)
            if due:  # more than one due now: push the rest one callback later
                self._pending_dups.setdefault(self.seq + 1, []).extend(due)
            del self._pending_dups[self.seq]
            return self._duplicate(original)

        if storm and rng.random() < 0.6:
            return self._fresh("exception", self.storm_group, storm=True)

        roll = rng.random()
        if roll < cfg.late_rate:
            late = self._late()
            if late is not None:
                return late
        group = self._group_pick.pick(rng)
        assert isinstance(group, Group)
        roll = rng.random()
        if roll < cfg.other_rate:
            kind: Kind = "other"
        elif roll < cfg.other_rate + cfg.send_ratio * (1 - cfg.other_rate):
            kind = "send"
        else:
            kind = "exception"
        planned = self._fresh(kind, group)
        if kind != "other" and rng.random() < cfg.dup_rate:
            self._schedule_duplicate(planned)
        return planned

    def _schedule_duplicate(self, original: Planned) -> None:
        max_delay = max(1, min(50, int(self.config.disorder_ms / 2 / self.config.step_ms)))
        target = self.seq + self.rng.randint(1, max_delay)
        self._pending_dups.setdefault(target, []).append(original)

    def _duplicate(self, original: Planned) -> Planned:
        return Planned(
            seq=self.seq,
            kind=original.kind,
            app=original.app,
            group_id=original.group_id,
            group_type=original.group_type,
            from_account=original.from_account,
            event_time_ms=original.event_time_ms,
            event_id=original.event_id,
            body=original.body,
            client_ip=original.client_ip,
            platform=original.platform,
            error_code=original.error_code,
            duplicate_of=original.duplicate_of
            if original.duplicate_of is not None
            else original.seq,
            storm=original.storm,
        )

    def _late(self) -> Planned | None:
        group = self._group_pick.pick(self.rng)
        assert isinstance(group, Group)
        kind: Kind = "send" if self.rng.random() < self.config.send_ratio else "exception"
        ref = self._last.get((group.app.sdkappid, group.group_id, kind))
        if ref is None:
            return None
        ref_seq, ref_time = ref
        event_time = ref_time - self.config.late_by_ms - self.rng.randrange(self.config.window_ms)
        if event_time <= 0:
            return None
        return self._fresh(kind, group, event_time_ms=event_time, late_ref=(ref_seq, ref_time))

    def _fresh(
        self,
        kind: Kind,
        group: Group,
        *,
        storm: bool = False,
        event_time_ms: int | None = None,
        late_ref: tuple[int, int] | None = None,
        flush: bool = False,
        error_code: int | None = None,
    ) -> Planned:
        cfg, rng = self.config, self.rng
        if event_time_ms is None:
            jitter = rng.random() * min(2000.0, cfg.disorder_ms / 2)
            event_time_ms = max(cfg.event_time_start_ms, int(self.clock_ms - jitter))
        member = int(group.members * rng.random() ** 2)  # a few members send most
        from_account = f"user_{group.group_id[-4:].lower()}_{member}"
        platform = str(self._platforms.pick(rng))
        operator = "administrator" if platform == "RESTAPI" else from_account
        while True:
            rnd = rng.getrandbits(32)
            ident = (group.app.sdkappid, group.group_id, from_account, rnd)
            if ident not in self._used_ids:
                self._used_ids.add(ident)
                break
        event_id = make_event_id(
            group.app.sdkappid, group.group_id, from_account, rnd, event_time_ms
        )
        msg_types = [str(self._msg_types.pick(rng))]
        if rng.random() < 0.1:
            msg_types.append(str(self._msg_types.pick(rng)))
        body: dict[str, Any] = {
            "CallbackCommand": _COMMANDS[kind],
            "GroupId": group.group_id,
            "Type": group.group_type,
            "From_Account": from_account,
            "Operator_Account": operator,
            "Random": rnd,
            "OnlineOnlyFlag": 0 if group.group_type == "AVChatRoom" else int(rng.random() < 0.1),
            "MsgBody": [_msg_element(t, rng) for t in msg_types],
            "CloudCustomData": "" if rng.random() < 0.7 else f"cc-{rng.randrange(1000)}",
        }
        code: int | None = None
        if kind == "exception":
            if error_code is not None:
                code = error_code
            else:
                picked = (self._storm_codes if storm else self._codes).pick(rng)
                assert isinstance(picked, int)
                code = picked
            body["ErrorCode"] = code
            body["ErrorInfo"] = ERROR_INFO.get(code, f"error {code}")
        elif kind == "send":
            key = f"{group.app.sdkappid}:{group.group_id}"
            self._msg_seq[key] = self._msg_seq.get(key, 0) + 1
            body["MsgSeq"] = self._msg_seq[key]
            body["MsgTime"] = event_time_ms // 1000
        as_string = rng.random() < cfg.string_event_time_rate
        body["EventTime"] = str(event_time_ms) if as_string else event_time_ms
        octets = (
            rng.randrange(1, 224),
            rng.randrange(256),
            rng.randrange(256),
            rng.randrange(1, 255),
        )
        client_ip = ".".join(map(str, octets[:3])) + f".{octets[3] + 1}"
        return Planned(
            seq=self.seq,
            kind=kind,
            app=group.app,
            group_id=group.group_id,
            group_type=group.group_type,
            from_account=from_account,
            event_time_ms=event_time_ms,
            event_id=event_id,
            body=body,
            client_ip=client_ip,
            platform=platform,
            error_code=code,
            late_ref=late_ref[0] if late_ref else None,
            late_ref_time_ms=late_ref[1] if late_ref else None,
            storm=storm,
            flush=flush,
        )

    # --- closing the windows ----------------------------------------------------------
    @property
    def flush_time_ms(self) -> int:
        """Event time of the flush callbacks: past every on-time window's end + grace."""
        cfg = self.config
        return self.max_event_time_ms + cfg.window_ms + cfg.grace_seconds * 1000 + 1000

    def flush_events(self) -> list[Planned]:
        """One send and one exception for every (app, group) that got traffic, far ahead.

        Each lands on its group's partition of both input topics and pushes that
        partition's stream time past every window the run touched, so all of them close.
        The flush events themselves sit in a window that stays open.
        """
        when = self.flush_time_ms
        out: list[Planned] = []
        for (_app, _gid), group in sorted(self.touched.items()):
            for kind in ("send", "exception"):
                out.append(
                    self._fresh(kind, group, event_time_ms=when, flush=True, error_code=10004)
                )
                self.seq += 1
        return out


def _msg_element(msg_type: str, rng: random.Random) -> dict[str, Any]:
    content: dict[str, Any]
    if msg_type == "TIMTextElem":
        content = {"Text": rng.choice(("hello", "red packet", "see you", "ok", "link here"))}
    elif msg_type == "TIMFaceElem":
        content = {"Index": rng.randrange(100), "Data": "content"}
    elif msg_type == "TIMLocationElem":
        content = {"Desc": "somewhere", "Latitude": 22.5, "Longitude": 113.9}
    elif msg_type == "TIMCustomElem":
        content = {"Data": "message", "Desc": "notification", "Ext": "", "Sound": ""}
    else:
        content = {"UUID": f"{rng.getrandbits(64):016x}"}
    return {"MsgType": msg_type, "MsgContent": content}
