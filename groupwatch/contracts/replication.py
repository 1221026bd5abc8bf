"""Replication of new topics for a cluster of N brokers: the defaults, the refusal, the warning.

One broker: replication factor 1 and the broker's min ISR, as before. Three or more: factor 3
and ``min.insync.replicas=2``, so an ``acks=all`` write survives the loss of any one broker
and still has a copy on two. Explicit ``GROUPWATCH_REPLICATION_FACTOR`` /
``GROUPWATCH_MIN_INSYNC_REPLICAS`` win, but a factor above the cluster size is refused and
a min ISR above the factor too (no write could ever succeed).
"""

from __future__ import annotations

from dataclasses import dataclass

from groupwatch.contracts.settings import Settings

CLUSTER_FACTOR = 3  # the replication factor once the cluster has this many brokers
CLUSTER_MIN_ISR = 2


class ReplicationError(ValueError):
    """The configured replication cannot be created on this cluster."""


@dataclass(frozen=True)
class Replication:
    """Replication factor and min ISR of new topics on a cluster of ``brokers``."""

    brokers: int
    factor: int
    min_isr: int | None  # None: the broker's (or topic default) min.insync.replicas

    @property
    def config(self) -> dict[str, str]:
        """Topic configs to create with (empty when the broker's default applies)."""
        return {} if self.min_isr is None else {"min.insync.replicas": str(self.min_isr)}

    @property
    def warning(self) -> str | None:
        """A sentence when acks=all would not survive losing a broker on this cluster."""
        if self.brokers > 1 and self.factor > 1 and (self.min_isr or 1) < 2:
            return (
                f"min.insync.replicas is 1 on a {self.brokers}-broker cluster: an acks=all "
                "write is acknowledged by the leader alone and is lost if that broker dies "
                "before a follower copies it; set GROUPWATCH_MIN_INSYNC_REPLICAS=2"
            )
        if self.brokers > 1 and self.factor == 1:
            return (
                f"replication factor 1 on a {self.brokers}-broker cluster: a broker's loss "
                "makes its partitions unavailable and can lose their data"
            )
        return None


def replication_for(settings: Settings, brokers: int) -> Replication:
    """The replication of new topics on a cluster of ``brokers`` brokers."""
    if brokers < 1:
        raise ReplicationError("the cluster reports no brokers")
    factor = settings.replication_factor
    if factor is None:
        factor = CLUSTER_FACTOR if brokers >= CLUSTER_FACTOR else 1
    if factor > brokers:
        raise ReplicationError(
            f"GROUPWATCH_REPLICATION_FACTOR={factor} is larger than the cluster "
            f"({brokers} broker{'s' if brokers != 1 else ''}); use at most {brokers}"
        )
    min_isr = settings.min_insync_replicas
    if min_isr is None and factor >= CLUSTER_FACTOR:
        min_isr = CLUSTER_MIN_ISR
    if min_isr is not None and min_isr > factor:
        raise ReplicationError(
            f"GROUPWATCH_MIN_INSYNC_REPLICAS={min_isr} is larger than the replication factor "
            f"{factor}: no acks=all write could succeed"
        )
    return Replication(brokers, factor, min_isr)
