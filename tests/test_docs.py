"""The docs stay true: every setting is in the README, every module in the code map."""

from __future__ import annotations

from pathlib import Path

import pytest

from groupwatch.contracts.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("groupwatch", "ingest", "stream", "analytics", "notify", "bench")


def env_name(field: str) -> str:
    return (
        "KAFKA_BOOTSTRAP_SERVERS"
        if field == "kafka_bootstrap_servers"
        else (f"GROUPWATCH_{field.upper()}")
    )


@pytest.mark.parametrize("field", sorted(Settings.model_fields))
def test_every_setting_is_documented_in_the_readme(field: str) -> None:
    assert f"`{env_name(field)}`" in (ROOT / "README.md").read_text(encoding="utf-8")


def modules() -> list[str]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.name not in {"__init__.py", "__main__.py"}:
                found.append(path.relative_to(ROOT).as_posix())
    return found


@pytest.mark.parametrize("module", modules())
def test_every_module_is_in_the_code_map(module: str) -> None:
    assert f"`{module}`" in (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
