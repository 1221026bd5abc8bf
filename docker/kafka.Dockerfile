# Kafka (KRaft, single node) from the same Maven jars the native `groupwatch kafka` runs.
#
# Configured like the official apache/kafka image (KAFKA_* env vars -> server.properties,
# CLUSTER_ID, /var/lib/kafka/data, user appuser, /opt/kafka/bin/*.sh tools), so one
# compose file runs either image. Build context: a directory holding kafka-jars/ (from
# `mvn -f groupwatch/broker/pom.xml dependency:copy-dependencies`) and this docker/kafka/
# directory; docker/build-images.sh prepares it.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        openjdk-17-jre-headless \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 1000 --user-group --home-dir /opt/kafka --no-create-home appuser \
    && mkdir -p /opt/kafka/bin /opt/kafka/config /opt/kafka/libs /var/lib/kafka/data \
        /tmp/kraft-combined-logs

COPY kafka-jars/ /opt/kafka/libs/
COPY kafka/default.properties kafka/log4j2.properties kafka/tools-log4j2.properties /opt/kafka/config/
COPY kafka/entrypoint.sh kafka/run-class.sh /opt/kafka/

# The command-line tools of the official image's /opt/kafka/bin that healthchecks and
# users reach for.
RUN set -e; cd /opt/kafka/bin; \
    for pair in \
        kafka-broker-api-versions.sh:org.apache.kafka.tools.BrokerApiVersionsCommand \
        kafka-topics.sh:org.apache.kafka.tools.TopicCommand \
        kafka-console-consumer.sh:org.apache.kafka.tools.consumer.ConsoleConsumer \
        kafka-console-producer.sh:org.apache.kafka.tools.ConsoleProducer \
        kafka-consumer-groups.sh:org.apache.kafka.tools.consumer.group.ConsumerGroupCommand \
        kafka-metadata-quorum.sh:org.apache.kafka.tools.MetadataQuorumCommand \
        kafka-cluster.sh:org.apache.kafka.tools.ClusterTool \
        kafka-storage.sh:kafka.tools.StorageTool ; do \
        printf '#!/bin/sh\nexec /opt/kafka/run-class.sh %s "$@"\n' "${pair#*:}" > "${pair%%:*}"; \
        chmod 755 "${pair%%:*}"; \
    done; \
    chown -R appuser:appuser /opt/kafka/config /var/lib/kafka /tmp/kraft-combined-logs

ENV PATH=/opt/kafka/bin:$PATH
USER appuser
WORKDIR /opt/kafka
VOLUME ["/var/lib/kafka/data"]
EXPOSE 9092 9093
ENTRYPOINT ["/opt/kafka/entrypoint.sh"]
