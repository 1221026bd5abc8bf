"""What the tests share, one idea a module.

- ``ports``: a free loopback port.
- ``kafka``: produce to and read from the real broker (to the end, until a predicate,
  until idle), watermarks and end offsets.
- ``metrics``: Prometheus text samples summed (by label, or filtered by labels).
- ``events``: contract records (exceptions, sends, windows, alerts) for any stage's input.
- ``callbacks``: callback requests as Tencent sends them (query strings, signed queries,
  the spec's sample body) and a steady HTTP load of them.
- ``processes``: stages and a test-owned broker as real process groups (start, SIGKILL,
  restart, wait for health), a child's environment from ``Settings``.
- ``ingest``, ``stream``, ``sink``: one stage as a real process, with what its tests need
  around it (a stream worker's crafted events and finals, the sink's SQL endpoint).
"""
