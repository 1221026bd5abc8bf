"""Printing an Arrow result as a rich table, CSV or JSON."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Any

import orjson
import pyarrow as pa
from rich.console import Console
from rich.table import Table


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def render(table: pa.Table, fmt: str, console: Console, truncated: bool = False) -> None:
    rows = table.to_pylist()
    if fmt == "json":
        console.file.write(
            orjson.dumps(rows, default=str, option=orjson.OPT_NON_STR_KEYS).decode() + "\n"
        )
    elif fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(table.column_names)
        for row in rows:
            writer.writerow([_cell(row[c]) for c in table.column_names])
        console.file.write(buf.getvalue())
    else:
        out = Table(*table.column_names, show_lines=False)
        for row in rows:
            out.add_row(*(_cell(row[c]) for c in table.column_names))
        console.print(out)
        console.print(f"[dim]{table.num_rows} rows[/dim]")
    if truncated:
        Console(stderr=True).print(
            "[yellow]result truncated at GROUPWATCH_QUERY_MAX_ROWS rows[/yellow]"
        )
