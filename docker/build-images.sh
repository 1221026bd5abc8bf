#!/usr/bin/env bash
# Build the three images of the compose stack on this machine, no registry needed:
#   $BASE_IMAGE        groupwatch/base:bookworm  (debootstrap rootfs, docker/build-base.sh)
#   $GROUPWATCH_IMAGE  groupwatch:local          (docker/Dockerfile on the base)
#   $KAFKA_IMAGE       groupwatch/kafka:local    (docker/kafka.Dockerfile, Maven jars)
#
# Python wheels are built on the host (which reaches PyPI) into a wheelhouse and installed
# in the image with --no-index, so the image build needs only the Debian mirror.
# Set PIP_OFFLINE=0 to let pip inside the build use PyPI instead.
#
#   docker/build-images.sh            # all three
#   docker/build-images.sh app        # only groupwatch:local (kafka / base likewise)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export DOCKER_BUILDKIT="${DOCKER_BUILDKIT:-0}"  # the legacy builder: no buildx needed

BASE_IMAGE="${BASE_IMAGE:-groupwatch/base:bookworm}"
GROUPWATCH_IMAGE="${GROUPWATCH_IMAGE:-groupwatch:local}"
KAFKA_IMAGE="${KAFKA_IMAGE:-groupwatch/kafka:local}"
PIP_OFFLINE="${PIP_OFFLINE:-1}"
BUILD_DIR="${BUILD_DIR:-${TMPDIR:-/tmp}/groupwatch-docker-build}"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
[[ -x "$PYTHON" ]] || PYTHON=python3
NETWORK_ARGS=()
[[ -n "${DOCKER_BUILD_NETWORK:-}" ]] && NETWORK_ARGS=(--network "$DOCKER_BUILD_NETWORK")
if [[ $# -gt 0 ]]; then WHAT=("$@"); else WHAT=(base app kafka); fi

wants() { [[ " ${WHAT[*]} " == *" $1 "* ]]; }
step() { printf '\n== %s\n' "$*"; }

if wants base && [[ "$BASE_IMAGE" == groupwatch/base:* ]]; then
    step "base image $BASE_IMAGE"
    BASE_IMAGE="$BASE_IMAGE" "$ROOT/docker/build-base.sh"
fi

if wants app; then
    step "groupwatch image $GROUPWATCH_IMAGE (base $BASE_IMAGE)"
    ctx="$BUILD_DIR/app"
    rm -rf "$ctx" && mkdir -p "$ctx/wheelhouse" "$BUILD_DIR/wheel-cache"
    cp -a pyproject.toml README.md constraints.txt groupwatch ingest stream analytics "$ctx/"
    find "$ctx" -name __pycache__ -prune -exec rm -rf {} +
    pip_args=()
    if [[ "$PIP_OFFLINE" == 1 ]]; then
        # Every dependency (and the build backend) as wheels, built once and cached.
        "$PYTHON" -m pip wheel --quiet -c constraints.txt -w "$BUILD_DIR/wheel-cache" \
            "$ROOT" setuptools wheel
        rm -f "$BUILD_DIR"/wheel-cache/groupwatch-*.whl
        cp -l "$BUILD_DIR"/wheel-cache/*.whl "$ctx/wheelhouse/" 2>/dev/null \
            || cp "$BUILD_DIR"/wheel-cache/*.whl "$ctx/wheelhouse/"
        pip_args=(--build-arg PIP_NO_INDEX=1)
    fi
    docker build "${NETWORK_ARGS[@]}" -f docker/Dockerfile \
        --build-arg BASE_IMAGE="$BASE_IMAGE" "${pip_args[@]}" -t "$GROUPWATCH_IMAGE" "$ctx"
fi

if wants kafka; then
    step "kafka image $KAFKA_IMAGE (base $BASE_IMAGE)"
    ctx="$BUILD_DIR/kafka"
    rm -rf "$ctx" && mkdir -p "$ctx/kafka-jars"
    # The native broker's jars: offline from ~/.m2 when possible, else from Maven Central.
    mvn_args=(-q -f groupwatch/broker/pom.xml dependency:copy-dependencies
        -DoutputDirectory="$ctx/kafka-jars" -DincludeScope=runtime)
    mvn -o "${mvn_args[@]}" || mvn "${mvn_args[@]}"
    cp -a docker/kafka "$ctx/kafka"
    docker build "${NETWORK_ARGS[@]}" -f docker/kafka.Dockerfile \
        --build-arg BASE_IMAGE="$BASE_IMAGE" -t "$KAFKA_IMAGE" "$ctx"
fi

step "images"
docker image ls --format '{{.Repository}}:{{.Tag}}  {{.Size}}  {{.CreatedSince}}' \
    | grep -E "^(${BASE_IMAGE}|${GROUPWATCH_IMAGE}|${KAFKA_IMAGE})  " || true
