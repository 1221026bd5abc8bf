"""The ingress's Prometheus multiprocess dir lives under the state dir, emptied at start."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from groupwatch.contracts import load_settings
from ingest.server import prepare_metrics_dir


def test_metrics_dir_is_per_port_under_the_state_dir_and_emptied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    settings = load_settings(state_dir=tmp_path)
    stale = tmp_path / "ingest-metrics" / "8080" / "counter_123.db"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"left by a SIGKILLed worker")
    keep = stale.parent / "README"
    keep.write_text("not a metrics file")

    path = prepare_metrics_dir(settings, 8080)

    assert Path(path) == tmp_path / "ingest-metrics" / "8080"
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == path
    assert not stale.exists() and keep.exists()
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    assert prepare_metrics_dir(settings, 8081) == str(tmp_path / "ingest-metrics" / "8081")


def test_a_dir_named_by_the_environment_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    given = tmp_path / "given"
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(given))
    assert prepare_metrics_dir(load_settings(state_dir=tmp_path / "state"), 8080) == str(given)
    assert given.is_dir() and not (tmp_path / "state").exists()
