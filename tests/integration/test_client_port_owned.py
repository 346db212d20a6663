"""The client port belongs to one member: the core binds it once and its workers
accept on that socket (kvcore/engine/client_listeners.py). A second server on the
same port fails as etcd 3.5.1's does, and no process can share the port with
SO_REUSEPORT while the member runs (workers binding with SO_REUSEPORT allowed that)."""
from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests import servers


def _second_member(binary: list, data_dir: str, port: int) -> subprocess.CompletedProcess:
    peer = servers.free_port()
    argv = [*binary, *servers._member_argv("second", data_dir, port, peer, "http", "http")]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


def _serving(srv, pid: int) -> bool:
    """The worker ``pid`` has a listening TCP socket on the client port."""
    inodes = set()
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            cols = line.split()
            if cols[3] == "0A" and int(cols[1].split(":")[1], 16) == srv.port:
                inodes.add(cols[9])
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            return True
    return False


@pytest.mark.parametrize("kind", ["kvcore", "etcd"])
def test_second_member_on_the_same_client_port_exits_like_etcd(tmp_path, kind):
    if kind == "kvcore":
        first = servers.start_kvcore(str(tmp_path / "first"), workers=2)
        binary = [sys.executable, "-m", "kvcore", "--workers", "2"]
    else:
        first = servers.start_etcd(str(tmp_path / "first"), binary=servers.ETCD351)
        binary = [servers.ETCD351]
    try:
        assert first.etcdctl("put", "k", "first")[0] == 0
        p = _second_member(binary, str(tmp_path / "second"), first.port)
        assert p.returncode == 1, p.stderr[-2000:]
        assert f"listen tcp 127.0.0.1:{first.port}: bind: address already in use" in p.stderr
        # The first member still serves every client: nothing was taken from it.
        for _ in range(5):
            rc, out, _ = first.etcdctl("get", "k", "--print-value-only")
            assert rc == 0 and out.strip() == "first"
    finally:
        first.stop()


def test_no_process_can_share_the_client_port(tmp_path):
    srv = servers.start_kvcore(str(tmp_path / "kv"), workers=2)
    try:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        with s, pytest.raises(OSError) as e:
            s.bind(("127.0.0.1", srv.port))
        assert e.value.errno == errno.EADDRINUSE
        # A worker the core restarts accepts on the same socket: with the other
        # worker stopped, the restarted one alone serves.
        old = servers.children(srv.proc.pid)
        assert len(old) == 2
        os.kill(old[0], signal.SIGKILL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            new = [p for p in servers.children(srv.proc.pid) if p not in old]
            if new and _serving(srv, new[0]):
                break
            time.sleep(0.1)
        else:
            raise AssertionError("no worker restarted")
        os.kill(old[1], signal.SIGSTOP)
        try:
            deadline = time.monotonic() + 60   # the new worker may still be importing
            while srv.etcdctl("put", "a", "1")[0] != 0:
                assert time.monotonic() < deadline, "the restarted worker does not serve"
            rc, out, _ = srv.etcdctl("get", "a", "--print-value-only")
            assert rc == 0 and out.strip() == "1"
        finally:
            os.kill(old[1], signal.SIGCONT)
    finally:
        srv.stop()
