#!/usr/bin/env bash
# Refresh the vendored uPlot (MIT) from the npm registry: the browser build, its CSS and
# its licence, nothing else. Usage: vendor-uplot.sh VERSION   (make vendor-uplot UPLOT=…)
set -euo pipefail
version="${1:?usage: $0 VERSION}"
here="$(cd "$(dirname "$0")" && pwd)/static/vendor"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "uplot@${version}" >/dev/null)
tar -xzf "$work/uplot-${version}.tgz" -C "$work"
for f in dist/uPlot.iife.min.js dist/uPlot.min.css LICENSE; do
  cp "$work/package/$f" "$here/uplot/$(basename "$f")"
done
echo "$version" > "$here/uplot/VERSION"
echo "vendored uPlot $version into $here/uplot (update docs/DASHBOARD.md if the version changed)"
