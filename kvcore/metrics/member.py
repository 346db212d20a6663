"""Every family etcd 3.5 exposes that the core owns, under etcd's names, types, help
and labels. Hooks elsewhere update plain attributes (``m.leader_changes += 1``) or
FastHistograms; gauges are read from the core's state at scrape time.

Families of etcd parts kvcore does not have keep etcd's shape and report what is
true here: the gRPC proxy's are 0 (no proxy); the v2 store's count kvcore's
membership store, which is what etcd 3.5 keeps in its v2 store; bbolt's commit
phases: LMDB has no rebalance/spill phase (observed as 0 s), its whole commit is
the write phase.
"""
from __future__ import annotations

import platform
import time

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from kvcore import ETCD_VERSION
from kvcore.auth.caller import unstamp
from kvcore.metrics.fast import FastHistogram, exponential

_MS14 = exponential(0.001, 2, 14)
# The core's proposal types (kvcore/server/core.py OP_*) by etcd's apply op names.
_OP_NAMES = {1: "Put", 2: "DeleteRange", 3: "Txn", 4: "Compaction", 5: "LeaseGrant",
             6: "LeaseRevoke", 7: "LeaseCheckpoint", 8: "ClusterMemberAttrSet", 9: "Auth",
             10: "Alarm"}
_OP_STAMPED = 11


def _gauge(name, doc, value, labels=None, label_values=None):
    g = GaugeMetricFamily(name, doc, labels=labels)
    g.add_metric(label_values or [], value)
    return g


def _counter(name, doc, value):
    c = CounterMetricFamily(name, doc)
    c.add_metric([], value)
    return c


class MemberMetrics:
    def __init__(self, core):
        self.core = core
        # server
        self.leader_changes = 0
        self.proposals_failed = 0
        self.heartbeat_send_failures = 0
        self.read_indexes_failed = 0
        self.slow_read_indexes = 0
        self.slow_apply = 0
        self.learner_promote_successes = 0
        self.health_success = 0
        self.health_failures = 0
        self.lease_expired = 0
        self.apply = FastHistogram("etcd_server_apply_duration_seconds",
                                   "The latency distributions of v2 apply called by backend.",
                                   exponential(0.0001, 2, 20), ("version", "op", "success"))
        # disk
        self.wal_fsync = FastHistogram("etcd_disk_wal_fsync_duration_seconds",
                                       "The latency distributions of fsync called by WAL.", _MS14)
        self.backend_commit = FastHistogram("etcd_disk_backend_commit_duration_seconds",
                                            "The latency distributions of commit called by backend.", _MS14)
        self.commit_phase = {p: FastHistogram(
            f"etcd_debugging_disk_backend_commit_{p}_duration_seconds",
            f"The latency distributions of commit.{p} called by bboltdb backend.", _MS14)
            for p in ("rebalance", "spill", "write")}
        self.defrag = FastHistogram("etcd_disk_backend_defrag_duration_seconds",
                                    "The latency distribution of backend defragmentation.",
                                    exponential(0.1, 2, 13))
        self.backend_snapshot = FastHistogram("etcd_disk_backend_snapshot_duration_seconds",
                                              "The latency distribution of backend snapshots.",
                                              exponential(0.01, 2, 17))
        # snap
        self.snap_fsync = FastHistogram("etcd_snap_fsync_duration_seconds",
                                        "The latency distributions of fsync called by snap.", _MS14)
        self.snap_save_total = FastHistogram("etcd_debugging_snap_save_total_duration_seconds",
                                             "The total latency distributions of save called by snapshot.", _MS14)
        self.snap_save_marshalling = FastHistogram(
            "etcd_debugging_snap_save_marshalling_duration_seconds",
            "The marshalling cost distributions of save called by snapshot.", _MS14)
        self.snap_db_fsync = FastHistogram("etcd_snap_db_fsync_duration_seconds",
                                           "The latency distributions of fsyncing .snap.db file", _MS14)
        self.snap_db_save = FastHistogram("etcd_snap_db_save_total_duration_seconds",
                                          "The total latency distributions of v3 snapshot save",
                                          exponential(0.1, 2, 10))
        # mvcc
        self.ranges = 0
        self.puts = 0
        self.deletes = 0
        self.txns = 0
        self.put_size = 0
        self.compaction_keys = 0
        self.compaction_last = 0.0
        self.index_compaction = FastHistogram(
            "etcd_debugging_mvcc_index_compaction_pause_duration_milliseconds",
            "Bucketed histogram of index compaction pause duration.", exponential(0.5, 2, 14))
        self.db_compaction_pause = FastHistogram(
            "etcd_debugging_mvcc_db_compaction_pause_duration_milliseconds",
            "Bucketed histogram of db compaction pause duration.", exponential(1, 2, 13))
        self.db_compaction_total = FastHistogram(
            "etcd_debugging_mvcc_db_compaction_total_duration_milliseconds",
            "Bucketed histogram of db compaction total duration.", exponential(100, 2, 14))
        self.hash = FastHistogram("etcd_mvcc_hash_duration_seconds",
                                  "The latency distribution of storage hash operation.",
                                  exponential(0.01, 2, 15))
        self.hash_rev = FastHistogram("etcd_mvcc_hash_rev_duration_seconds",
                                      "The latency distribution of storage hash by revision operation.",
                                      exponential(0.01, 2, 15))
        # lease
        self.leases_granted = 0
        self.leases_renewed = 0
        self.leases_revoked = 0
        self.lease_ttl = FastHistogram("etcd_debugging_lease_ttl_total", "Bucketed histogram of lease TTLs.",
                                       exponential(1, 2, 24))
        # network (peer transport)
        self.peer_sent: dict[int, int] = {}
        self.peer_received: dict[int, int] = {}
        self.peer_rtt = FastHistogram("etcd_network_peer_round_trip_time_seconds",
                                      "Round-Trip-Time histogram between peers",
                                      exponential(0.0001, 2, 16), ("To",))
        # promhttp (the scrapes themselves)
        self.scrapes = {"200": 0, "500": 0, "503": 0}
        self.scrapes_in_flight = 0

    def observe_apply(self, op: int, req: bytes, success: bool, seconds: float) -> None:
        """One applied request (etcd's applySec, and slowApplies over 100 ms)."""
        if op == _OP_STAMPED:   # a write stamped with its caller (auth on): its own op
            op = unstamp(req)[1]
        self.apply.observe(seconds, ("v3", _OP_NAMES.get(op, "Unknown"), "true" if success else "false"))
        if seconds > 0.1:
            self.slow_apply += 1

    def compacted(self, seconds: float, keys: int) -> None:
        ms = seconds * 1000
        self.compaction_keys += keys
        self.index_compaction.observe(ms)
        self.db_compaction_pause.observe(ms)
        self.db_compaction_total.observe(ms)
        self.compaction_last = time.time()

    def observe_commit(self, seconds: float) -> None:
        self.backend_commit.observe(seconds)
        ph = self.commit_phase
        ph["write"].observe(seconds)
        ph["rebalance"].observe(0.0)
        ph["spill"].observe(0.0)

    def snap_saved(self, marshal_s: float, fsync_s: float, total_s: float) -> None:
        self.snap_save_marshalling.observe(marshal_s)
        self.snap_fsync.observe(fsync_s)
        self.snap_save_total.observe(total_s)

    def peer_sent_bytes(self, pid: int, n: int) -> None:
        self.peer_sent[pid] = self.peer_sent.get(pid, 0) + n

    def peer_received_bytes(self, pid: int, n: int) -> None:
        self.peer_received[pid] = self.peer_received.get(pid, 0) + n

    async def probe_peers(self, interval: float = 5.0, every: float = 1.0) -> None:
        """etcd's prober: the round-trip time to each peer, observed every interval.
        The round trips run every second: they also keep the contact times the strict
        reconfiguration checks read (kvcore/server/peer_contact.py), and a follower
        has no other word from the other followers."""
        import asyncio
        t = self.core.transport
        rounds = 0
        while True:
            await asyncio.sleep(every)
            rounds += 1
            observe = rounds % max(1, round(interval / every)) == 0
            pids = list(t.urls)
            rtts = await asyncio.gather(*(t.round_trip(p, timeout=2.0) for p in pids))
            for pid, rtt in zip(pids, rtts):
                if rtt is not None and observe:
                    self.peer_rtt.observe(rtt, (f"{pid:x}",))

    # ---- scrape ----

    def collect(self, local_ranges: int = 0):
        c = self.core
        raft = c.raft
        hub = c.watch_hub
        me = c.membership.members.get(c.member_id)
        yield _gauge("etcd_cluster_version", "Which version is running. 1 for 'cluster_version' label "
                     "with current cluster version", 1, ["cluster_version"], [ETCD_VERSION.rsplit(".", 1)[0]])
        yield _gauge("etcd_server_version", "Which version is running. 1 for 'server_version' label "
                     "with current version.", 1, ["server_version"], [ETCD_VERSION])
        yield _gauge("etcd_server_go_version", "Which Go version server is running with. 1 for "
                     "'server_go_version' label with current version.", 1, ["server_go_version"],
                     [f"{platform.python_implementation().lower()}{platform.python_version()}"])
        yield _gauge("etcd_server_id", "Server or member ID in hexadecimal format. 1 for 'server_id' "
                     "label with current ID.", 1, ["server_id"], [f"{c.member_id:x}"])
        yield _gauge("etcd_server_has_leader", "Whether or not a leader exists. 1 is existence, 0 is not.",
                     1 if raft.lead else 0)
        yield _gauge("etcd_server_is_leader", "Whether or not this member is a leader. 1 if is, 0 otherwise.",
                     1 if raft.is_leader else 0)
        yield _gauge("etcd_server_is_learner", "Whether or not this member is a learner. 1 if is, 0 otherwise.",
                     1 if me is not None and me.is_learner else 0)
        yield _counter("etcd_server_leader_changes_seen", "The number of leader changes seen.",
                       self.leader_changes)
        yield _counter("etcd_server_learner_promote_successes", "The total number of successful learner "
                       "promotions while this member is leader.", self.learner_promote_successes)
        yield _counter("etcd_server_heartbeat_send_failures", "The total number of leader heartbeat send "
                       "failures (likely overloaded from slow disk).", self.heartbeat_send_failures)
        yield _counter("etcd_server_slow_apply", "The total number of slow apply requests (likely "
                       "overloaded from slow disk).", self.slow_apply)
        yield _gauge("etcd_server_proposals_committed_total",
                     "The total number of consensus proposals committed.", raft.committed)
        yield _gauge("etcd_server_proposals_applied_total",
                     "The total number of consensus proposals applied.", c.applied_index)
        yield _gauge("etcd_server_proposals_pending", "The current number of pending proposals to commit.",
                     len(c.proposer))
        yield _counter("etcd_server_proposals_failed", "The total number of failed proposals seen.",
                       self.proposals_failed)
        yield _counter("etcd_server_read_indexes_failed", "The total number of failed read indexes seen.",
                       self.read_indexes_failed)
        yield _counter("etcd_server_slow_read_indexes", "The total number of pending read indexes not in "
                       "sync with leader's or timed out read index requests.", self.slow_read_indexes)
        yield _gauge("etcd_server_quota_backend_bytes", "Current backend storage quota size in bytes.",
                     c.cfg.quota_backend_bytes)
        yield _gauge("etcd_server_snapshot_apply_in_progress_total",
                     "1 if the server is applying the incoming snapshot. 0 if none.", 0)
        yield _counter("etcd_server_health_success", "The total number of successful health checks",
                       self.health_success)
        yield _counter("etcd_server_health_failures", "The total number of failed health checks",
                       self.health_failures)
        yield _counter("etcd_debugging_server_lease_expired", "The total number of expired leases.",
                       self.lease_expired)
        yield self.apply.family()
        # disk
        yield self.wal_fsync.family()
        yield _gauge("etcd_disk_wal_write_bytes_total", "Total number of bytes written in WAL.",
                     c.wal.written_bytes)
        yield self.backend_commit.family()
        for h in self.commit_phase.values():
            yield h.family()
        yield self.defrag.family()
        yield self.backend_snapshot.family()
        yield _gauge("etcd_disk_defrag_inflight", "Whether or not defrag is active on the member. 1 means "
                     "active, 0 means not.", 0)
        for h in (self.snap_fsync, self.snap_save_total, self.snap_save_marshalling, self.snap_db_fsync,
                  self.snap_db_save):
            yield h.family()
        # mvcc
        store = c.store
        yield _counter("etcd_mvcc_range", "Total number of ranges seen by this member.",
                       self.ranges + local_ranges)
        yield _counter("etcd_debugging_mvcc_range", "Total number of ranges seen by this member.",
                       self.ranges + local_ranges)
        yield _counter("etcd_mvcc_put", "Total number of puts seen by this member.", self.puts)
        yield _counter("etcd_mvcc_delete", "Total number of deletes seen by this member.", self.deletes)
        yield _counter("etcd_mvcc_txn", "Total number of txns seen by this member.", self.txns)
        yield _gauge("etcd_debugging_mvcc_keys_total", "Total number of keys.", store.live_keys())
        yield _gauge("etcd_debugging_mvcc_watch_stream_total", "Total number of watch streams.",
                     hub.streams)
        yield _gauge("etcd_debugging_mvcc_watcher_total", "Total number of watchers.", hub.count())
        yield _gauge("etcd_debugging_mvcc_slow_watcher_total", "Total number of unsynced slow watchers.",
                     len(hub.unsynced))
        yield _counter("etcd_debugging_mvcc_events", "Total number of events sent by this member.",
                       hub.events_sent)
        yield _gauge("etcd_debugging_mvcc_pending_events_total", "Total number of pending events to be sent.", 0)
        yield self.index_compaction.family()
        yield self.db_compaction_pause.family()
        yield self.db_compaction_total.family()
        yield _gauge("etcd_debugging_mvcc_db_compaction_last", "The unix time of the last db compaction. "
                     "Resets to 0 on start.", self.compaction_last)
        yield _counter("etcd_debugging_mvcc_db_compaction_keys", "Total number of db keys compacted.",
                       self.compaction_keys)
        yield _gauge("etcd_mvcc_db_total_size_in_bytes", "Total size of the underlying database physically "
                     "allocated in bytes.", c.backend.size())
        yield _gauge("etcd_mvcc_db_total_size_in_use_in_bytes", "Total size of the underlying database "
                     "logically in use in bytes.", c.backend.size_in_use())
        yield _gauge("etcd_mvcc_db_open_read_transactions", "The number of currently open read transactions",
                     _readers(c.backend))
        yield self.hash.family()
        yield self.hash_rev.family()
        yield _gauge("etcd_debugging_mvcc_current_revision", "The current revision of store.", store.current_rev)
        yield _gauge("etcd_debugging_mvcc_compact_revision", "The revision of the last compaction in store.",
                     store.compact_main_rev if store.compact_main_rev > 0 else -1)
        yield _gauge("etcd_debugging_mvcc_total_put_size_in_bytes",
                     "The total size of put kv pairs seen by this member.", self.put_size)
        # lease, auth
        yield _counter("etcd_debugging_lease_granted", "The total number of granted leases.", self.leases_granted)
        yield _counter("etcd_debugging_lease_revoked", "The total number of revoked leases.", self.leases_revoked)
        # (the workers renew most keep-alives themselves: kvcore/lease/lessor.py)
        shared = c.lease_clock.renewed() if getattr(c, "lease_clock", None) is not None else 0
        yield _counter("etcd_debugging_lease_renewed", "The number of renewed leases seen by the leader.",
                       self.leases_renewed + shared)
        yield self.lease_ttl.family()
        yield _gauge("etcd_debugging_auth_revision", "The current revision of auth store.", c.auth.revision)
        # membership store (etcd's v2 store)
        reads = CounterMetricFamily("etcd_debugging_store_reads", "Total number of reads action by "
                                    "(get/getRecursive), local to this member.", labels=["action"])
        for a, v in sorted(c.membership.reads.items()):
            reads.add_metric([a], v)
        yield reads
        writes = CounterMetricFamily("etcd_debugging_store_writes", "Total number of writes (e.g. "
                                     "set/compareAndDelete) seen by this member.", labels=["action"])
        for a, v in sorted(c.membership.writes.items()):
            writes.add_metric([a], v)
        yield writes
        yield _counter("etcd_debugging_store_expires", "Total number of expired keys.", 0)
        yield _counter("etcd_debugging_store_watch_requests",
                       "Total number of incoming watch requests (new or reestablished).", 0)
        yield _gauge("etcd_debugging_store_watchers", "Count of currently active watchers.", 0)
        # network
        yield from self._network()
        # the gRPC proxy (none in a member)
        yield _gauge("etcd_grpc_proxy_cache_hits_total", "Total number of cache hits", 0)
        yield _gauge("etcd_grpc_proxy_cache_keys_total", "Total number of keys/ranges cached", 0)
        yield _gauge("etcd_grpc_proxy_cache_misses_total", "Total number of cache misses", 0)
        yield _counter("etcd_grpc_proxy_events_coalescing", "Total number of events coalescing", 0)
        yield _gauge("etcd_grpc_proxy_watchers_coalescing_total",
                     "Total number of current watchers coalescing", 0)

    def _network(self):
        c = self.core
        active = GaugeMetricFamily("etcd_network_active_peers", "The current number of active peer "
                                   "connections.", labels=["Local", "Remote"])
        for pid in sorted(c.transport.active_peers() if c.transport else ()):
            active.add_metric([f"{c.member_id:x}", f"{pid:x}"], 1)
        yield active
        sent = CounterMetricFamily("etcd_network_peer_sent_bytes", "The total number of bytes sent to "
                                   "peers.", labels=["To"])
        for pid, v in sorted(self.peer_sent.items()):
            sent.add_metric([f"{pid:x}"], v)
        yield sent
        recv = CounterMetricFamily("etcd_network_peer_received_bytes", "The total number of bytes "
                                   "received from peers.", labels=["From"])
        for pid, v in sorted(self.peer_received.items()):
            recv.add_metric([f"{pid:x}"], v)
        yield recv
        yield self.peer_rtt.family()

    def promhttp(self):
        req = CounterMetricFamily("promhttp_metric_handler_requests", "Total number of scrapes by HTTP "
                                  "status code.", labels=["code"])
        for code, v in sorted(self.scrapes.items()):
            req.add_metric([code], v)
        yield req
        yield _gauge("promhttp_metric_handler_requests_in_flight", "Current number of scrapes being served.",
                     self.scrapes_in_flight)


def _readers(backend) -> int:
    """LMDB reader slots in use (the core's and the workers' read transactions)."""
    try:
        return backend.env.info()["num_readers"]
    except Exception:   # the environment is being replaced (snapshot install)
        return 0
