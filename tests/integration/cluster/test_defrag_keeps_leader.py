"""A defragmentation longer than the election timeout on the leader costs no
election: etcd's raft loop keeps heartbeating while its apply waits for the defrag,
and kvcore copies the backend on another thread while its applies wait, so followers
keep their leader. Writes through a follower are answered meanwhile; a write through
the defragmenting leader is answered once the copy is in; every member ends with the
same data. Each member's copy takes 2.5 s here (a failpoint), the election timeout is
1 s."""
import base64
import json
import threading
import time

from tests import servers

DEFRAG_S = 2.5


def _status(m) -> dict:
    rc, out, err = m.etcdctl("endpoint", "status", "-w", "json")
    assert rc == 0, err
    return json.loads(out)[0]["Status"]


def test_long_defrag_on_the_leader_keeps_its_leadership(tmp_path):
    slow = {"KVCORE_FAILPOINTS": f"defrag-before=sleep({int(DEFRAG_S * 1000)})"}
    ms = servers.start_cluster(str(tmp_path / "c"), n=3, member_env={0: slow, 1: slow, 2: slow})
    try:
        leader = servers.leader_of(ms)
        follower = next(m for m in ms if m is not leader)
        before = _status(leader)
        assert leader.etcdctl("put", "k0", "v0")[0] == 0

        defrag = {}

        def run_defrag():
            t0 = time.monotonic()
            defrag["rc"], defrag["out"], defrag["err"] = leader.etcdctl(
                "defrag", timeout=30)
            defrag["end"] = time.monotonic()
            defrag["s"] = defrag["end"] - t0
        t = threading.Thread(target=run_defrag)
        t.start()
        time.sleep(0.5)                   # the copy has begun
        rc, _, err = follower.etcdctl("put", "k1", "through-a-follower")
        follower_done = time.monotonic()
        assert rc == 0, err
        rc, _, err = leader.etcdctl("put", "k2", "through-the-leader")
        assert rc == 0, err
        t.join(30)
        assert defrag["rc"] == 0, defrag
        assert "Finished defragmenting etcd member" in defrag["out"], defrag
        assert defrag["s"] >= DEFRAG_S
        assert follower_done < defrag["end"]   # it did not wait for the leader's copy

        after = [_status(m) for m in ms]
        assert {s["leader"] for s in after} == {before["leader"]}, after
        assert {s["header"]["raft_term"] for s in after} == {before["header"]["raft_term"]}
        for m in ms:   # a linearizable read on each member sees every acknowledged write
            rc, out, err = m.etcdctl("get", "k", "--prefix", "-w", "json")
            assert rc == 0, err
            kvs = json.loads(out).get("kvs", [])
            got = {base64.b64decode(kv["key"]).decode(): base64.b64decode(kv["value"]).decode()
                   for kv in kvs}
            assert got == {"k0": "v0", "k1": "through-a-follower",
                           "k2": "through-the-leader"}, (m.endpoint, got)
        rc, out, err = servers.etcdctl(servers.endpoints(ms), "endpoint", "hashkv",
                                       "-w", "json")
        assert rc == 0, err
        assert len({h["HashKV"]["hash"] for h in json.loads(out)}) == 1, out
    finally:
        for m in ms:
            m.stop()
