"""The sink's process-wide tuning belongs to ``groupwatch sink``, not to the Sink class."""

from __future__ import annotations

import gc
import sys

import pytest

from analytics.commands import SWITCH_INTERVAL_SECONDS, sink_process_tuning
from analytics.sink import Sink
from groupwatch.contracts import Settings, Topics


def process_settings() -> tuple[bool, float]:
    return gc.isenabled(), sys.getswitchinterval()


def test_the_command_tuning_is_set_inside_and_restored_after() -> None:
    before = process_settings()
    assert before[0], "the test process runs with automatic garbage collection"
    with sink_process_tuning():
        assert process_settings() == (False, pytest.approx(SWITCH_INTERVAL_SECONDS))
        # objects alive at the start are frozen out of later collections
        assert gc.get_freeze_count() > 0
    assert process_settings() == before
    assert gc.get_freeze_count() == 0


@pytest.mark.kafka
def test_an_in_process_sink_leaves_the_interpreter_settings_alone(
    settings: Settings, topics: Topics
) -> None:
    sink = Sink(settings, serve=False, snapshots=False)
    before = process_settings()
    seen: list[tuple[bool, float]] = []

    def until() -> bool:
        seen.append(process_settings())
        return len(seen) >= 3

    sink.run(until=until)  # closes the sink
    assert seen == [before] * 3
    assert process_settings() == before
