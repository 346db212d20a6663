"""Leases and watches across kill -9 and restart."""
import subprocess
import time

from tests import servers


def _ttl(srv, lid):
    out = srv.etcdctl("lease", "timetolive", lid)[1]
    if "already expired" in out:
        return None
    return int(out.split("remaining(")[1].split("s)")[0])


def _wait_gone(srv, key, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if srv.etcdctl("get", key, "--print-value-only")[1].strip() == "":
            return True
        time.sleep(0.2)
    return False


def _grant(srv, ttl):
    rc, out, err = srv.etcdctl("lease", "grant", str(ttl))
    assert rc == 0, err
    return out.split()[1]


def test_leases_and_keys_across_kill9(tmp_path):
    srv = servers.start_kvcore(str(tmp_path / "kv.etcd"), workers=1,
                               extra=("--experimental-lease-checkpoint-interval", "500ms"))
    try:
        live = _grant(srv, 60)
        assert srv.etcdctl("put", "live", "1", f"--lease={live}")[0] == 0
        short = _grant(srv, 2)
        assert srv.etcdctl("put", "short", "1", f"--lease={short}")[0] == 0
        assert _wait_gone(srv, "short", 15), "an expired lease's key stayed"
        down = _grant(srv, 5)
        assert srv.etcdctl("put", "down", "1", f"--lease={down}")[0] == 0
        time.sleep(3)  # checkpoints record the leases' remaining TTL meanwhile
        srv.kill9()
        srv = srv.restart()
        assert srv.etcdctl("get", "live", "--print-value-only")[1].strip() == "1"
        assert _ttl(srv, short) is None
        assert srv.etcdctl("get", "short", "--print-value-only")[1].strip() == ""
        # The live lease resumed from its checkpointed remaining TTL, not a fresh 60 s.
        assert 0 < _ttl(srv, live) <= 58
        # The lease that was running out when the member died expires after restart,
        # taking its key with it (it had about 2 s left at the last checkpoint).
        assert _wait_gone(srv, "down", 15)
        assert _ttl(srv, down) is None
        assert srv.etcdctl("get", "live", "--print-value-only")[1].strip() == "1"
    finally:
        srv.stop()


def test_watch_resumes_from_last_revision_after_restart(tmp_path):
    srv = servers.start_kvcore(str(tmp_path / "kv.etcd"), workers=1)
    try:
        for i in range(5):
            srv.etcdctl("put", "w", str(i))
        # A watcher saw revisions up to 4, then the member died after more writes.
        srv.etcdctl("put", "w", "5")
        srv.kill9()
        srv = srv.restart()
        srv.etcdctl("put", "w", "6")
        p = subprocess.Popen([servers.ETCDCTL, "--endpoints", srv.endpoint, "watch", "w",
                              "--rev", "5"], stdout=subprocess.PIPE, text=True,
                             env={"ETCDCTL_API": "3"})
        time.sleep(1.5)
        p.terminate()
        out = p.communicate(timeout=10)[0].split()
        assert out == ["PUT", "w", "3", "PUT", "w", "4", "PUT", "w", "5", "PUT", "w", "6"]
    finally:
        srv.stop()
