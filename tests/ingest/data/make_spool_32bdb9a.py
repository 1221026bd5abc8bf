"""Re-creates ``spool-32bdb9a.spool`` with the spool code of 32bdb9a (not this tree's).

    git worktree add /tmp/gw-32bdb9a 32bdb9a
    PYTHONPATH=/tmp/gw-32bdb9a python tests/ingest/data/make_spool_32bdb9a.py OUT
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import ingest.spool as sp  # the old module (a package today): run with PYTHONPATH as above


def env(i: int) -> sp.Envelope:  # type: ignore[name-defined]
    return sp.Envelope(  # type: ignore[attr-defined]
        topic="gw.exceptions",
        key=f"1400000001:g{i % 2}".encode(),
        value=f'{{"event_id":"e{i}"}}'.encode(),
        timestamp_ms=1_700_000_000_000 + i,
        command="Group.CallbackSendMsgException" if i != 3 else None,
    )


def main(out: Path) -> None:
    s = sp.Spool(Path(tempfile.mkdtemp()), 1 << 30)  # type: ignore[attr-defined]
    s.open()
    flying = s.reserve()  # timed out in the producer, spooled while in flight
    s.put(env(0), flying)
    s.put(env(1))
    s.put(env(2))
    s.resolve(flying, delivered=True)  # then delivered: a Done frame for it
    s.put(env(3))
    s.mark_done(s.segment, 2)  # env(2) forwarded before the process died
    s.put(env(4))
    s.segment.log.flush()
    torn = sp.encode_frame(sp.Put(99, env(99), 1))[:-5]  # type: ignore[attr-defined]
    out.write_bytes(s.segment.path.read_bytes() + torn)  # a crash mid-write


if __name__ == "__main__":
    main(Path(sys.argv[1]))
