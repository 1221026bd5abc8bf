#!/usr/bin/env bash
# Build the Docker Compose v2 CLI plugin from source through the Go module proxy, for
# machines whose package archive ships only docker-compose v1 (Debian bookworm: 1.29) and
# that cannot reach GitHub release downloads. Installs ~/.docker/cli-plugins/docker-compose.
#
#   docker/build-compose-v2.sh            # COMPOSE_VERSION=v2.40.3 by default
# Needs Go >= 1.24 (`go version`). The module is built as the main module (its go.mod has
# exclude directives, so `go install module@version` refuses it).
set -euo pipefail

VERSION="${COMPOSE_VERSION:-v2.40.3}"
DEST="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

command -v go >/dev/null || { echo "Go is needed to build Compose v2 (https://go.dev/doc/install)" >&2; exit 1; }
dir="$(go mod download -json "github.com/docker/compose/v2@$VERSION" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')"
cp -r "$dir" "$WORK/src"
chmod -R u+w "$WORK/src"
(cd "$WORK/src" && go build -trimpath \
    -ldflags "-X github.com/docker/compose/v2/internal.Version=$VERSION" \
    -o "$WORK/docker-compose" ./cmd)
mkdir -p "$DEST"
install -m 0755 "$WORK/docker-compose" "$DEST/docker-compose"
docker compose version
