"""Metric values provoked on real members: a leader change, a failed proposal,
the peer round-trip time and bytes, fdatasyncs and backend commits, gRPC codes
summed over all workers, process_* over all processes of a member. Scraped on
--listen-metrics-urls (served by the core, so with either gRPC engine)."""
from __future__ import annotations

import json
import os
import subprocess
import time

from bench.servers import free_port
from tests import etcd351, promscrape, servers

_METRICS_PORT: dict = {}   # client port -> its member's metrics port


def _metrics_flags(n: int) -> dict:
    ports = [free_port() for _ in range(n)]
    return {i: ("--listen-metrics-urls", f"http://127.0.0.1:{p}") for i, p in enumerate(ports)}


def _remember(srv, flags: tuple):
    _METRICS_PORT[srv.port] = int(flags[1].rsplit(":", 1)[1])
    return srv


def _metrics(srv) -> str:
    return promscrape.scrape(f"http://127.0.0.1:{_METRICS_PORT[srv.port]}")


def _until(fn, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        got = fn()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(0.2)


def _ids(srv) -> dict:
    """client port -> member id in hex, once every member has published its client
    URLs (as in etcd, a member just started is listed without them for a moment)."""
    def listed():
        rc, out, err = srv.etcdctl("member", "list", "-w", "json")
        assert rc == 0, err
        members = json.loads(out)["members"]
        if all(m.get("clientURLs") for m in members):
            return {int(m["clientURLs"][0].rsplit(":", 1)[1]): f"{m['ID']:x}"
                    for m in members}
        return None
    ids = _until(listed)
    assert ids, "a member never published its client URLs"
    return ids


def test_leader_change_failed_proposal_and_peer_metrics(tmp_path):
    flags = _metrics_flags(3)
    members = servers.start_cluster(os.path.join(str(tmp_path), "c"), n=3, member_extra=flags)
    for i, m in enumerate(members):
        _remember(m, flags[i])
    try:
        leader = servers.leader_of(members)
        f1, f2 = [m for m in members if m is not leader]
        ids = _ids(f1)
        lead_hex = ids[leader.port]
        text = _metrics(f1)
        changes = promscrape.value(text, "etcd_server_leader_changes_seen_total")
        assert changes >= 1
        assert promscrape.value(text, "etcd_network_peer_sent_bytes_total", To=lead_hex) > 0
        assert promscrape.value(text, "etcd_network_peer_received_bytes_total", From=lead_hex) > 0
        assert promscrape.value(text, "etcd_network_active_peers", Local=ids[f1.port],
                                Remote=lead_hex) == 1
        # etcd's prober: the round-trip time to each peer is measured.
        assert _until(lambda: promscrape.value(
            _metrics(f1), "etcd_network_peer_round_trip_time_seconds_count", To=lead_hex) > 0)
        # The leader goes: the followers elect another one and count the change.
        leader.kill9()
        assert _until(lambda: promscrape.value(
            _metrics(f1), "etcd_server_leader_changes_seen_total") >= changes + 1)
        # Alone, f1 has no leader: a put waits for one until the request timeout (7 s,
        # as in etcd), then fails and counts as a failed proposal.
        f2.kill9()
        assert _until(lambda: promscrape.value(_metrics(f1), "etcd_server_has_leader") == 0)
        failed = promscrape.value(_metrics(f1), "etcd_server_proposals_failed_total")
        rc, _, err = f1.etcdctl("put", "k", "v", timeout=60)
        assert rc != 0, err
        text = _metrics(f1)
        assert promscrape.value(text, "etcd_server_proposals_failed_total") >= failed + 1
        assert promscrape.total(text, "grpc_server_handled_total", grpc_method="Put",
                                grpc_code="Unavailable") + promscrape.total(
            text, "grpc_server_handled_total", grpc_method="Put", grpc_code="Unknown") >= 1
    finally:
        for m in members:
            m.stop()


def _rss_and_fds(pid: int) -> tuple[int, int]:
    with open(f"/proc/{pid}/statm") as f:
        rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def test_fsync_commit_grpc_codes_and_process_metrics(tmp_path):
    flags = _metrics_flags(1)[0]
    srv = _remember(servers.start_kvcore(os.path.join(str(tmp_path), "m.etcd"), workers=2,
                                         extra=flags), flags)
    try:
        before = _metrics(srv)
        for i in range(5):
            assert srv.etcdctl("put", f"k{i}", "v")[0] == 0
        for _ in range(4):   # over both workers: the scrape sums them
            assert srv.etcdctl("get", "k0", "--rev=1000")[0] != 0
        assert srv.etcdctl("lease", "grant", "100")[0] == 0
        after = _metrics(srv)

        def grew(name, **labels):
            return promscrape.value(after, name, **labels) - promscrape.value(before, name, **labels)
        # Each acknowledged put was made durable by an fdatasync of its own batch.
        assert grew("etcd_disk_wal_fsync_duration_seconds_count") >= 5
        assert grew("etcd_disk_wal_fsync_duration_seconds_sum") > 0
        assert grew("etcd_disk_backend_commit_duration_seconds_count") >= 5
        assert grew("etcd_disk_wal_write_bytes_total") > 0
        assert grew("etcd_mvcc_put_total") == 5
        assert grew("etcd_server_apply_duration_seconds_count", version="v3", op="Put",
                    success="true") == 5
        assert grew("etcd_debugging_mvcc_total_put_size_in_bytes") == 5 * len("k0v")
        code = dict(grpc_service="etcdserverpb.KV", grpc_type="unary")
        assert grew("grpc_server_handled_total", grpc_code="OutOfRange", grpc_method="Range",
                    **code) == 4
        assert grew("grpc_server_handled_total", grpc_code="OK", grpc_method="Put", **code) == 5
        assert grew("grpc_server_started_total", grpc_method="Put", **code) == 5
        assert grew("etcd_debugging_lease_granted_total") == 1
        assert grew("etcd_debugging_lease_ttl_total_count") == 1
        assert promscrape.value(after, "etcd_server_proposals_committed_total") == \
            promscrape.value(after, "etcd_server_proposals_applied_total") > 0
        # A watch: one stream, one watcher, its events counted.
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}
        watch = subprocess.Popen([servers.ETCDCTL, "--endpoints", srv.endpoint, "watch", "w"],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                 env={**env, "ETCDCTL_API": "3"})
        try:
            assert _until(lambda: promscrape.value(_metrics(srv), "etcd_debugging_mvcc_watcher_total") == 1)
            assert promscrape.value(_metrics(srv), "etcd_debugging_mvcc_watch_stream_total") == 1
            assert srv.etcdctl("put", "w", "1")[0] == 0
            assert _until(lambda: promscrape.value(_metrics(srv), "etcd_debugging_mvcc_events_total") == 1)
        finally:
            watch.kill()
            watch.wait(10)
        assert _until(lambda: promscrape.value(_metrics(srv), "etcd_debugging_mvcc_watch_stream_total") == 0)
        # A compaction removes k0's first value (overwritten) and counts it.
        assert srv.etcdctl("put", "k0", "again")[0] == 0
        rc, out, _ = srv.etcdctl("get", "k0", "-w", "json")
        rev = json.loads(out)["header"]["revision"]
        assert srv.etcdctl("compaction", str(rev))[0] == 0
        text = _metrics(srv)
        assert promscrape.value(text, "etcd_debugging_mvcc_db_compaction_keys_total") >= 1
        assert promscrape.value(text, "etcd_debugging_mvcc_compact_revision") == rev
        assert promscrape.value(text, "etcd_debugging_mvcc_db_compaction_last") > 0
        # process_* covers the core and both workers.
        core_rss, core_fds = _rss_and_fds(srv.proc.pid)
        workers = servers.children(srv.proc.pid)
        assert len(workers) == 2
        assert promscrape.value(after, "process_resident_memory_bytes") > core_rss
        assert promscrape.value(after, "process_open_fds") > core_fds
    finally:
        srv.stop()


def test_keys_gauge_counts_live_keys_as_etcd(tmp_path):
    """etcd_debugging_mvcc_keys_total drops on a delete (etcd decrements it on a key's
    tombstone); kvcore counted every key its index held, deleted ones too (etcd's e2e
    TestV3MetricsInsecure caught it)."""
    with servers.kvcore_and_etcd(tmp_path, etcd_binary=etcd351.ETCD) as (kv, et):
        got = {}
        for name, srv in (("kvcore", kv), ("etcd", et)):
            for args in (("put", "a", "1"), ("put", "b", "2"), ("put", "a", "3"),
                         ("del", "a"), ("put", "c", "4"), ("del", "nothing")):
                rc, _, err = srv.etcdctl(*args)
                assert rc == 0, err
            got[name] = promscrape.value(promscrape.scrape(f"http://{srv.endpoint}"),
                                         "etcd_debugging_mvcc_keys_total")
        assert got == {"kvcore": 2.0, "etcd": 2.0}
