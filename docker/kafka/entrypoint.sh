#!/usr/bin/env bash
# Start a KRaft Kafka node configured like the official apache/kafka image:
#   every KAFKA_<NAME> env var becomes a server property (<name>: "_" -> ".", "__" -> "_",
#   "___" -> "-"), except the JVM/log4j ones below; CLUSTER_ID names the cluster. With no
#   KAFKA_* property at all, the image's single-node defaults apply (as in apache/kafka).
set -euo pipefail

KAFKA_HOME=/opt/kafka
CONFIG_DIR="${KAFKA_CONFIG_DIR:-/opt/kafka/config}"
PROPS="$CONFIG_DIR/server.properties"
CLUSTER_ID="${CLUSTER_ID:-5L6g3nShT-eMCtK--X86sw}"   # the apache/kafka default

# Env vars that tune the JVM or logging rather than the broker (the apache/kafka list).
NOT_PROPERTIES=" KAFKA_VERSION KAFKA_HEAP_OPTS KAFKA_LOG4J_OPTS KAFKA_OPTS KAFKA_JMX_OPTS \
KAFKA_JVM_PERFORMANCE_OPTS KAFKA_GC_LOG_OPTS KAFKA_LOG4J_ROOT_LOGLEVEL KAFKA_LOG4J_LOGGERS \
KAFKA_TOOLS_LOG4J_LOGLEVEL KAFKA_JMX_HOSTNAME KAFKA_JMX_PORT KAFKA_CONFIG_DIR KAFKA_HOME "

env_properties() {
    local name key
    while IFS='=' read -r name _; do
        [[ "$name" == KAFKA_* ]] || continue
        [[ "$NOT_PROPERTIES" == *" $name "* ]] && continue
        key="${name#KAFKA_}"
        key="${key,,}"
        key="${key//___/-}"
        key="${key//__/@}"
        key="${key//_/.}"
        key="${key//@/_}"
        printf '%s=%s\n' "$key" "${!name}"
    done < <(env | sort)
}

mkdir -p "$CONFIG_DIR"
generated="$(env_properties)"
if [[ -n "$generated" ]]; then
    printf '%s\n' "$generated" > "$PROPS"
    # As upstream: without KAFKA_LISTENERS, listen on the advertised ports on all interfaces.
    if ! grep -q '^listeners=' "$PROPS"; then
        advertised="$(sed -n 's/^advertised\.listeners=//p' "$PROPS")"
        if [[ -n "$advertised" ]]; then
            echo "listeners=$(sed -E 's#://[^:,]*:#://0.0.0.0:#g' <<< "$advertised")" >> "$PROPS"
        fi
    fi
else
    cp "$KAFKA_HOME/config/default.properties" "$PROPS"
fi

# KAFKA_LOG4J_ROOT_LOGLEVEL (upstream name) sets the broker's root log level.
LOG4J="$KAFKA_HOME/config/log4j2.properties"
if [[ -n "${KAFKA_LOG4J_ROOT_LOGLEVEL:-}" ]]; then
    sed "s/^rootLogger.level = .*/rootLogger.level = ${KAFKA_LOG4J_ROOT_LOGLEVEL}/" \
        "$KAFKA_HOME/config/log4j2.properties" > "$CONFIG_DIR/log4j2-runtime.properties"
    LOG4J="$CONFIG_DIR/log4j2-runtime.properties"
fi

log_dirs="$(sed -n 's/^log\.dirs=//p' "$PROPS" | tail -n1)"
log_dirs="${log_dirs:-$(sed -n 's/^log\.dir=//p' "$PROPS" | tail -n1)}"
first_dir="${log_dirs%%,*}"
if [[ -z "$first_dir" || ! -f "$first_dir/meta.properties" ]]; then
    java -cp "$KAFKA_HOME/libs/*" -Dlog4j2.configurationFile="$LOG4J" \
        kafka.tools.StorageTool format --ignore-formatted -t "$CLUSTER_ID" -c "$PROPS"
fi

echo "kafka: starting with $PROPS:" >&2
grep -v -i -e password -e secret "$PROPS" | sed 's/^/  /' >&2
# shellcheck disable=SC2086  # the *_OPTS are word lists
exec java ${KAFKA_HEAP_OPTS:--Xmx512m -Xms512m} ${KAFKA_JVM_PERFORMANCE_OPTS:-} ${KAFKA_OPTS:-} \
    -Dlog4j2.configurationFile="$LOG4J" \
    -cp "$KAFKA_HOME/libs/*" kafka.Kafka "$PROPS"
