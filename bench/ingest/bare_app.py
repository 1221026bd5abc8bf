"""Baseline for the benchmark: a bare Flask endpoint returning the fixed OK reply."""

from __future__ import annotations

from flask import Flask, Response

OK_BODY = b'{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":0}'

app = Flask("bare")


@app.post("/callback")
def callback() -> Response:
    return Response(OK_BODY, status=200, mimetype="application/json")


@app.get("/healthz")
def healthz() -> Response:
    return Response(b'{"status":"ok"}', mimetype="application/json")


@app.get("/pid")
def pid() -> Response:
    """Which worker process serves this connection (keep-alive distribution check)."""
    import os

    return Response(str(os.getpid()).encode(), mimetype="text/plain")
