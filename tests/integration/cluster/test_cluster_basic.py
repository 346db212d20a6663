"""A three-member cluster driven by the real etcdctl."""
import json

import pytest

from tests import servers


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    members = servers.start_cluster(str(tmp_path_factory.mktemp("c3")), 3)
    yield members
    for m in members:
        m.stop()


def test_one_leader_three_healthy_members(cluster):
    eps = servers.endpoints(cluster)
    rc, out, err = servers.etcdctl(eps, "endpoint", "status", "-w", "json")
    assert rc == 0, err
    st = [s["Status"] for s in json.loads(out)]
    leaders = {s["leader"] for s in st}
    assert len(leaders) == 1 and 0 not in leaders
    assert sum(1 for s in st if s["header"]["member_id"] == s["leader"]) == 1
    assert len({s["header"]["cluster_id"] for s in st}) == 1
    assert len({s["raftTerm"] for s in st}) == 1
    rc, out, err = servers.etcdctl(eps, "endpoint", "health")
    assert rc == 0 and (out + err).count("is healthy") == 3, out + err
    rc, out, _ = servers.etcdctl(eps, "member", "list", "-w", "json")
    members = json.loads(out)["members"]
    assert sorted(m["name"] for m in members) == ["m0", "m1", "m2"]
    assert sorted(m["clientURLs"][0] for m in members) == sorted(
        f"http://{m.endpoint}" for m in cluster)


def test_writes_on_any_member_read_back_linearizably_everywhere(cluster):
    for i, writer in enumerate(cluster):
        assert writer.etcdctl("put", f"k{i}", f"from-m{i}")[0] == 0
        # Linearizable: the very next read on every member sees the write.
        for reader in cluster:
            rc, out, _ = reader.etcdctl("get", f"k{i}", "--print-value-only")
            assert out.strip() == f"from-m{i}"
    rc, out, _ = cluster[0].etcdctl("txn", input='value("k0") = "from-m0"\n\nput t yes\n\nput t no\n\n')
    assert rc == 0 and out.split()[0] == "SUCCESS"
    for m in cluster:
        assert m.etcdctl("get", "t", "--print-value-only")[1].strip() == "yes"
    # A Txn of plain puts only (read from its bytes at apply, on every member), one
    # put with a lease: every member has both keys and the lease its key.
    lid = cluster[0].etcdctl("lease", "grant", "300")[1].split()[1]
    rc, out, _ = cluster[1].etcdctl("txn", input=f"\nput p1 one\nput p2 two --lease={lid}\n\n\n")
    assert rc == 0 and out.split()[0] == "SUCCESS", out
    for m in cluster:
        rc, out, _ = m.etcdctl("get", "p", "--prefix")
        assert out.split() == ["p1", "one", "p2", "two"]
        assert "attached keys([p2])" in m.etcdctl("lease", "timetolive", lid, "--keys")[1]


def test_watch_and_lease_across_members(cluster):
    import subprocess, time
    p = subprocess.Popen([servers.ETCDCTL, "--endpoints", cluster[2].endpoint, "watch", "wk"],
                         stdout=subprocess.PIPE, text=True, env={"ETCDCTL_API": "3"})
    time.sleep(1)
    rc, out, _ = cluster[0].etcdctl("lease", "grant", "30")
    lid = out.split()[1]
    assert cluster[1].etcdctl("put", "wk", "v", f"--lease={lid}")[0] == 0
    assert f"attached keys([wk])" in cluster[2].etcdctl("lease", "timetolive", lid, "--keys")[1]
    assert cluster[1].etcdctl("lease", "revoke", lid)[0] == 0
    time.sleep(1)
    p.terminate()
    assert p.communicate(timeout=10)[0].split() == ["PUT", "wk", "v", "DELETE", "wk"]


def test_hashkv_agrees(cluster):
    rc, out, err = servers.etcdctl(servers.endpoints(cluster), "endpoint", "hashkv", "-w", "json")
    assert rc == 0, err
    hashes = {h["HashKV"]["hash"] for h in json.loads(out)}
    assert len(hashes) == 1


def test_cluster_wide_maintenance(cluster):
    """--cluster dials every member's client URL as listed ("http://127.0.0.1:port"):
    etcdctl 3.4's gRPC client then sends that URL as :authority, which etcd accepts."""
    eps = servers.endpoints(cluster[:1])
    rc, out, err = servers.etcdctl(eps, "defrag", "--cluster")
    assert rc == 0 and out.count("Finished defragmenting etcd member") == 3, out + err
    rc, out, err = servers.etcdctl(eps, "endpoint", "hashkv", "--cluster", "-w", "json")
    assert rc == 0, err
    assert len(json.loads(out)) == 3 and len({h["HashKV"]["hash"] for h in json.loads(out)}) == 1


def test_move_leader(cluster):
    leader = servers.leader_of(cluster)
    target = next(m for m in cluster if m is not leader)
    rc, out, _ = target.etcdctl("endpoint", "status", "-w", "json")
    tid = json.loads(out)[0]["Status"]["header"]["member_id"]
    # Only the leader can hand leadership over (etcdctl checks on its side too).
    import grpc
    from kvcore.api import rpc_pb2, rpc_pb2_grpc
    with grpc.insecure_channel(target.endpoint) as ch:
        try:
            rpc_pb2_grpc.MaintenanceStub(ch).MoveLeader(rpc_pb2.MoveLeaderRequest(targetID=tid),
                                                        timeout=10)
            raise AssertionError("a follower accepted MoveLeader")
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert e.details() == "etcdserver: not leader"
    rc, out, err = leader.etcdctl("move-leader", f"{tid:x}")
    assert rc == 0, err
    assert servers.leader_of(cluster) is target
    assert target.etcdctl("put", "after-move", "1")[0] == 0
