"""A member that was down while more than --snapshot-count entries committed catches
up by snapshot install after restart; hashkv agrees on every member."""
import json
import time

from tests import servers


def test_lagging_member_catches_up_by_snapshot(tmp_path):
    members = servers.start_cluster(
        str(tmp_path), 3, extra=("--snapshot-count", "100",
                                 "--experimental-snapshot-catchup-entries", "20"))
    try:
        leader = servers.leader_of(members)
        lagging = next(m for m in members if m is not leader)
        lagging.stop()
        for i in range(400):
            assert leader.etcdctl("put", f"k{i % 50}", f"v{i}")[0] == 0
        leader.etcdctl("del", "k4")
        lagging_idx = members.index(lagging)
        members[lagging_idx] = lagging = lagging.restart()
        deadline = time.monotonic() + 30
        while "installed snapshot" not in lagging.log() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "installed snapshot" in lagging.log()
        assert "sent snapshot" in leader.log()
        # It serves the same data, and keeps following.
        assert lagging.etcdctl("get", "k49", "--print-value-only")[1].strip() == "v399"
        assert lagging.etcdctl("get", "k4", "--print-value-only")[1].strip() == ""
        assert leader.etcdctl("put", "after", "1")[0] == 0
        assert lagging.etcdctl("get", "after", "--print-value-only")[1].strip() == "1"
        rc, out, err = servers.etcdctl(servers.endpoints(members), "endpoint", "hashkv",
                                       "-w", "json")
        assert rc == 0, err
        assert len({h["HashKV"]["hash"] for h in json.loads(out)}) == 1
        # WAL segments behind the snapshot are released on the leader: its snap
        # directory holds snapshot files.
        import os
        snaps = os.listdir(os.path.join(leader.data_dir, "member", "snap"))
        assert any(n.endswith(".snap") for n in snaps)
    finally:
        for m in members:
            m.stop()
