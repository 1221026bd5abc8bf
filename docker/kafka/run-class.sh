#!/usr/bin/env bash
# Run one Kafka main class from the image's jars (what the bin/*.sh wrappers call).
set -euo pipefail
class="$1"
shift
# shellcheck disable=SC2086
exec java ${KAFKA_HEAP_OPTS:--Xmx256m} ${KAFKA_OPTS:-} \
    -Dlog4j2.configurationFile=/opt/kafka/config/tools-log4j2.properties \
    -cp "/opt/kafka/libs/*" "$class" "$@"
