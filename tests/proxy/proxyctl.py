"""Helpers of the proxy tests: start kvcore's or etcd 3.5.1's grpc-proxy in front of a
3-member cluster of its own kind, and run etcd 3.5.1's etcdctl with bounded waits."""
from __future__ import annotations

import contextlib
import os
import queue
import subprocess
import sys
import threading
import time

from tests import etcd351, servers

WAIT = 30.0


def start_proxy(kind: str, base: str, members, extra: tuple = (),
                endpoints: str = "") -> tuple:
    port = servers.free_port()
    eps = endpoints or ",".join(f"127.0.0.1:{m.port}" for m in members)
    flags = ["start", f"--endpoints={eps}", f"--listen-addr=127.0.0.1:{port}",
             f"--advertise-client-url=127.0.0.1:{port}", *extra]
    argv = ([sys.executable, "-m", "kvcore", "grpc-proxy", *flags] if kind == "kvcore"
            else [etcd351.ETCD, "grpc-proxy", *flags])
    log = open(os.path.join(base, f"{kind}-proxy.log"), "w")
    p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                         start_new_session=True)
    log.close()
    servers.wait_port(port, p)
    return p, f"127.0.0.1:{port}"


@contextlib.contextmanager
def stack(kind: str, base: str):
    members = servers.start_cluster(os.path.join(base, kind), 3,
                                     etcd_binary=None if kind == "kvcore" else etcd351.ETCD)
    proxy = None
    try:
        servers.leader_of(members, timeout=90.0)   # a loaded machine elects slowly
        proxy, addr = start_proxy(kind, base, members)
        yield members, proxy, addr
    finally:
        if proxy is not None:
            proxy.terminate()
            proxy.wait(10)
        for m in members:
            m.stop()


def ctl(endpoint: str, *args, input=None) -> tuple:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}
    p = subprocess.run([etcd351.ETCDCTL, f"--endpoints={endpoint}", "--command-timeout=10s",
                        *args], input=input, capture_output=True, text=True, timeout=WAIT,
                       env=env)
    err = "\n".join(l for l in p.stderr.splitlines() if not l.startswith('{"level"'))
    return p.returncode, p.stdout, err


def lines_of(endpoint: str, n: int, *args, then=None) -> list:
    """The first n lines etcdctl prints for a long-running command (watch, elect);
    ``then()`` runs once the command is started."""
    p = subprocess.Popen([etcd351.ETCDCTL, f"--endpoints={endpoint}", *args],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                         start_new_session=True)
    q: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [q.put(l) for l in p.stdout], daemon=True).start()
    out = []
    try:
        time.sleep(0.5) if then is None else None
        if then is not None:
            then()
        deadline = time.monotonic() + WAIT
        while len(out) < n and time.monotonic() < deadline:
            try:
                out.append(q.get(timeout=0.2).rstrip("\n"))
            except queue.Empty:
                pass
    finally:
        p.kill()
        p.wait(10)
    return out
