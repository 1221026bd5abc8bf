"""The cluster suite's one 3-node cluster, shared by its tests (each has its own topics,
groups and stages; a test that restarts nodes leaves all three running and in sync).

Opt-in (``make test-cluster`` sets GROUPWATCH_CLUSTER_TEST=1): `make test` skips it, CI
runs it as its own step after the main suite.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support.cluster import ClusterProcess

ENABLED = os.environ.get("GROUPWATCH_CLUSTER_TEST") == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if ENABLED:
        return
    skip = pytest.mark.skip(reason="cluster suite: run with `make test-cluster`")
    for item in items:
        if "cluster" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterProcess]:
    c = ClusterProcess(tmp_path_factory.mktemp("cluster") / "state")
    c.start()
    try:
        yield c
    finally:
        c.stop()
