"""A member added after the log was compacted joins through a snapshot that already
includes it (the leader describes the backend copy it sends, with today's
membership, as etcd's merged snapshot does)."""
import json
import time

from tests import servers


def test_new_member_joins_by_snapshot(tmp_path):
    members = servers.start_cluster(
        str(tmp_path), 3, extra=("--snapshot-count", "100",
                                 "--experimental-snapshot-catchup-entries", "10",
                                 "--initial-cluster-token", "tok"))
    new = None
    try:
        for i in range(300):
            assert members[0].etcdctl("put", f"k{i % 40}", f"v{i}")[0] == 0
        port, peer = servers.free_port(), servers.free_port()
        url = f"http://127.0.0.1:{peer}"
        rc, out, err = members[0].etcdctl("member", "add", "m3", f"--peer-urls={url}",
                                          "--learner")
        assert rc == 0, err
        initial = next(l.split("=", 1)[1].strip('"') for l in out.splitlines()
                       if l.startswith("ETCD_INITIAL_CLUSTER="))
        new = servers.start_joining_member(str(tmp_path), "m3", initial, "tok", port, peer)
        deadline = time.monotonic() + 30
        value = ""
        while time.monotonic() < deadline and value != "v299":
            value = new.etcdctl("get", "k19", "--consistency", "s", "--print-value-only")[1].strip()
            time.sleep(0.3)
        assert value == "v299"
        assert "installed snapshot" in new.log()
        # A learner refuses MemberList (as etcd's do); that it finds itself in the
        # membership the snapshot carried shows in its status.
        rc, out, _ = new.etcdctl("endpoint", "status", "-w", "json")
        assert rc == 0 and json.loads(out)[0]["Status"]["isLearner"] is True
        rc, out, _ = members[0].etcdctl("member", "list", "-w", "json")
        assert len(json.loads(out)["members"]) == 4
        assert members[0].etcdctl("put", "later", "1")[0] == 0
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and new.etcdctl(
                "get", "later", "--consistency", "s", "--print-value-only")[1].strip() != "1":
            time.sleep(0.2)
        assert new.etcdctl("get", "later", "--consistency", "s",
                           "--print-value-only")[1].strip() == "1"
    finally:
        for m in members + ([new] if new else []):
            m.stop()
