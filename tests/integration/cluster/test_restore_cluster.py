"""etcd's disaster recovery with kvcore: one snapshot restored on each of three members
(`kvcoreutl snapshot restore` with each member's --name, --initial-cluster,
--initial-advertise-peer-urls, --initial-cluster-token), the new cluster started from
them: every member serves the data, with identical hashes, and takes writes."""
from tests import servers
from tests.snapshots import ctl, kvcoreutl, populate, view


def test_three_members_restored_from_one_snapshot(tmp_path):
    src = servers.start_kvcore(str(tmp_path / "src.etcd"), workers=1)
    try:
        populate(src)
        before = view(src)
        snap = str(tmp_path / "snap.db")
        ctl(src, "snapshot", "save", snap)
    finally:
        src.stop()

    def restore(name, data_dir, cluster, peer_url, token):
        rc, _, err = kvcoreutl("snapshot", "restore", snap, "--name", name,
                               "--initial-cluster", cluster, "--initial-cluster-token", token,
                               "--initial-advertise-peer-urls", peer_url,
                               "--data-dir", data_dir)
        assert rc == 0, err

    members = servers.start_cluster(str(tmp_path / "new"), n=3, prepare=restore)
    try:
        servers.leader_of(members)
        for m in members:
            # keys, leases, users, roles, and HashKV (hash, compact revision) each
            assert view(m) == before
        ctl(members[1], "put", "after-restore", "yes")
        for m in members:
            assert ctl(m, "get", "after-restore", "--print-value-only").strip() == "yes"
    finally:
        for m in members:
            m.stop()
