"""An etcd user swapping the binary: kvcore started with the flags of a stopped etcd
3.5.1 member of a larger cluster (its --data-dir, or only its --wal-dir) exits 1 naming
etcd's files and the `kvcoreutl migrate` command, and leaves every byte of etcd's data
as it was: etcd starts on it again and serves the same keys; the command it names then
works. A one-member etcd's data dir, and the one `etcdutl snapshot restore` makes, is
taken over in place (tests/compat/test_etcd_data_dir_takeover.py). And the directories
kvcore creates are private (0700 at every level), as etcd's are."""
import hashlib
import os
import stat
import subprocess
import sys

from bench.servers import free_port
from tests import etcd351, servers


def _digest(tree: str) -> dict:
    out = {}
    for root, _, files in os.walk(tree):
        for n in files:
            p = os.path.join(root, n)
            with open(p, "rb") as f:
                out[os.path.relpath(p, tree)] = hashlib.sha256(f.read()).hexdigest()
    return out


# A member of a larger cluster: its data dir is not taken over (kvcore/storage/takeover.py).
OTHERS = ",other=http://127.0.0.1:1"


def _kvcore_on(data_dir: str, *extra, others: str = OTHERS) -> subprocess.CompletedProcess:
    port, peer = free_port(), free_port()
    argv = [sys.executable, "-m", "kvcore", "--name", "default", "--data-dir", data_dir,
            "--listen-client-urls", f"http://127.0.0.1:{port}",
            "--advertise-client-urls", f"http://127.0.0.1:{port}",
            "--listen-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-cluster", f"default=http://127.0.0.1:{peer}{others}", "--workers", "1",
            *extra]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def _keys(srv) -> str:
    rc, out, err = srv.etcdctl("get", "--prefix", "")
    assert rc == 0, err
    return out


def test_kvcore_refuses_etcds_data_dir_and_leaves_it_whole(tmp_path):
    etcd_dir = str(tmp_path / "etcd.etcd")
    et = servers.start_etcd(etcd_dir, binary=etcd351.ETCD)
    try:
        for i in range(5):
            assert et.etcdctl("put", f"k{i}", f"v{i}")[0] == 0
        served = _keys(et)
    finally:
        et.stop()
    before = _digest(etcd_dir)

    p = _kvcore_on(etcd_dir)
    assert p.returncode == 1, p.stdout + p.stderr
    msg = p.stderr.strip().splitlines()[-1]
    assert os.path.join(etcd_dir, "member", "snap", "db") in msg, msg
    assert f"kvcoreutl migrate --etcd-data-dir {etcd_dir} --data-dir" in msg, msg

    fresh = str(tmp_path / "fresh.etcd")      # etcd's WAL given as --wal-dir alone
    p = _kvcore_on(fresh, "--wal-dir", os.path.join(etcd_dir, "member", "wal"))
    assert p.returncode == 1, p.stdout + p.stderr
    assert "written by etcd" in p.stderr and "kvcoreutl migrate" in p.stderr, p.stderr
    assert not os.path.exists(fresh)
    assert _digest(etcd_dir) == before

    et = servers.start_etcd(etcd_dir, binary=etcd351.ETCD)   # the way back is untouched
    try:
        assert _keys(et) == served
    finally:
        et.stop()

    taken = str(tmp_path / "taken.etcd")                     # the way in it names
    m = subprocess.run([sys.executable, "-m", "kvcore.utl", "migrate", "--etcd-data-dir",
                        etcd_dir, "--data-dir", taken], capture_output=True, text=True,
                       timeout=60)
    assert m.returncode == 0, m.stderr
    kv = servers.start_kvcore(taken)
    try:
        assert _keys(kv) == served
    finally:
        kv.stop()


def _modes(data_dir: str) -> dict:
    return {os.path.relpath(os.path.join(root, d), data_dir):
            stat.S_IMODE(os.stat(os.path.join(root, d)).st_mode)
            for root, dirs, _ in os.walk(data_dir) for d in dirs + ["."]}


def test_member_directories_are_private_as_etcds(tmp_path):
    old = os.umask(0o022)
    try:
        kv = servers.start_kvcore(str(tmp_path / "kv.etcd"))
        kv.stop()
        et = servers.start_etcd(str(tmp_path / "et.etcd"), binary=etcd351.ETCD)
        try:   # etcd listens before it makes its WAL: a write says it made it
            assert et.etcdctl("put", "k", "v")[0] == 0
        finally:
            et.stop()
    finally:
        os.umask(old)
    kv_modes, et_modes = _modes(str(tmp_path / "kv.etcd")), _modes(str(tmp_path / "et.etcd"))
    for rel in ("member", "member/wal", "member/snap", "."):
        assert et_modes[rel] == 0o700, et_modes
        assert kv_modes[rel] == 0o700, kv_modes
    assert all(m == 0o700 for m in kv_modes.values()), kv_modes


def test_a_refused_start_is_logged_to_the_log_file_as_etcd_logs_its_own(tmp_path):
    """The refusal also goes to --log-outputs at level fatal, where etcd 3.5.1 writes a
    fatal start error (here: its data dir is a file): a supervisor that drops stderr,
    as etcd's functional-test agent does after its first restart, still shows why."""
    import json

    etcd_dir = str(tmp_path / "etcd.etcd")
    et = servers.start_etcd(etcd_dir, binary=etcd351.ETCD)
    et.stop()
    log_file = tmp_path / "kvcore.log"
    p = _kvcore_on(etcd_dir, "--logger", "zap", "--log-outputs", str(log_file))
    assert p.returncode == 1, p.stdout + p.stderr
    last = json.loads(log_file.read_text().splitlines()[-1])
    assert last["level"] == "fatal" and "kvcoreutl migrate" in last["msg"], last

    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    etcd_log = tmp_path / "etcd.log"
    port, peer = free_port(), free_port()
    e = subprocess.run([etcd351.ETCD, "--data-dir", str(not_a_dir), "--logger", "zap",
                        "--log-outputs", str(etcd_log),
                        "--listen-client-urls", f"http://127.0.0.1:{port}",
                        "--advertise-client-urls", f"http://127.0.0.1:{port}",
                        "--listen-peer-urls", f"http://127.0.0.1:{peer}"],
                       capture_output=True, text=True, timeout=60)
    assert e.returncode == 1 and not e.stderr.strip(), e.stderr
    assert json.loads(etcd_log.read_text().splitlines()[-1])["level"] == "fatal"
