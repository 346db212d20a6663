"""The way in: a real etcd 3.5.1's snapshot restored by `kvcoreutl snapshot restore`,
and a stopped etcd's (3.5.1, 3.4.23) data dir taken over by `kvcoreutl migrate`: kvcore
then serves what etcd served (keys with history, leases, users, roles, HashKV). Bad
input gives etcdutl's errors and leaves nothing behind; changes only in a crashed
etcd's WAL stop the migration."""
import os

from tests import etcd351, servers
from tests.snapshots import ctl, kvcoreutl, populate, utl, view


def _serve_kvcore(data_dir):
    kv = servers.start_kvcore(data_dir, workers=2)
    try:
        return view(kv)
    finally:
        kv.stop()


def test_etcd_snapshot_and_data_dir_into_kvcore(tmp_path):
    et = servers.start_etcd(str(tmp_path / "etcd.etcd"), binary=etcd351.ETCD)
    try:
        populate(et)
        before = view(et)
        snap = str(tmp_path / "snap.db")
        ctl(et, "snapshot", "save", snap)
    finally:
        et.stop()
    rc, out, err = kvcoreutl("snapshot", "status", snap, "-w", "json")
    assert rc == 0 and out == utl("snapshot", "status", snap, "-w", "json")[1], err

    restored = str(tmp_path / "restored.etcd")
    rc, out, err = kvcoreutl("snapshot", "restore", snap, "--data-dir", restored)
    assert rc == 0, err
    assert _serve_kvcore(restored) == before

    migrated = str(tmp_path / "migrated.etcd")
    rc, out, err = kvcoreutl("migrate", "--etcd-data-dir", str(tmp_path / "etcd.etcd"),
                             "--data-dir", migrated)
    assert rc == 0, err
    assert _serve_kvcore(migrated) == before


def test_bad_input_gives_etcdutls_errors_and_leaves_nothing(tmp_path):
    et = servers.start_etcd(str(tmp_path / "etcd.etcd"), binary=etcd351.ETCD)
    try:
        for i in range(50):
            ctl(et, "put", f"k{i}", "v" * 100, auth=False)
        snap = tmp_path / "snap.db"
        ctl(et, "snapshot", "save", str(snap), auth=False)
    finally:
        et.stop()
    data = snap.read_bytes()
    cases = tmp_path / "cases"
    cases.mkdir()
    (cases / "truncated.db").write_bytes(data[:len(data) // 2])
    (cases / "badsha.db").write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    (cases / "notbbolt.db").write_bytes(os.urandom(8192 + 32))    # a trailer-sized tail
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("x")
    runs = [(str(cases / "truncated.db"), str(tmp_path / "o1")),
            (str(cases / "badsha.db"), str(tmp_path / "o2")),
            (str(cases / "notbbolt.db"), str(tmp_path / "o3")),
            (str(snap), str(full))]
    theirs_dir = tmp_path.parent / (tmp_path.name + "-etcdutl")   # etcdutl leaves files
    (theirs_dir / "full").mkdir(parents=True)
    (theirs_dir / "full" / "x").write_text("x")
    listing = sorted(os.listdir(tmp_path))
    for src, out_dir in runs:
        ours = kvcoreutl("snapshot", "restore", src, "--data-dir", out_dir)
        theirs = utl("snapshot", "restore", src, "--data-dir",
                     str(theirs_dir / os.path.basename(out_dir)))
        assert ours[0] == 1, ours
        assert sorted(os.listdir(tmp_path)) == listing, src       # nothing left behind
        err = ours[2].strip().splitlines()[-1]
        if "notbbolt" in src:
            # etcdutl only notices when opening the copy: it panics ("failed to open
            # database"); kvcoreutl reports bbolt's error
            assert err == "Error: expected sha256 " + err.split("expected sha256 ")[1]
        else:
            want = theirs[2].strip().splitlines()[-1].replace(str(theirs_dir), str(tmp_path))
            assert err == want, (ours, theirs)
        assert sorted(os.listdir(full)) == ["x"]
    junk = kvcoreutl("snapshot", "restore", str(cases / "notbbolt.db"), "--skip-hash-check",
                     "--data-dir", str(tmp_path / "o4"))
    assert junk[0] == 1 and junk[2].strip().endswith("Error: invalid database")
    assert not os.path.exists(tmp_path / "o4")
    assert kvcoreutl("snapshot", "status", str(cases / "notbbolt.db"))[2].strip() == \
        "Error: invalid database"


def test_migrate_from_etcd_34(tmp_path):
    """Debian's etcd 3.4.23: its backend has no confState nor term; same data after."""
    et = servers.start_etcd(str(tmp_path / "etcd34.etcd"))
    try:
        for i in range(20):
            ctl(et, "put", f"k{i}", f"v{i}", auth=False)
        ctl(et, "del", "k3", auth=False)
        ctl(et, "compact", "10", auth=False)
        before = (ctl(et, "get", "", "--from-key", "-w", "json", auth=False),
                  ctl(et, "endpoint", "hashkv", "-w", "json", auth=False))
    finally:
        et.stop()
    rc, _, err = kvcoreutl("migrate", "--etcd-data-dir", str(tmp_path / "etcd34.etcd"),
                           "--data-dir", str(tmp_path / "kv.etcd"))
    assert rc == 0, err
    kv = servers.start_kvcore(str(tmp_path / "kv.etcd"))
    try:
        after = (ctl(kv, "get", "", "--from-key", "-w", "json", auth=False),
                 ctl(kv, "endpoint", "hashkv", "-w", "json", auth=False))
    finally:
        kv.stop()
    strip = lambda out: [  # noqa: E731  (the header's member and cluster IDs differ)
        {k: v for k, v in doc.items() if k != "header"} | {"rev": doc["header"]["revision"]}
        for doc in _docs(out)]
    assert strip(after[0]) == strip(before[0])
    assert [d["HashKV"]["hash"] for d in _docs(after[1])] == \
        [d["HashKV"]["hash"] for d in _docs(before[1])]


def test_migrate_refuses_changes_only_in_etcds_wal(tmp_path):
    """etcd killed before its batched backend commit: the committed puts are only in
    its WAL. migrate says so and writes nothing; after a clean etcd restart it works."""
    data = str(tmp_path / "etcd.etcd")
    et = servers.start_etcd(data, binary=etcd351.ETCD,
                            extra=("--backend-batch-interval", "1h",
                                   "--backend-batch-limit", "100000"))
    for i in range(5):
        ctl(et, "put", f"k{i}", f"v{i}", auth=False)
    et.kill9()
    rc, out, err = kvcoreutl("migrate", "--etcd-data-dir", data,
                             "--data-dir", str(tmp_path / "kv.etcd"))
    assert rc == 1 and "committed entries" in err and "stop it cleanly" in err, err
    assert not os.path.exists(tmp_path / "kv.etcd")
    et = servers.start_etcd(data, binary=etcd351.ETCD)     # replays its WAL
    try:
        ctl(et, "get", "k0", auth=False)                   # linearizable: all applied
    finally:
        et.stop()
    rc, out, err = kvcoreutl("migrate", "--etcd-data-dir", data,
                             "--data-dir", str(tmp_path / "kv.etcd"))
    assert rc == 0, err
    kv = servers.start_kvcore(str(tmp_path / "kv.etcd"))
    try:
        assert ctl(kv, "get", "k", "--prefix", "--print-value-only", auth=False).split() == \
            [f"v{i}" for i in range(5)]
    finally:
        kv.stop()


def _docs(out):
    import json
    doc = json.loads(out)
    return doc if isinstance(doc, list) else [doc]
