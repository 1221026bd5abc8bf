"""The dashboard's routes over a real DuckDB snapshot (Flask's test client, no browser):
numbers equal the SQL run directly, bad input is a clear 4xx, a swapped snapshot is read."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from flask.testing import FlaskClient

from analytics.dashboard.app import create_app
from groupwatch.contracts import Settings
from tests.analytics.dashboard.database import APP, build

GROUPS = {"@TGS#hot": 30, "@TGS#warm": 12, "g/with/slashes": 5, "@TGS#cold": 2}


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One snapshot for the tests that only read."""
    path = tmp_path_factory.mktemp("dashboard") / "snapshot.duckdb"
    build(path, GROUPS)
    return path


@pytest.fixture
def snapshot(shared: Path, request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    if "swap" not in request.node.name:
        return shared
    path = tmp_path / "snapshot.duckdb"  # this test replaces it
    build(path, GROUPS)
    return path


@pytest.fixture
def client(snapshot: Path, tmp_path: Path) -> Iterator[FlaskClient]:
    settings = Settings(snapshot_path=snapshot, duckdb_path=tmp_path / "absent.duckdb")
    app = create_app(settings)
    with app.test_client() as c:
        yield c
    app.extensions["groupwatch_source"].close()


def direct(path: Path, sql: str, params: list[object]) -> list[tuple[object, ...]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


def test_overview_numbers_equal_direct_sql(client: FlaskClient, snapshot: Path) -> None:
    data = client.get(f"/api/overview?app={APP}&range=1h").get_json()
    failures, groups, senders = direct(
        snapshot,
        "SELECT count(*), count(DISTINCT group_id), count(DISTINCT from_account) "
        "FROM exceptions WHERE sdkappid = ?",
        [APP],
    )[0]
    assert data["totals"]["failures"] == failures == sum(GROUPS.values())
    assert (data["totals"]["groups"], data["totals"]["senders"]) == (groups, senders)
    top = direct(
        snapshot,
        "SELECT group_id, count(*) AS n FROM exceptions WHERE sdkappid = ? "
        "GROUP BY group_id ORDER BY n DESC, group_id LIMIT 10",
        [APP],
    )
    assert [(g["group_id"], g["failures"]) for g in data["top_groups"]] == top
    assert sum(sum(v) for v in data["trend"]["categories"].values()) == failures
    assert {c["error_code"] for c in data["top_codes"]} == {10004, 10017}
    assert [a["group_id"] for a in data["alerts"]] == ["@TGS#hot"]
    assert data["freshness"]["source"] == "snapshot"


def test_group_and_code_pages(client: FlaskClient) -> None:
    page = client.get(f"/group/g/with/slashes?app={APP}&range=15m")
    assert page.status_code == 200 and b"g/with/slashes" in page.data
    group = client.get(f"/api/group/%40TGS%23warm?app={APP}&range=1h").get_json()
    assert group["totals"]["failures"] == GROUPS["@TGS#warm"]
    assert len(group["latest"]) == 12 and group["latest"][0]["error_info"].startswith("ErrorInfo")
    assert sum(s["failures"] for s in group["top_senders"]) == GROUPS["@TGS#warm"]
    code = client.get(f"/api/code/10017?app={APP}&range=1h").get_json()
    assert (code["category"], code["meaning"]) == ("muted", "sender is muted")
    assert code["totals"]["failures"] == sum(n // 2 for n in GROUPS.values())
    assert client.get(f"/alerts?app={APP}&range=24h").status_code == 200
    unlisted = client.get(f"/api/code/80002?app={APP}&range=1h")  # catalog range, never seen
    assert unlisted.status_code == 404


def test_overview_without_app_redirects_to_a_known_app(client: FlaskClient) -> None:
    resp = client.get("/?range=6h")
    assert resp.status_code == 302 and f"app={APP}" in resp.headers["Location"]


@pytest.mark.parametrize(
    ("url", "status", "words"),
    [
        (f"/?app={APP}&range=2h", 400, "range must be one of"),
        (f"/api/overview?app={APP}&range=%27;DROP", 400, "range must be one of"),
        ("/?app=999&range=1h", 404, "unknown app"),
        (f"/?app={'9' * 65}", 400, "at most 64"),
        (f"/group/nope?app={APP}", 404, "unknown group"),
        (f"/group/x%27%20OR%20%271%27=%271?app={APP}", 404, "unknown group"),
        (f"/api/group/nope?app={APP}", 404, "unknown group"),
        (f"/code/abc?app={APP}", 400, "integer"),
        (f"/code/99999999999?app={APP}", 400, "between"),
        (f"/code/12345?app={APP}", 404, "unknown error code"),
        ("/api/overview?range=1h", 400, "app is missing"),
        ("/nowhere", 404, "Not Found"),
    ],
)
def test_bad_input_is_a_clear_4xx(client: FlaskClient, url: str, status: int, words: str) -> None:
    resp = client.get(url)
    text = resp.get_data(as_text=True)
    assert resp.status_code == status, text
    assert words in text
    assert "Traceback" not in text


def test_a_swapped_snapshot_is_read(client: FlaskClient, snapshot: Path) -> None:
    before = client.get(f"/api/overview?app={APP}").get_json()["totals"]["failures"]
    build(snapshot, {**GROUPS, "@TGS#new": 50})
    after = client.get(f"/api/overview?app={APP}").get_json()
    assert (before, after["totals"]["failures"]) == (49, 99)
    assert after["top_groups"][0]["group_id"] == "@TGS#new"


def test_no_data_yet_is_503(tmp_path: Path) -> None:
    settings = Settings(snapshot_path=tmp_path / "a.duckdb", duckdb_path=tmp_path / "b.duckdb")
    resp = create_app(settings).test_client().get("/?app=1")
    assert resp.status_code == 503 and b"no data yet" in resp.data


def test_a_foreign_host_header_is_403(client: FlaskClient) -> None:
    resp = client.get(f"/?app={APP}", headers={"Host": "evil.example:8780"})
    assert resp.status_code == 403 and b"not allowed" in resp.data
