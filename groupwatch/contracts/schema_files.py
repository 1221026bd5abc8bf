"""The checked-in JSON Schema files, one per topic, generated from ``records``."""

from __future__ import annotations

import json
from pathlib import Path

from groupwatch.contracts.records import RECORD_TYPES, json_schema

SCHEMA_DIR = Path(__file__).with_name("schemas")


def schema_path(topic_suffix: str) -> Path:
    return SCHEMA_DIR / f"{topic_suffix}.schema.json"


def render(topic_suffix: str) -> str:
    schema = json_schema(RECORD_TYPES[topic_suffix])
    schema["title"] = f"groupwatch.{topic_suffix} record"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def stale_files() -> list[Path]:
    """Schema files whose content differs from what the code generates."""
    stale = []
    for suffix in RECORD_TYPES:
        path = schema_path(suffix)
        if not path.exists() or path.read_text(encoding="utf-8") != render(suffix):
            stale.append(path)
    return stale


def write_all() -> list[Path]:
    """(Re)write every schema file; returns the files written."""
    SCHEMA_DIR.mkdir(parents=True, exist_ok=True)
    written = []
    for suffix in RECORD_TYPES:
        path = schema_path(suffix)
        path.write_text(render(suffix), encoding="utf-8")
        written.append(path)
    return written
