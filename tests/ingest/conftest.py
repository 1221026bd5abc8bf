"""Fixtures of the ingress tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient

from groupwatch.contracts import Settings, Topics
from ingest.app import create_app
from tests.support.callbacks import APPID, SIGNED_APPID, TOKEN


@pytest.fixture
def ingest_settings(make_settings: Callable[..., Settings], topics: Topics) -> Settings:
    """Settings with two apps (one signed, one opted in to unsigned) and the topics created."""
    return make_settings(
        sdkappids=[APPID, SIGNED_APPID],
        callback_tokens={SIGNED_APPID: TOKEN},
        unsigned_sdkappids=[APPID],
    )


@pytest.fixture
def make_client() -> Iterator[Callable[[Settings], FlaskClient]]:
    """Flask test clients of real ingress apps (real producer, real broker)."""
    apps: list[Any] = []

    def make(settings: Settings) -> FlaskClient:
        app = create_app(settings)
        apps.append(app)
        return app.test_client()

    yield make
    for app in apps:
        app.extensions["groupwatch.publisher"].close()


@pytest.fixture
def client(
    make_client: Callable[[Settings], FlaskClient], ingest_settings: Settings
) -> FlaskClient:
    return make_client(ingest_settings)
