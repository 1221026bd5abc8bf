"""The broker's jars: resolved from Maven Central with Maven once, then reused from a cache."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

from groupwatch.broker.prerequisites import find_maven

POM = Path(__file__).with_name("pom.xml")
LOG4J_CONFIG = Path(__file__).with_name("log4j2.properties")
COMPLETE_MARKER = ".complete"


class JarResolutionError(RuntimeError):
    """Maven could not resolve the broker jars."""


def pom_digest() -> str:
    return hashlib.sha256(POM.read_bytes()).hexdigest()[:12]


def jars_dir(cache_root: Path) -> Path:
    """Cache directory for the current pom (a changed pom gets a fresh directory)."""
    return cache_root / pom_digest()


def ensure_jars(cache_root: Path) -> Path:
    """Return the directory holding every broker jar, resolving it with Maven if needed."""
    target = jars_dir(cache_root)
    if (target / COMPLETE_MARKER).exists():
        return target
    mvn = find_maven()
    cache_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="jars-", dir=cache_root))
    try:
        proc = subprocess.run(
            [
                str(mvn),
                "-q",
                "-B",
                "-f",
                str(POM),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={staging}",
                "-DincludeScope=runtime",
            ],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if proc.returncode != 0 or not any(staging.glob("kafka_2.13-*.jar")):
            raise JarResolutionError(
                "Maven could not resolve the Kafka broker jars "
                f"(exit {proc.returncode}):\n{(proc.stdout + proc.stderr)[-2000:]}"
            )
        (staging / COMPLETE_MARKER).write_text(pom_digest() + "\n", encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def kafka_version(lib: Path) -> str:
    jar = next(lib.glob("kafka_2.13-*.jar"), None)
    return jar.name.removeprefix("kafka_2.13-").removesuffix(".jar") if jar else "unknown"
