"""The benchmark harness: docs/PERFORMANCE.md's table is the one generated from
bench/results/*.json, every results file carries what the table and a reader need."""

from __future__ import annotations

import math

import pytest
from click.testing import CliRunner

from bench.cli import BENCHMARKS, main
from bench.stats import percentile, ratio
from bench.table import DOC, load, render, replace_table

REQUIRED = {
    "benchmark",
    "target",
    "headline",
    "key_metric",
    "command",
    "commit",
    "dirty",
    "finished_at",
    "machine",
    "load_average",
    "parameters",
    "subjects",
    "rounds",
    "medians",
    "ratio_current_over_baseline",
}


def test_performance_table_matches_the_results_files() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert replace_table(text, render(load())) == text, "run `python -m bench table --write`"


@pytest.mark.parametrize("result", load(), ids=lambda r: str(r.get("benchmark")))
def test_every_results_file_has_what_the_table_needs(result: dict) -> None:
    assert set(result) >= REQUIRED, REQUIRED - set(result)
    assert result["benchmark"] in {c.name for c in BENCHMARKS}
    assert {"cpu_model", "cpu_count", "memory_gib", "python", "packages"} <= set(result["machine"])
    assert result["rounds"], "no rounds recorded"
    for name, subject in result["subjects"].items():
        for module, path in subject["modules"].items():  # the subject's own code was measured
            assert path.startswith(subject["root"]), (name, module, path)
    if "baseline" in result["subjects"]:
        assert result["ratio_current_over_baseline"]


def test_list_names_every_benchmark_with_one_line() -> None:
    out = CliRunner().invoke(main, ["--list"])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert [line.split()[0] for line in lines] == [c.name for c in BENCHMARKS]
    assert all(len(line.split()) > 2 for line in lines)


def test_percentile_and_ratio() -> None:
    assert percentile([3.0, 1.0, 2.0, 4.0, 5.0], 0.5) == 3.0
    assert percentile([1.0, 2.0], 1.0) == 2.0
    assert percentile([7.0], 0.95) == 7.0
    assert math.isnan(percentile([], 0.5))
    assert ratio(1.0, 4.0) == 0.25
    assert ratio(None, 1.0) is None and ratio(1.0, 0.0) is None
