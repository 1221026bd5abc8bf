"""Import boundaries of the production code, read from its source (ast).

- A stage (ingest, stream, analytics) imports from ``groupwatch`` only ``groupwatch.contracts``
  and never another stage's package.
- Only ``stream/faust_compat.py`` touches the private names of faust / aiokafka / mode /
  the RocksDB store it fences (``faust_compat.INTERNALS``), and no module imports a private
  name from those libraries.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from stream.faust_compat import INTERNALS

ROOT = Path(__file__).resolve().parent.parent
STAGES = ("ingest", "stream", "analytics", "notify")
PACKAGES = ("groupwatch", *STAGES)
ADAPTER = "stream/faust_compat.py"
FENCED_LIBRARIES = ("faust", "aiokafka", "mode", "rocksdict")
FENCED_NAMES = frozenset(i.name for i in INTERNALS if i.name.startswith("_"))


def sources() -> list[str]:
    return sorted(
        path.relative_to(ROOT).as_posix()
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
    )


def _tree(module: str) -> ast.Module:
    return ast.parse((ROOT / module).read_text(encoding="utf-8"), filename=module)


def _imports(tree: ast.Module) -> list[tuple[int, str, list[str]]]:
    """(line, imported module, names) of every import (relative imports resolved roughly)."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            out.append((node.lineno, node.module, [alias.name for alias in node.names]))
    return out


@pytest.mark.parametrize("module", [m for m in sources() if m.split("/", 1)[0] in STAGES])
def test_a_stage_imports_only_the_contracts_and_itself(module: str) -> None:
    stage = module.split("/", 1)[0]
    for line, name, _ in _imports(_tree(module)):
        top = name.split(".", 1)[0]
        if top == "groupwatch":
            assert name == "groupwatch.contracts" or name.startswith("groupwatch.contracts."), (
                f"{module}:{line} imports {name}: a stage imports only groupwatch.contracts"
            )
        elif top in STAGES:
            assert top == stage, f"{module}:{line} imports {name}, another stage's package"


def test_the_fenced_names_are_the_adapter_s_private_ones() -> None:
    assert {"_drain_messages", "_message_accumulator", "_db_for_partition", "_key_index"} <= (
        FENCED_NAMES
    )


@pytest.mark.parametrize("module", [m for m in sources() if m != ADAPTER])
def test_only_the_adapter_touches_faust_internals(module: str) -> None:
    for node in ast.walk(_tree(module)):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Attribute) and not _own(node):
            assert node.attr not in FENCED_NAMES, (
                f"{module}:{line} uses .{node.attr}: only {ADAPTER} touches faust/aiokafka/"
                "mode/RocksDB internals (add what you need there, and to its INTERNALS)"
            )
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            assert node.value not in FENCED_NAMES, (
                f"{module}:{line} names {node.value!r} (getattr?): only {ADAPTER} may"
            )
    for line, name, names in _imports(_tree(module)):
        if name.split(".", 1)[0] in FENCED_LIBRARIES:
            private = [n for n in [*name.split(".")[1:], *names] if n.startswith("_")]
            assert not private, f"{module}:{line} imports private {private} from {name}"


def _own(node: ast.Attribute) -> bool:
    """``self.x`` / ``cls.x``: a module's own attribute, whatever its name."""
    return isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")


def test_the_boundary_check_can_fail() -> None:
    """The checks above see an attribute access, a getattr string and a private import."""
    sample = ast.parse(
        "x = app.consumer._read_offset\n"
        "self._thread = None\n"
        "y = getattr(c, '_acked')\n"
        "from faust.transport.consumer import _helper\n"
    )
    attrs = [n.attr for n in ast.walk(sample) if isinstance(n, ast.Attribute) and not _own(n)]
    strings = [n.value for n in ast.walk(sample) if isinstance(n, ast.Constant)]
    assert "_read_offset" in attrs and "_read_offset" in FENCED_NAMES
    assert "_thread" not in attrs  # a module's own attribute of that name is its own
    assert "_acked" in strings and "_acked" in FENCED_NAMES
    assert _imports(sample)[0][2] == ["_helper"]
