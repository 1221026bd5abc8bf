"""Unit tests of the request hot path's shortcuts: they must agree with what they replace."""

from __future__ import annotations

from urllib.parse import parse_qsl

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram

from ingest import metrics
from ingest.query import simple_query

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.1, 1.0)


def werkzeug_args(query: str) -> dict[str, str]:
    """What ``request.args.to_dict()`` gives: parse_qsl, blanks kept, first value wins."""
    result: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True, errors="werkzeug.url_quote"):
        result.setdefault(name, value)
    return result


def test_simple_query_of_a_chat_callback() -> None:
    query = "SdkAppid=1400000001&CallbackCommand=Group.CallbackSendMsgException&contenttype=json"
    assert simple_query(query) == {
        "SdkAppid": "1400000001",
        "CallbackCommand": "Group.CallbackSendMsgException",
        "contenttype": "json",
    }
    assert simple_query("a=1&a=2&b&&c=") == {"a": "1", "b": "", "c": ""}


def test_simple_query_leaves_encoded_queries_to_werkzeug() -> None:
    assert simple_query("Sign=a%2Bb") is None
    assert simple_query("ClientIP=1+2") is None
    assert simple_query("OptPlatform=\u00e9") is None


@given(st.text(alphabet="ab=&.%+_-9 \u00e9", max_size=40))
def test_simple_query_agrees_with_werkzeug(query: str) -> None:
    args = simple_query(query)
    if args is not None:
        assert args == werkzeug_args(query)


def histogram_samples(hist: Histogram, registry: CollectorRegistry) -> dict[str, float]:
    return {
        f"{s.name}{sorted(s.labels.items())}": s.value
        for family in registry.collect()
        for s in family.samples
        if not s.name.endswith("_created")
    }


@given(st.lists(st.floats(min_value=0, max_value=5, allow_nan=False), max_size=50))
def test_bulk_histogram_fold_equals_one_observe_per_sample(values: list[float]) -> None:
    one, bulk = CollectorRegistry(), CollectorRegistry()
    expected = Histogram("h", "h", ["o"], buckets=BUCKETS, registry=one)
    folded = Histogram("h", "h", ["o"], buckets=BUCKETS, registry=bulk)
    child = expected.labels("x")
    for value in values:
        child.observe(value)
    metrics._observe_many(folded.labels("x"), values)
    assert histogram_samples(folded, bulk) == histogram_samples(expected, one)


def test_queued_request_counts_reach_the_metric_on_flush() -> None:
    child = metrics.REQUESTS.labels("Group.CallbackAfterSendMsg", "4xx")
    before = child._value.get()
    for _ in range(3):
        metrics.count_request("Group.CallbackAfterSendMsg", "4xx")
    metrics.flush()
    assert child._value.get() == before + 3
