"""groupwatch's benchmarks: one harness, ``python -m bench NAME`` (``--list`` names them).

Every benchmark drives the stages through their entry points (``groupwatch <stage>``
processes, the ingress's WSGI app, the sink's HTTP endpoints) so that ``--baseline-ref``
can run the same measurement against another commit's code, checked out with
``git worktree``; results go to ``bench/results/NAME.json`` and the table in
docs/PERFORMANCE.md is generated from them (``python -m bench table --write``).
"""
