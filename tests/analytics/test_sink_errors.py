"""A fatal consumer error stops the sink loudly instead of leaving it idle forever."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from confluent_kafka import KafkaError, Message

from analytics.sink import Sink
from groupwatch.contracts import Settings

pytestmark = pytest.mark.kafka


@pytest.mark.parametrize("fatal_flag", [False, True])
def test_a_fatal_consumer_error_stops_the_fetch(
    fatal_flag: bool, make_settings: Callable[..., Settings]
) -> None:
    sink = Sink(make_settings(), serve=False, snapshots=False)
    try:
        # librdkafka hands a fatal error (e.g. a fenced static member) to consume() as a
        # message whose code is _FATAL; its fatal() flag is not always set
        err = KafkaError(KafkaError._FATAL, "fenced", fatal=fatal_flag)
        with pytest.raises(RuntimeError, match="fatal Kafka error"):
            sink._fresh([Message(error=err)])
        # an ordinary transient error is only logged
        transient = KafkaError(KafkaError._TRANSPORT, "broker down")
        assert sink._fresh([Message(error=transient)]) == []
    finally:
        sink.close()
