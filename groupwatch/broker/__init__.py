"""The local single-node Kafka broker (KRaft) that groupwatch starts from Maven jars."""
