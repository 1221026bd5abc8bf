"""Kafka administration: creating the pipeline topics."""
