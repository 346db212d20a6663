"""The process model: workers that die are restarted; the core dying takes the
whole member down (no half-alive member)."""
import signal
import os
import time

from tests import servers


def _wait(pred, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


def test_dead_worker_is_restarted_and_service_continues(tmp_path):
    srv = servers.start_kvcore(str(tmp_path / "kv.etcd"), workers=2)
    try:
        workers = servers.children(srv.proc.pid)
        assert len(workers) == 2
        assert srv.etcdctl("put", "a", "1")[0] == 0
        os.kill(workers[0], signal.SIGKILL)
        assert _wait(lambda: "restarting" in srv.log())
        assert _wait(lambda: len(servers.children(srv.proc.pid)) == 2
                     and workers[0] not in servers.children(srv.proc.pid))
        # Every connection succeeds again (each may land on either worker).
        for i in range(10):
            assert _wait(lambda: srv.etcdctl("put", f"b{i}", "x")[0] == 0, 15)
        rc, out, _ = srv.etcdctl("get", "b", "--prefix", "--keys-only")
        assert sorted(out.split()) == sorted(f"b{i}" for i in range(10))
    finally:
        srv.stop()


def test_core_death_takes_workers_down(tmp_path):
    srv = servers.start_kvcore(str(tmp_path / "kv.etcd"), workers=2)
    workers = servers.children(srv.proc.pid)
    assert len(workers) == 2
    srv.kill9()
    assert _wait(lambda: not any(servers.alive(p) for p in workers))
    servers.wait_port_free(srv.port)


def test_sigterm_stops_cleanly_and_data_survives(tmp_path):
    srv = servers.start_kvcore(str(tmp_path / "kv.etcd"), workers=2)
    assert srv.etcdctl("put", "k", "v")[0] == 0
    workers = servers.children(srv.proc.pid)
    srv.stop()
    assert srv.proc.returncode == 0
    assert not any(servers.alive(p) for p in workers)
    srv = srv.restart()
    try:
        assert srv.etcdctl("get", "k", "--print-value-only")[1].strip() == "v"
    finally:
        srv.stop()


def test_port_in_use_fails_at_start_with_a_clear_message(tmp_path):
    import socket
    import subprocess
    import sys
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        p = subprocess.run([sys.executable, "-m", "kvcore", "--data-dir", str(tmp_path / "d"),
                            "--listen-client-urls", f"http://127.0.0.1:{port}",
                            "--advertise-client-urls", f"http://127.0.0.1:{port}"],
                           capture_output=True, text=True, timeout=60)
    assert p.returncode != 0
    assert f"127.0.0.1:{port}" in p.stderr and "in use" in p.stderr


def test_restart_right_after_stop_with_client_connections(tmp_path):
    """The member closes its client connections on stop, leaving them in TIME_WAIT on
    the client port; a restart on the same port must still start (as etcd does)."""
    import socket
    srv = servers.start_kvcore(str(tmp_path / "kv.etcd"), workers=1)
    conns = []
    try:
        assert srv.etcdctl("put", "k", "v")[0] == 0
        for _ in range(5):   # idle connections the server, not the client, will close
            c = socket.create_connection(("127.0.0.1", srv.port))
            c.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes.fromhex("000000040000000000"))
            conns.append(c)
        time.sleep(0.2)
        srv.stop()
        srv = srv.restart()
        assert srv.etcdctl("get", "k", "--print-value-only")[1].strip() == "v"
    finally:
        for c in conns:
            c.close()
        srv.stop()
