"""Samples of a Prometheus exposition text (a stage's ``/metrics``), summed."""

from __future__ import annotations

from collections import Counter

from prometheus_client.parser import text_string_to_metric_families


def metric_by(text: str, name: str, *labels: str) -> Counter[tuple[str, ...]]:
    """The samples named ``name`` summed by the values of ``labels`` ("" where absent)."""
    out: Counter[tuple[str, ...]] = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                out[tuple(sample.labels.get(lb, "") for lb in labels)] += sample.value
    return out


def metric_sums(text: str, name: str, label: str) -> Counter[str]:
    """``name``'s samples summed by one label."""
    return Counter({key[0]: n for key, n in metric_by(text, name, label).items()})


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of ``name``'s samples that carry every one of ``labels`` (0 when none do)."""
    return float(metric_by(text, name, *labels)[tuple(labels.values())])
