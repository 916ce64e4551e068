"""Replication metrics, on the worker's own registry (served with its other metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_FAILOVER_BUCKETS = (0.25, 0.5, 1, 2, 3, 4, 5, 7.5, 10, 20, 60)


class ReplicationMetrics:
    def __init__(self, r: CollectorRegistry) -> None:
        self.under_replicated = Gauge("zlog_replication_under_replicated_partitions",
                                      "Partitions led here whose ISR is smaller than their replica set", registry=r)
        self.leading = Gauge("zlog_replication_leading_partitions", "Partitions this worker leads", registry=r)
        self.isr_shrinks = Counter("zlog_replication_isr_shrinks", "ISR shrinks of partitions led here", registry=r)
        self.isr_expands = Counter("zlog_replication_isr_expands", "ISR expansions of partitions led here",
                                   registry=r)
        self.elections = Counter("zlog_replication_leader_elections", "Leaderships this worker took", registry=r)
        self.failover_seconds = Histogram("zlog_replication_failover_seconds",
                                          "From a partition seen without a live leader to this worker leading it",
                                          buckets=_FAILOVER_BUCKETS, registry=r)
        self.follower_lag = Gauge("zlog_replication_follower_lag_records", "Records a follower is behind (leader's view)",
                                  ["partition", "replica"], registry=r)
        self.lag_records = Gauge("zlog_replication_lag_records", "Records this follower is behind its leader",
                                 ["partition"], registry=r)
        self.truncated = Counter("zlog_replication_truncated_records",
                                 "Records cut from divergent tails before following (KIP-101)", registry=r)
        self.reassignments = Counter("zlog_replication_reassignments",
                                     "Reassignment steps this worker's transactions made (as controller): reassign "
                                     "(drain, balance), rereplicate (off a lost worker), complete", ["step"],
                                     registry=r)
        self.reassigning = Gauge("zlog_replication_reassigning_partitions",
                                 "Partitions led here with a reassignment under way", registry=r)
        self.lost_workers = Gauge("zlog_replication_lost_workers",
                                  "Workers holding replicas that have had no etcd lease for "
                                  "storage.replica_dead_after_ms (this worker's count)", registry=r)
        self.log_restarts = Counter("zlog_replication_log_restarts",
                                    "Followed logs restarted at the leader's log start (OFFSET_OUT_OF_RANGE)",
                                    registry=r)
        self.errors = Counter("zlog_replication_errors", "Replication errors, by kind", ["kind"], registry=r)
