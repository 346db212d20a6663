"""Prometheus metrics of the core, under etcd's metric names where they exist.

Workers serve ``/metrics`` by asking the core (the IPC pseudo-method METRICS), so
one scrape shows the member's state whichever worker answers.
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily


class CoreMetrics:
    def __init__(self, core):
        self.core = core
        self.registry = CollectorRegistry()
        self.registry.register(_StateCollector(core))
        self.proposals_committed = Counter(
            "etcd_server_proposals_committed", "Committed proposals.", registry=self.registry)
        self.proposals_failed = Counter(
            "etcd_server_proposals_failed", "Failed proposals.", registry=self.registry)
        self.wal_fsync = Histogram(
            "etcd_disk_wal_fsync_duration_seconds", "WAL write + fdatasync latency.",
            buckets=[0.001 * 2 ** i for i in range(14)], registry=self.registry)
        self.backend_commit = Histogram(
            "etcd_disk_backend_commit_duration_seconds", "Apply batch commit latency.",
            buckets=[0.001 * 2 ** i for i in range(14)], registry=self.registry)
        self.batch_size = Histogram(
            "kvcore_proposal_batch_entries", "Entries per persisted batch.",
            buckets=[1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096], registry=self.registry)
        self.lease_expired = Counter(
            "etcd_server_lease_expired", "Leases revoked because they expired.",
            registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _StateCollector:
    """Gauges read from the core's state at scrape time."""

    def __init__(self, core):
        self.core = core

    def collect(self):
        c = self.core
        hub = c.watch_hub

        def g(name, doc, value):
            m = GaugeMetricFamily(name, doc)
            m.add_metric([], value)
            return m

        yield g("etcd_server_has_leader", "Whether a leader exists.", 1 if c.raft.lead else 0)
        yield g("etcd_server_is_leader", "Whether this member is the leader.",
                1 if c.raft.is_leader else 0)
        yield g("etcd_server_proposals_committed_index", "Raft commit index.", c.raft.committed)
        yield g("etcd_server_term", "Raft term.", c.raft.term)
        yield g("etcd_mvcc_db_total_size_in_bytes", "Backend size.", c.backend.size())
        yield g("etcd_mvcc_db_total_size_in_use_in_bytes", "Backend size in use.",
                c.backend.size_in_use())
        yield g("etcd_debugging_mvcc_keys_total", "Keys in the revision index.", len(c.store.index))
        yield g("etcd_debugging_mvcc_current_revision", "Current store revision.",
                c.store.current_rev)
        yield g("etcd_debugging_mvcc_compact_revision", "Last compaction revision.",
                max(c.store.compact_main_rev, 0))
        yield g("etcd_debugging_mvcc_watcher_total", "Watchers.", hub.count())
        yield g("etcd_debugging_mvcc_slow_watcher_total", "Unsynced (catching up) watchers.",
                len(hub.unsynced))
        yield g("etcd_debugging_lease_total", "Leases.", len(c.lessor.leases))
        yield g("etcd_server_proposals_pending", "Proposals waiting to be applied.",
                len(c.proposer))
        yield g("etcd_server_proposals_applied_total", "Applied index.", c.applied_index)
