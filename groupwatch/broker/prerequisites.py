"""Finding Java 17+ and Maven, with one clear sentence when either is missing."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

MIN_JAVA = 17


class PrerequisiteMissing(RuntimeError):
    """A tool the local broker needs is not installed; the message says what to install."""


JAVA_MISSING = (
    "Java 17 or newer is required to run the local Kafka broker: install a JDK or JRE "
    "(Debian/Ubuntu: apt-get install openjdk-17-jre-headless) or set KAFKA_BOOTSTRAP_SERVERS "
    "to use an existing Kafka cluster."
)
MAVEN_MISSING = (
    "Maven is required once to download the Kafka broker jars from Maven Central: install it "
    "(Debian/Ubuntu: apt-get install maven) or set KAFKA_BOOTSTRAP_SERVERS to use an existing "
    "Kafka cluster."
)


def find_java() -> Path:
    """The java executable ($JAVA_HOME/bin/java first, then PATH), checked to be 17+."""
    java_home = os.environ.get("JAVA_HOME")
    candidate = Path(java_home) / "bin" / "java" if java_home else None
    if candidate is None or not candidate.is_file():
        found = shutil.which("java")
        candidate = Path(found) if found else None
    if candidate is None:
        raise PrerequisiteMissing(JAVA_MISSING)
    version = java_major_version(candidate)
    if version < MIN_JAVA:
        raise PrerequisiteMissing(
            f"{candidate} is Java {version}; " + JAVA_MISSING[0].lower() + JAVA_MISSING[1:]
        )
    return candidate


def java_major_version(java: Path) -> int:
    out = subprocess.run(
        [str(java), "-version"], capture_output=True, text=True, timeout=30, check=False
    )
    return parse_java_version(out.stderr + out.stdout)


def parse_java_version(text: str) -> int:
    """Major version from ``java -version`` output ("1.8.0_372" -> 8, "17.0.15" -> 17)."""
    match = re.search(r'version "(\d+)(?:\.(\d+))?', text)
    if not match:
        raise PrerequisiteMissing(f"could not read the Java version from: {text.strip()[:200]}")
    major = int(match.group(1))
    if major == 1 and match.group(2):
        return int(match.group(2))
    return major


def find_maven() -> Path:
    found = shutil.which("mvn")
    if not found:
        raise PrerequisiteMissing(MAVEN_MISSING)
    return Path(found)
