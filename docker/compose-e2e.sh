#!/usr/bin/env bash
# The compose proof: build the local images, run the compose file with them substituted
# through env vars, drive it with `groupwatch simulate` from the host (published 127.0.0.1
# ports only), and check DuckDB's final failure windows and raw sends equal the ledger.
#
#   docker/compose-e2e.sh                    # COUNT=20000 by default
#   SKIP_BUILD=1 KEEP=1 COUNT=3000 docker/compose-e2e.sh
# Exit status 0 only when everything matched. Needs a running dockerd and docker compose
# (v2 plugin) or docker-compose (v1.29).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
COMPOSE_FILE="${COMPOSE_FILE:-docker-compose.yml}"
PROJECT="${PROJECT:-gwe2e}"
COUNT="${COUNT:-20000}"
OUT="${OUT:-${TMPDIR:-/tmp}/groupwatch-compose-e2e}"
PY="${PY:-$ROOT/.venv/bin/python}"
GW="${GW:-$ROOT/.venv/bin/groupwatch}"
export GROUPWATCH_IMAGE="${GROUPWATCH_IMAGE:-groupwatch:local}"
export KAFKA_IMAGE="${KAFKA_IMAGE:-groupwatch/kafka:local}"
export GROUPWATCH_SDKAPPIDS="${GROUPWATCH_SDKAPPIDS:-1400000001,1400000002}"
export GROUPWATCH_CALLBACK_TOKENS="${GROUPWATCH_CALLBACK_TOKENS:-1400000001:e2e-token-$RANDOM$RANDOM}"
# The second app is sent unsigned: it has to be opted in (the ingress fails closed).
export GROUPWATCH_UNSIGNED_SDKAPPIDS="${GROUPWATCH_UNSIGNED_SDKAPPIDS-1400000002}"
export GROUPWATCH_PARTITIONS="${GROUPWATCH_PARTITIONS:-3}"
export GROUPWATCH_INGEST_HOST_PORT="${GROUPWATCH_INGEST_HOST_PORT:-28080}"
export GROUPWATCH_QUERY_HOST_PORT="${GROUPWATCH_QUERY_HOST_PORT:-28765}"
export KAFKA_HOST_PORT="${KAFKA_HOST_PORT:-29092}"

if docker compose version >/dev/null 2>&1; then COMPOSE=(docker compose); else COMPOSE=(docker-compose); fi
dc() { "${COMPOSE[@]}" -p "$PROJECT" -f "$COMPOSE_FILE" "$@"; }
log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() { [[ "${KEEP:-0}" == 1 ]] || dc down -v --remove-orphans >/dev/null 2>&1 || true; }
trap cleanup EXIT
mkdir -p "$OUT"

[[ "${SKIP_BUILD:-0}" == 1 ]] || "$ROOT/docker/build-images.sh"

log "compose: ${COMPOSE[*]} -f $COMPOSE_FILE ($GROUPWATCH_IMAGE, $KAFKA_IMAGE)"
dc config -q
dc up -d
for svc in kafka ingest stream sink dashboard; do
    cid="$(dc ps -q "$svc")"
    for _ in $(seq 1 90); do
        state="$(docker inspect -f '{{.State.Health.Status}}' "$cid" 2>/dev/null || echo gone)"
        [[ "$state" == healthy ]] && break
        sleep 2
    done
    [[ "$state" == healthy ]] || { dc ps; dc logs --tail=50 "$svc"; log "$svc is $state"; exit 1; }
    log "$svc healthy"
done
[[ "$(docker inspect -f '{{.State.ExitCode}}' "$(dc ps --all -q topics-init)")" == 0 ]]

signed_app="${GROUPWATCH_CALLBACK_TOKENS%%,*}"
apps=(--app "$signed_app")
for a in ${GROUPWATCH_SDKAPPIDS//,/ }; do [[ "$signed_app" == "$a:"* ]] || apps+=(--app "$a"); done
start_ms=$(( ($(date +%s) - 3600) * 1000 ))
log "simulate $COUNT callbacks"
"$GW" simulate --url "http://127.0.0.1:${GROUPWATCH_INGEST_HOST_PORT}/callback" "${apps[@]}" \
    --count "$COUNT" --rate 500 --connections 4 --step-ms 10 --event-time-start "$start_ms" \
    --seed 42 --flush --ledger "$OUT/ledger.json" --quiet

# Query from the host through the published 127.0.0.1 port, like a user would.
query() { GROUPWATCH_QUERY_PORT="$GROUPWATCH_QUERY_HOST_PORT" "$GW" query --format json "$1"; }
log "waiting for the final windows in DuckDB"
ok=1
for _ in $(seq 1 60); do
    query "SELECT sdkappid, group_id, error_code, epoch_ms(window_start) AS ws, failures, senders, final FROM failure_windows" > "$OUT/failure_windows.json"
    query "SELECT sdkappid, group_id, epoch_ms(minute) AS ws, sends FROM sends_minutely" > "$OUT/sends.json"
    if "$PY" -m groupwatch.simulate.compare "$OUT/ledger.json" "$OUT/failure_windows.json" "$OUT/sends.json" > "$OUT/compare.txt"; then
        ok=0
        break
    fi
    sleep 5
done
cat "$OUT/compare.txt"
late_topic=$(kcat -b "127.0.0.1:$KAFKA_HOST_PORT" -C -t "${GROUPWATCH_TOPIC_PREFIX:-groupwatch}.late-events" -e -q 2>/dev/null | wc -l || echo "?")
late_ledger=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["totals"]["late"])' "$OUT/ledger.json")
log "late events: topic $late_topic, ledger $late_ledger"
[[ "$late_topic" == "$late_ledger" ]] || ok=1
log "result: $([[ $ok == 0 ]] && echo PASS || echo FAIL) (files in $OUT)"
exit "$ok"
