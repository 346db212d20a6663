"""Members of the cluster under test: real processes on loopback, behind the fault proxy.

The same flags start kvcore and etcd (kvcore takes etcd's), so ``binary`` is either
"kvcore" (this package's server, ``python -m kvcore``) or a path to an etcd binary.
Each member runs in a session of its own, so a signal reaches the whole member (kvcore's
core and its workers alike): kill -9, SIGSTOP and SIGCONT act on the process group.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Optional

import grpc

from kvcore.api import rpc_pb2, rpc_pb2_grpc
from kvcore.robust.netproxy import FaultProxy


_handed_out: set = set()
_pick = threading.Lock()   # threads of one process (servers started side by side)


def free_port() -> int:
    """A free loopback port never handed out before by this process: the kernel may
    offer a just-closed port again, and one cluster's members need distinct ports.

    ``KVCORE_PORT_RANGE=lo-hi`` takes ports from that range only, so two runs side by
    side (one with the kernel's ephemeral ports, one in a range below them) never
    pick the same port between picking and listening."""
    with _pick:
        return _free_port()


def _free_port() -> int:
    span = os.environ.get("KVCORE_PORT_RANGE")
    if span:
        return _port_in_range(*map(int, span.split("-")))
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def _port_in_range(lo: int, hi: int) -> int:
    start = lo + (os.getpid() * 7919 + len(_handed_out)) % (hi - lo + 1)
    for i in range(hi - lo + 1):
        port = lo + (start - lo + i) % (hi - lo + 1)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port left in {lo}-{hi}")


@dataclass
class Member:
    index: int
    name: str
    argv: list
    env: dict
    client_port: int
    peer_port: int
    proxy_port: int
    data_dir: str
    log_path: str
    proc: Optional[subprocess.Popen] = None
    member_id: int = 0
    paused: bool = False

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    def start(self) -> None:
        with open(self.log_path, "a") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=self.env,
                                         start_new_session=True)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _signal(self, sig) -> None:
        if self.running():
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def kill9(self) -> None:
        if self.proc is not None:
            try:   # the whole group, even when its leader is gone (a crash point fired)
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc is not None:
            self.proc.wait(10)
        self.paused = False
        wait_port_free(self.client_port)

    def pause(self) -> None:
        self._signal(signal.SIGSTOP)
        self.paused = True

    def pause_core(self) -> None:
        """SIGSTOP of the member's main process alone (kvcore's core; its workers run
        on): a core that stalls while its workers still serve."""
        if self.proc is not None:
            os.kill(self.proc.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        self._signal(signal.SIGCONT)
        self.paused = False

    def stop(self) -> None:
        if self.paused:
            self.resume()
        if self.running():
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.proc.wait(5)

    def status(self, timeout: float = 1.0):
        with grpc.insecure_channel(self.endpoint) as ch:
            return rpc_pb2_grpc.MaintenanceStub(ch).Status(rpc_pb2.StatusRequest(),
                                                          timeout=timeout)


def wait_port_free(port: int, timeout: float = 15.0) -> None:
    """Until nothing accepts on the port (a killed member's workers are gone)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                pass
        except OSError:
            return
        time.sleep(0.05)
    raise TimeoutError(f"127.0.0.1:{port} still in use after {timeout}s")


class Cluster:
    def __init__(self, binary: str, members: int, base_dir: str, workers: int = 1):
        self.binary = binary
        self.base_dir = base_dir
        self.proxy = FaultProxy()
        os.makedirs(base_dir, exist_ok=True)
        ports = [(free_port(), free_port(), free_port()) for _ in range(members)]
        initial = ",".join(f"m{i}=http://127.0.0.1:{xp}" for i, (_, _, xp) in enumerate(ports))
        self.members = []
        for i, (cp, pp, xp) in enumerate(ports):
            self.proxy.add_route(xp, pp)
            data_dir = os.path.join(base_dir, f"m{i}.etcd")
            flags = ["--name", f"m{i}", "--data-dir", data_dir,
                     "--listen-client-urls", f"http://127.0.0.1:{cp}",
                     "--advertise-client-urls", f"http://127.0.0.1:{cp}",
                     "--listen-peer-urls", f"http://127.0.0.1:{pp}",
                     "--initial-advertise-peer-urls", f"http://127.0.0.1:{xp}",
                     "--initial-cluster", initial,
                     "--initial-cluster-token", "kvcore-robust"]
            if binary == "kvcore":
                argv = [sys.executable, "-m", "kvcore", *flags, "--workers", str(workers)]
                env = dict(os.environ)
            else:
                argv = [binary, *flags]
                env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD_")}
            self.members.append(Member(i, f"m{i}", argv, env, cp, pp, xp, data_dir,
                                       os.path.join(base_dir, f"m{i}.log")))

    def start(self, timeout: float = 60.0) -> None:
        for m in self.members:
            m.start()
        self.wait_healthy(timeout)
        for m in self.members:
            m.member_id = m.status().header.member_id
            self.proxy.name_target(m.proxy_port, m.member_id)

    def wait_healthy(self, timeout: float = 60.0) -> None:
        """Until every member answers Status and agrees on one leader."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                leaders = {m.status().leader for m in self.members}
                if len(leaders) == 1 and 0 not in leaders:
                    return
                last = f"leaders seen: {leaders}"
            except grpc.RpcError as e:
                last = e.details()
            for m in self.members:
                if m.proc is not None and m.proc.poll() is not None:
                    raise RuntimeError(f"{m.name} exited ({m.proc.returncode}):\n"
                                       f"{self.log_tail(m)}")
            time.sleep(0.1)
        raise TimeoutError(f"cluster not healthy after {timeout}s ({last})")

    def leader(self, timeout: float = 20.0) -> Member:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for m in self.members:
                if not m.running() or m.paused:
                    continue
                try:
                    st = m.status()
                except grpc.RpcError:
                    continue
                if st.leader and st.leader == st.header.member_id:
                    return m
            time.sleep(0.05)
        raise TimeoutError("no leader")

    def isolate(self, m: Member, inbound: bool = True, outbound: bool = True) -> None:
        for o in self.members:
            if o is m:
                continue
            if outbound:
                self.proxy.block(m.member_id, o.member_id)
            if inbound:
                self.proxy.block(o.member_id, m.member_id)
        if inbound:
            self.proxy.block(0, m.member_id)

    def log_tail(self, m: Member, n: int = 2000) -> str:
        try:
            with open(m.log_path, errors="replace") as f:
                return f.read()[-n:]
        except OSError:
            return ""

    def close(self) -> None:
        for m in self.members:
            m.stop()
        self.proxy.close()
