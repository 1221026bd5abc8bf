"""What every benchmark shares: the code under test (``Subject``), ``--baseline-ref`` via
``git worktree``, interleaved rounds, machine facts and the results JSON.

A subject is one checkout of the stages' code: ``current`` (this working tree) and, with
``--baseline-ref REF``, ``baseline`` (REF checked out with ``git worktree add --detach``
into a temporary directory, removed afterwards). Benchmarks start every process whose
speed they measure through ``Subject.popen`` / ``Subject.run``: the interpreter of this
venv with ``cwd`` and ``PYTHONPATH`` at the subject's checkout, so ``import ingest`` (and
``stream``, ``analytics``, ``groupwatch``) resolve to that checkout's code ahead of the
venv's editable install. ``Subject.imported_modules`` proves it before the first round
(and the paths go into the results). The harness itself (data generation, topic creation,
reference measurements such as bare Flask or a raw consumer) always runs the current code.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, TypeVar

import click

from bench.stats import median, ratio

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
SUBJECT_MODULES = ("groupwatch", "ingest", "stream", "analytics")
PACKAGES = (
    "faust-streaming",
    "aiokafka",
    "mode-streaming",
    "confluent-kafka",
    "duckdb",
    "pyarrow",
    "flask",
    "gunicorn",
    "granian",
    "msgspec",
    "pydantic",
)
REFERENCE = "reference"  # the subject name of measurements that do not run either checkout


def git(*args: str, cwd: Path = ROOT) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise click.ClickException(f"git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


def tree_dirty() -> bool:
    """Whether tracked files differ from HEAD (results files aside)."""
    return bool(git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench/results"))


def stop_group(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> int | None:
    """SIGTERM a process started in its own session (and its children), SIGKILL if needed."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
    return proc.returncode


@dataclass(frozen=True)
class Subject:
    """One checkout of the code under test."""

    name: str
    root: Path
    ref: str
    commit: str

    def env(self, base: Mapping[str, str]) -> dict[str, str]:
        """``base`` with this checkout alone on PYTHONPATH."""
        env = dict(base)
        env["PYTHONPATH"] = str(self.root)
        return env

    def groupwatch(self, *args: str) -> list[str]:
        """argv of ``groupwatch ARGS`` from this checkout (not the venv's console script)."""
        return [sys.executable, "-c", "from groupwatch.cli import main; main()", *args]

    def popen(
        self, argv: Sequence[str], env: Mapping[str, str], log: IO[bytes]
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` in its own session with this checkout's code, output to ``log``."""
        return subprocess.Popen(
            list(argv),
            env=self.env(env),
            cwd=self.root,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def run(
        self, argv: Sequence[str], env: Mapping[str, str], timeout: float = 1800
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` to completion with this checkout's code; its output, or an error."""
        done = subprocess.run(
            list(argv),
            env=self.env(env),
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise click.ClickException(
                f"{self.name}: {' '.join(argv)} exited {done.returncode}: "
                f"{(done.stdout + done.stderr)[-3000:]}"
            )
        return done

    def imported_modules(self) -> dict[str, str]:
        """Where a process of this subject imports each stage package from; an error unless
        every one is inside this checkout (e.g. shadowed by the editable install)."""
        code = (
            "import importlib, json; print(json.dumps({m: importlib.import_module(m).__file__ "
            f"for m in {list(SUBJECT_MODULES)!r}}}))"
        )
        found: dict[str, str] = json.loads(
            self.run([sys.executable, "-c", code], os.environ).stdout
        )
        for module, path in found.items():
            if not Path(path).resolve().is_relative_to(self.root.resolve()):
                raise click.ClickException(
                    f"{self.name}: `import {module}` resolves to {path}, not inside {self.root}"
                )
        return found


@contextlib.contextmanager
def subjects(baseline_ref: str | None) -> Iterator[list[Subject]]:
    """``[current]``, or ``[current, baseline]`` with ``baseline_ref`` checked out in a
    temporary ``git worktree`` for the duration."""
    current = Subject("current", ROOT, "HEAD (working tree)", git("rev-parse", "HEAD"))
    if baseline_ref is None:
        yield [current]
        return
    try:
        commit = git("rev-parse", "--verify", "--quiet", f"{baseline_ref}^{{commit}}")
    except click.ClickException:
        raise click.BadParameter(
            f"{baseline_ref!r} is not a commit of this repository", param_hint="--baseline-ref"
        ) from None
    tmp = Path(tempfile.mkdtemp(prefix="gw-bench-baseline-"))
    tree = tmp / "tree"
    git("worktree", "add", "--detach", str(tree), commit)
    try:
        yield [current, Subject("baseline", tree, baseline_ref, commit)]
    finally:
        git("worktree", "remove", "--force", str(tree))
        shutil.rmtree(tmp, ignore_errors=True)


def machine() -> dict[str, Any]:
    """Facts about the host a result was measured on."""
    cpu_model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    mem_gib = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 2**20, 1)
    versions = {}
    for name in PACKAGES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name] = importlib.metadata.version(name)
    return {
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "memory_gib": mem_gib,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "packages": versions,
    }


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


@dataclass
class Run:
    """One benchmark run: its subjects, the interleaved rounds and the results file."""

    name: str
    description: str
    target: str
    parameters: dict[str, Any]
    subjects: list[Subject]
    rounds: list[dict[str, Any]] = field(default_factory=list)
    started_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    load_start: list[float] = field(default_factory=load_average)
    dirty_at_start: bool = field(default_factory=tree_dirty)
    subject_info: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for s in self.subjects:
            modules = s.imported_modules()
            self.subject_info[s.name] = {
                "ref": s.ref,
                "commit": s.commit,
                "root": str(s.root),
                "modules": modules,
            }
            click.echo(f"{s.name}: {s.ref} = {s.commit[:10]}; imports {modules['ingest']} ...")

    def order(self, r: int) -> list[Subject]:
        """The subjects in round ``r``: rotated each round, so neither always goes first."""
        k = r % len(self.subjects)
        return self.subjects[k:] + self.subjects[:k]

    def record(self, r: int, subject: str, values: Mapping[str, float | None]) -> None:
        """One measurement of round ``r`` (``subject`` may be ``REFERENCE``)."""
        self.rounds.append(
            {"round": r, "subject": subject, "load_average": load_average(), "values": dict(values)}
        )
        shown = ", ".join(f"{k}={_short(v)}" for k, v in values.items())
        click.echo(f"[round {r + 1}] {subject}: {shown}")

    def medians(self) -> dict[str, dict[str, float | None]]:
        """Per subject (and ``reference``), the median of every value over the rounds."""
        out: dict[str, dict[str, float | None]] = {}
        for row in self.rounds:
            names = out.setdefault(row["subject"], {})
            for key in row["values"]:
                names[key] = None
        for subject, names in out.items():
            for key in names:
                names[key] = median(
                    row["values"].get(key)
                    for row in self.rounds
                    if row["subject"] == subject and isinstance(row["values"].get(key), int | float)
                )
        return out

    def finish(
        self,
        output: Path | None,
        summarize: Callable[[dict[str, dict[str, float | None]]], tuple[dict[str, Any], str]],
        key_metric: str,
    ) -> dict[str, Any]:
        """Medians, the ratio current / baseline per value, the benchmark's own summary and
        headline (one line for the table); written to ``output`` (default
        bench/results/NAME.json)."""
        medians = self.medians()
        ratios: dict[str, float | None] = {}
        if "baseline" in medians:
            for key, value in medians["current"].items():
                ratios[key] = ratio(value, medians["baseline"].get(key))
        summary, headline = summarize(medians)
        dirty = self.dirty_at_start or tree_dirty()  # at start or end of the run
        result = {
            "benchmark": self.name,
            "description": self.description,
            "target": self.target,
            "headline": headline,
            "key_metric": key_metric,
            "command": "python -m bench " + " ".join(sys.argv[1:]),
            "commit": self.subjects[0].commit,
            "dirty": dirty,
            "started_at": self.started_at,
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": machine(),
            "load_average": {"start": self.load_start, "end": load_average()},
            "parameters": self.parameters,
            "subjects": self.subject_info,
            "rounds": self.rounds,
            "medians": medians,
            "ratio_current_over_baseline": ratios or None,
            "summary": summary,
        }
        path = output or RESULTS / f"{self.name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=1) + "\n")
        click.echo(
            json.dumps({"medians": medians, "ratio_current_over_baseline": ratios}, indent=1)
        )
        click.echo(f"{headline}\nwrote {path}")
        return result


def _short(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


F = TypeVar("F", bound=Callable[..., Any])


def common_options(fn: F) -> F:
    """``--rounds``, ``--baseline-ref``, ``--output``: every benchmark takes them."""
    fn = click.option(
        "--output",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Results JSON [default: bench/results/NAME.json].",
    )(fn)
    fn = click.option(
        "--baseline-ref",
        metavar="GIT_REF",
        help="Also measure this commit's code (git worktree), interleaved with the current "
        "code; reports current / baseline.",
    )(fn)
    fn = click.option(
        "--rounds", type=click.IntRange(1), default=3, show_default=True, help="Rounds."
    )(fn)
    return fn


def kafka_option(fn: F) -> F:
    """``--bootstrap`` (or KAFKA_BOOTSTRAP_SERVERS): the broker a benchmark uses."""
    return click.option(
        "--bootstrap",
        envvar="KAFKA_BOOTSTRAP_SERVERS",
        required=True,
        help="Broker to use (e.g. one from `groupwatch kafka start`) [env: "
        "KAFKA_BOOTSTRAP_SERVERS].",
    )(fn)


def wait_until(check: Callable[[], bool], timeout: float, what: str, every: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() >= deadline:
            raise click.ClickException(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)
