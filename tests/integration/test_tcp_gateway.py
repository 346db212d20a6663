"""``kvcore gateway start`` (etcd's L4 gateway) beside etcd 3.5.1's ``etcd gateway
start``, each in front of the same kvcore member with a dead endpoint listed first:
etcdctl works through both, both set the dead endpoint aside with etcd's words, and
both refuse a listen address that is one of the endpoints. kvcore had no gateway
command (etcd's e2e TestGateway)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from bench.servers import free_port
from tests import etcd351, servers


def _gateway(kind: str, *args) -> list:
    if kind == "kvcore":
        return [sys.executable, "-m", "kvcore", "gateway", *args]
    return [etcd351.ETCD, "gateway", *args]


def _wait_line(path: str, text: str, proc, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(path) as f:
            for line in f:
                if line.startswith("{") and text in line:
                    return json.loads(line)
        assert proc.poll() is None, open(path).read()
        time.sleep(0.05)
    raise AssertionError(f"no {text!r} in {open(path).read()}")


def test_gateway_proxies_to_live_endpoint_as_etcd(tmp_path):
    member = servers.start_kvcore(str(tmp_path / "m.etcd"))
    dead = f"127.0.0.1:{free_port()}"
    procs = []
    try:
        for kind in ("kvcore", "etcd"):
            port = free_port()
            log_path = str(tmp_path / f"{kind}-gateway.log")
            with open(log_path, "w") as log:
                proc = subprocess.Popen(
                    _gateway(kind, f"--endpoints=http://{dead},{member.endpoint}", "start",
                             f"--listen-addr=127.0.0.1:{port}", "--retry-delay=1m"),
                    stdout=log, stderr=subprocess.STDOUT)
            procs.append(proc)
            ready = _wait_line(log_path, "ready to proxy client requests", proc)
            assert ready["endpoints"] == [dead, member.endpoint]
            for i in range(3):   # round robin: the dead one is tried first, then dropped
                rc, out, err = servers.etcdctl(f"127.0.0.1:{port}", "put", f"{kind}{i}", "v")
                assert (rc, out.strip()) == (0, "OK"), err
            rc, out, _ = servers.etcdctl(f"127.0.0.1:{port}", "get", f"{kind}2",
                                         "--print-value-only")
            assert (rc, out.strip()) == (0, "v")
            gone = _wait_line(log_path, "deactivated endpoint", proc)
            assert (gone["level"], gone["address"], gone["interval"]) == ("warn", dead, 60)
            assert gone["error"] == f"dial tcp {dead}: connect: connection refused"
        for kind in ("kvcore", "etcd"):
            r = subprocess.run(_gateway(kind, "start", f"--endpoints={member.endpoint}",
                                        f"--listen-addr={member.endpoint}"),
                               capture_output=True, text=True, timeout=20,
                               env={k: v for k, v in os.environ.items()
                                    if not k.startswith("ETCD_")})
            assert r.returncode == 1
            assert r.stdout == (f"SRV or endpoint ({member.endpoint}->{member.endpoint}) "
                                f"should not resolve to the gateway listen addr "
                                f"({member.endpoint})\n"), (kind, r.stdout, r.stderr)
    finally:
        for p in procs:
            p.kill()
            p.wait(10)
        member.stop()
