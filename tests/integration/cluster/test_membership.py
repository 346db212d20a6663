"""Membership changes with the real etcdctl: add a learner, start it with
--initial-cluster-state existing, promote it, remove a member (which stops)."""
import json
import re
import time

from tests import servers


def _members(srv):
    rc, out, err = srv.etcdctl("member", "list", "-w", "json")
    assert rc == 0, err
    return json.loads(out)["members"]


def _wait(pred, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.2)
    return False


def test_add_learner_promote_remove(tmp_path):
    members = servers.start_cluster(str(tmp_path), 3, extra=("--initial-cluster-token", "tok"))
    new = None
    try:
        for i in range(20):
            members[0].etcdctl("put", f"k{i}", "v")
        port, peer = servers.free_port(), servers.free_port()
        peer_url = f"http://127.0.0.1:{peer}"
        rc, out, err = members[0].etcdctl("member", "add", "m3", f"--peer-urls={peer_url}",
                                          "--learner")
        assert rc == 0, err
        assert "ETCD_INITIAL_CLUSTER_STATE=\"existing\"" in out
        env_lines = dict(l.split("=", 1) for l in out.splitlines() if l.startswith("ETCD_"))
        initial_cluster = env_lines["ETCD_INITIAL_CLUSTER"].strip('"')
        learners = [m for m in _members(members[1]) if m.get("isLearner")]
        assert len(learners) == 1 and learners[0]["peerURLs"] == [peer_url]
        # Adding a second learner is refused, as etcd does.
        rc, _, err = members[0].etcdctl("member", "add", "m4",
                                        f"--peer-urls=http://127.0.0.1:{servers.free_port()}",
                                        "--learner")
        assert rc != 0 and "too many learner members in cluster" in err

        new = servers.start_joining_member(str(tmp_path), "m3", initial_cluster, "tok", port, peer)
        # The learner catches up and serves serializable reads.
        assert _wait(lambda: new.etcdctl("get", "k19", "--consistency", "s",
                                         "--print-value-only")[1].strip() == "v")
        rc, out, _ = new.etcdctl("endpoint", "status", "-w", "json")
        assert json.loads(out)[0]["Status"]["isLearner"] is True
        lid = learners[0]["ID"]
        assert _wait(lambda: members[0].etcdctl("member", "promote", f"{lid:x}")[0] == 0)
        assert not any(m.get("isLearner") for m in _members(members[0]))
        # (a learner refuses MemberList until it has applied its own promotion)
        assert _wait(lambda: new.etcdctl("member", "list")[0] == 0)
        assert len(_members(new)) == 4
        # A write through the promoted member, read everywhere.
        # (refused as from a learner until the member has applied its promotion)
        assert _wait(lambda: new.etcdctl("put", "from-new", "1")[0] == 0)
        for m in members:
            assert m.etcdctl("get", "from-new", "--print-value-only")[1].strip() == "1"

        # Remove an original member: it stops cleanly.
        victim = members[2]
        vid = next(m["ID"] for m in _members(members[0]) if m["name"] == "m2")
        rc, out, err = servers.member_change(members[0], "remove", f"{vid:x}")
        assert rc == 0, err
        # etcdctl prints the ID with %16x: padded with spaces when it has a leading zero.
        assert re.search(rf"Member\s+{vid:x} removed", out), out
        victim.proc.wait(30)
        assert "permanently removed" in victim.log()
        assert len(_members(members[0])) == 3
        # If the removed member was the leader, the others elect a new one first.
        assert _wait(lambda: members[0].etcdctl("put", "after-remove", "1")[0] == 0)
        assert new.etcdctl("get", "after-remove", "--print-value-only")[1].strip() == "1"
        # Removing an unknown member is etcd's error.
        rc, _, err = members[0].etcdctl("member", "remove", "1234")
        assert rc != 0 and "member not found" in err
    finally:
        for m in members + ([new] if new else []):
            m.stop()
