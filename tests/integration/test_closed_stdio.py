"""A member started with its standard descriptors closed serves like any other.

etcd's functional-test agent (tests/integration/functional) restarts a member that way
once it has closed the member's old log file: etcd 3.5.1 runs on, logging to
--log-outputs. kvcore used to hand 0/1/2 to the first files and sockets it opened and
exited without a word (docs/decisions.md, "Closed standard descriptors")."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from tests import etcd351, servers


def _close_stdio() -> None:
    for fd in (0, 1, 2):
        os.close(fd)


@pytest.mark.parametrize("kind", ["kvcore", "etcd"])
def test_member_started_with_stdio_closed_serves(tmp_path, kind):
    port, peer = servers.free_port(), servers.free_port()
    log_path = tmp_path / "member.log"
    argv = [*([sys.executable, "-m", "kvcore", "--workers", "2"] if kind == "kvcore"
              else [etcd351.ETCD]),
            "--name", "m", "--data-dir", str(tmp_path / "m.etcd"),
            "--listen-client-urls", f"http://127.0.0.1:{port}",
            "--advertise-client-urls", f"http://127.0.0.1:{port}",
            "--listen-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-cluster", f"m=http://127.0.0.1:{peer}",
            "--logger", "zap", "--log-outputs", str(log_path)]
    proc = subprocess.Popen(argv, preexec_fn=_close_stdio, start_new_session=True)
    try:
        servers.wait_port(port, proc)
        deadline = time.monotonic() + 30
        while "ready to serve client requests" not in (
                log_path.read_text() if log_path.exists() else ""):
            assert proc.poll() is None, f"{kind} exited {proc.returncode}"
            assert time.monotonic() < deadline, f"{kind} never became ready"
            time.sleep(0.05)
        endpoint = f"127.0.0.1:{port}"
        assert servers.etcdctl(endpoint, "put", "k", "v")[0] == 0
        rc, out, _ = servers.etcdctl(endpoint, "get", "k", "--print-value-only")
        assert (rc, out.strip()) == (0, "v")
        assert proc.poll() is None
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
