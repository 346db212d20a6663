"""Real processes for tests: a kvcore member, a real etcd, and the real etcdctl.

Everything listens on 127.0.0.1 with free ports and fresh data directories; every
wait is bounded.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Optional

import grpc

from bench.servers import free_port  # one per process: ports never handed out twice
from kvcore.api import rpc_pb2, rpc_pb2_grpc
from kvcore.robust.cluster import wait_port_free  # noqa: F401 (tests use servers.wait_port_free)

ETCDCTL = os.environ.get("KVCORE_TEST_ETCDCTL", shutil.which("etcdctl") or "/usr/bin/etcdctl")
ETCD = os.environ.get("KVCORE_TEST_ETCD", shutil.which("etcd") or "/usr/bin/etcd")


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


@dataclass
class Server:
    kind: str
    proc: subprocess.Popen
    port: int
    peer_port: int
    data_dir: str
    argv: list
    log_path: str
    env: dict = field(default_factory=dict)
    scheme: str = "http"          # of the client URL
    ctl_args: tuple = ()          # etcdctl flags this server needs (--cacert, --cert, ...)

    @property
    def endpoint(self) -> str:
        if self.scheme == "https":
            return f"https://127.0.0.1:{self.port}"
        return f"127.0.0.1:{self.port}"

    def etcdctl(self, *args, input: Optional[str] = None, timeout: float = 30.0):
        return etcdctl(self.endpoint, *self.ctl_args, *args, input=input, timeout=timeout)

    def log(self) -> str:
        try:
            with open(self.log_path) as f:
                return f.read()
        except OSError:
            return ""

    def kill9(self) -> None:
        """kill -9 the member (for kvcore: the core; its workers die with it)."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def restart(self) -> "Server":
        """Stop and start again (same flags, ports, data dir). This object follows the
        new process too, so a caller that keeps it still stops what runs."""
        self.stop()
        wait_port_free(self.port)
        self.proc = _launch(self.kind, self.argv, self.port, self.peer_port, self.data_dir,
                            self.log_path, self.env, self.scheme, self.ctl_args).proc
        return self


def cluster_version(srv: Server, cafile: Optional[str] = None) -> Optional[str]:
    """/version's etcdcluster ("not_decided" until the cluster version is set), or None
    when it does not answer."""
    url = f"{srv.scheme}://127.0.0.1:{srv.port}/version"
    ctx = ssl.create_default_context(cafile=cafile) if cafile else None
    try:
        with urllib.request.urlopen(url, timeout=3, context=ctx) as r:
            return json.loads(r.read()).get("etcdcluster")
    except (OSError, ValueError):
        return None


def wait_cluster_version(srv: Server, cafile: Optional[str] = None,
                         timeout: float = 30.0) -> None:
    """Until the member has decided its cluster version. etcd answers "not_decided" for a
    moment after it listens, then writes the version through raft (into the v2 store
    too: a v2 index read before that is one short)."""
    deadline = time.monotonic() + timeout
    while cluster_version(srv, cafile) in (None, "not_decided"):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{srv.kind} on {srv.port} decided no cluster version")
        time.sleep(0.05)


def _launch(kind, argv, port, peer_port, data_dir, log_path, env, scheme="http",
            ctl_args=()) -> Server:
    logf = open(log_path, "a")
    log_start = logf.tell()      # a restart appends: only what this start wrote counts
    proc = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, env=env,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    logf.close()
    srv = Server(kind, proc, port, peer_port, data_dir, argv, log_path, env, scheme,
                 tuple(ctl_args))
    try:
        wait_port(port, proc)
        if kind == "kvcore":
            _wait_ready(srv, log_start)
    except Exception:
        srv.stop()
        raise RuntimeError(f"{kind} did not start:\n{srv.log()[-3000:]}")
    return srv


def _wait_ready(srv: Server, log_start: int = 0, timeout: float = 30.0) -> None:
    """Until this start logged that it serves (the core binds the client port before
    it recovers, as etcd does, so an open port is not enough)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if "ready to serve client requests" in srv.log()[log_start:]:
            return
        if srv.proc.poll() is not None:
            raise RuntimeError("exited")
        time.sleep(0.05)
    raise TimeoutError("kvcore not ready")


def _member_argv(name: str, data_dir: str, port: int, peer: int, scheme: str,
                 peer_scheme: str, initial_cluster: Optional[str] = None) -> list:
    """The flags every test member gets (client and peer URLs on 127.0.0.1; a
    one-member initial cluster unless given)."""
    return ["--name", name, "--data-dir", data_dir,
            "--listen-client-urls", f"{scheme}://127.0.0.1:{port}",
            "--advertise-client-urls", f"{scheme}://127.0.0.1:{port}",
            "--listen-peer-urls", f"{peer_scheme}://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls", f"{peer_scheme}://127.0.0.1:{peer}",
            "--initial-cluster",
            initial_cluster or f"{name}={peer_scheme}://127.0.0.1:{peer}"]


def start_kvcore(data_dir: str, workers: int = 1, extra: tuple = (), name: str = "default",
                 port: Optional[int] = None, env_extra: Optional[dict] = None,
                 scheme: str = "http", peer_scheme: str = "http",
                 ctl_args: tuple = ()) -> Server:
    """``scheme``/``peer_scheme`` https need TLS flags in ``extra`` (--cert-file, ...);
    ``ctl_args`` are the etcdctl flags Server.etcdctl then passes (--cacert, ...)."""
    port = port or free_port()
    peer = free_port()
    argv = [sys.executable, "-m", "kvcore",
            *_member_argv(name, data_dir, port, peer, scheme, peer_scheme),
            "--workers", str(workers), *extra]
    env = dict(os.environ)
    env.update(env_extra or {})
    return _launch("kvcore", argv, port, peer, data_dir, data_dir.rstrip("/") + ".log", env,
                   scheme, ctl_args)


def start_etcd(data_dir: str, binary: str = ETCD, name: str = "default", extra: tuple = (),
               scheme: str = "http", peer_scheme: str = "http",
               ctl_args: tuple = ()) -> Server:
    port, peer = free_port(), free_port()
    argv = [binary, *_member_argv(name, data_dir, port, peer, scheme, peer_scheme), *extra]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD_")}
    return _launch("etcd", argv, port, peer, data_dir, data_dir.rstrip("/") + ".log", env,
                   scheme, ctl_args)


@contextlib.contextmanager
def kvcore_and_etcd(base, kv_extra: tuple = (), etcd_extra: tuple = (), workers: int = 2,
                    etcd_binary: str = ETCD):
    """A kvcore and a real etcd side by side, for tests that compare the two."""
    kv = start_kvcore(os.path.join(str(base), "kv.etcd"), workers=workers, extra=kv_extra)
    try:
        et = start_etcd(os.path.join(str(base), "etcd.etcd"), binary=etcd_binary,
                        extra=etcd_extra)
    except BaseException:
        kv.stop()
        raise
    try:
        yield kv, et
    finally:
        kv.stop()
        et.stop()


def etcdctl(endpoint: str, *args, input: Optional[str] = None, timeout: float = 30.0):
    """-> (exit code, stdout, stderr without clientv3's JSON retry-log lines)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}
    env["ETCDCTL_API"] = "3"
    p = subprocess.run([ETCDCTL, "--endpoints", endpoint, "--command-timeout=10s", *args],
                       input=input, capture_output=True, text=True, timeout=timeout, env=env)
    err = "\n".join(l for l in p.stderr.splitlines() if not l.startswith('{"level"'))
    return p.returncode, p.stdout, err


def children(pid: int) -> list[int]:
    """Direct child processes of ``pid`` (from /proc)."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name may contain spaces; fields after ")" are fixed.
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(name))
    return out


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def start_cluster(base: str, n: int = 3, workers: int = 1, extra: tuple = (),
                  token: str = "kvcore-test", scheme: str = "http", peer_scheme: str = "http",
                  member_extra: Optional[dict] = None, ctl_args: tuple = (),
                  prepare=None, etcd_binary: Optional[str] = None,
                  member_env: Optional[dict] = None) -> list[Server]:
    """n kvcore members on free loopback ports, started together. ``extra`` goes to
    every member, ``member_extra[i]`` to member i only (after ``extra``, so it wins).
    ``prepare(name, data_dir, initial_cluster, peer_url, token)`` runs for each member
    before any starts (e.g. to restore its data dir from a snapshot).
    ``member_env[i]``: environment variables for member i only (e.g. failpoints). With
    ``etcd_binary``, n members of that real etcd instead (same flags, no --workers)."""
    os.makedirs(base, exist_ok=True)
    ports = [(free_port(), free_port()) for _ in range(n)]
    cluster = ",".join(f"m{i}={peer_scheme}://127.0.0.1:{p[1]}" for i, p in enumerate(ports))
    argvs = []
    for i, (cp, pp) in enumerate(ports):
        own = ["--workers", str(workers)] if etcd_binary is None else []
        argvs.append([*([etcd_binary] if etcd_binary else [sys.executable, "-m", "kvcore"]),
                      *_member_argv(f"m{i}", os.path.join(base, f"m{i}.etcd"), cp, pp,
                                    scheme, peer_scheme, cluster),
                      "--initial-cluster-token", token,
                      *own, *extra,
                      *(member_extra or {}).get(i, ())])
        if prepare is not None:
            prepare(f"m{i}", os.path.join(base, f"m{i}.etcd"), cluster,
                    f"{peer_scheme}://127.0.0.1:{pp}", token)
    procs = []
    for i, argv in enumerate(argvs):
        log_path = os.path.join(base, f"m{i}.log")
        logf = open(log_path, "a")
        env = None if etcd_binary is None else {
            k: v for k, v in os.environ.items() if not k.startswith("ETCD_")}
        if (member_env or {}).get(i):
            env = dict(env if env is not None else os.environ, **member_env[i])
        procs.append((subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, env=env,
                                       stdin=subprocess.DEVNULL, start_new_session=True),
                      log_path))
        logf.close()
    members = []
    for i, ((proc, log_path), (cp, pp)) in enumerate(zip(procs, ports)):
        srv = Server("etcd" if etcd_binary else "kvcore", proc, cp, pp,
                     os.path.join(base, f"m{i}.etcd"), argvs[i],
                     log_path, dict(os.environ), scheme, tuple(ctl_args))
        members.append(srv)
    try:
        for srv in members:
            wait_port(srv.port, srv.proc)
            if etcd_binary is None:
                _wait_ready(srv)
    except Exception:
        logs = "\n".join(s.log()[-2000:] for s in members)
        for s in members:
            s.stop()
        raise RuntimeError(f"cluster did not start:\n{logs}")
    return members


def endpoints(members) -> str:
    return ",".join(m.endpoint for m in members)


def member_change(member, *args, timeout: float = 30.0) -> tuple:
    """``etcdctl member <args>`` through ``member``, repeated while it is refused as
    "etcdserver: unhealthy cluster" (etcd's strict reconfiguration check wants every
    voter reachable for the last 5 s; an operator runs the change again) -> (exit
    code, stdout, stderr) of the last run."""
    deadline = time.monotonic() + timeout
    while True:
        rc, out, err = member.etcdctl("member", *args)
        if rc == 0 or "unhealthy cluster" not in err or time.monotonic() > deadline:
            return rc, out, err
        time.sleep(0.5)


def leader_of(members, timeout: float = 20.0):
    """The member that says it is the leader (waits for one, bounded)."""
    import json as _json
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for m in members:
            if m.proc.poll() is not None:
                continue
            rc, out, _ = m.etcdctl("endpoint", "status", "-w", "json", timeout=10)
            if rc == 0:
                st = _json.loads(out)[0]["Status"]
                if st.get("leader") and st["leader"] == st["header"]["member_id"]:
                    return m
        time.sleep(0.1)
    raise TimeoutError("no leader")


def on_both(base, scenario, n: int, extra: tuple, etcd_binary: str) -> dict:
    """``scenario(members)`` on n kvcore members, then on n members of the real etcd
    ``etcd_binary`` with the same flags: {"kvcore": outcome, "etcd": outcome}."""
    got = {}
    for kind, binary in (("kvcore", None), ("etcd", etcd_binary)):
        members = start_cluster(os.path.join(str(base), kind), n=n, etcd_binary=binary,
                                extra=extra)
        try:
            got[kind] = scenario(members)
        finally:
            for m in members:
                m.stop()
    return got


def wait_leaderless(port: int, timeout: float = 30.0) -> None:
    """Until the member on ``port`` reports no leader (v3 Status; etcd 3.4's v2
    stats/self is not kept up to date on a member that lost its quorum)."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        mt = rpc_pb2_grpc.MaintenanceStub(ch)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not mt.Status(rpc_pb2.StatusRequest(), timeout=5).leader:
                return
            time.sleep(0.05)
    raise AssertionError(f"the member on {port} kept a leader")


def start_joining_member(base: str, name: str, initial_cluster: str, token: str,
                         port: int, peer: int, workers: int = 1, scheme: str = "http",
                         peer_scheme: str = "http", extra: tuple = (),
                         ctl_args: tuple = ()) -> Server:
    """A member added with 'etcdctl member add', started with
    --initial-cluster-state existing (its data dir is <base>/<name>.etcd)."""
    data_dir = os.path.join(base, f"{name}.etcd")
    argv = [sys.executable, "-m", "kvcore",
            *_member_argv(name, data_dir, port, peer, scheme, peer_scheme, initial_cluster),
            "--initial-cluster-state", "existing",
            "--initial-cluster-token", token, "--workers", str(workers), *extra]
    return _launch("kvcore", argv, port, peer, data_dir, os.path.join(base, f"{name}.log"),
                   dict(os.environ), scheme, ctl_args)


ETCD351 = "/opt/etcd351/bin/etcd"


def start_etcd_cluster(base: str, n: int = 3, binary: str = ETCD351, extra: tuple = (),
                       member_extra: Optional[dict] = None) -> list[Server]:
    """n real etcd members on free loopback ports (the differential oracle of
    cluster scenarios); ``member_extra[i]`` goes to member i only."""
    os.makedirs(base, exist_ok=True)
    ports = [(free_port(), free_port()) for _ in range(n)]
    cluster = ",".join(f"e{i}=http://127.0.0.1:{p[1]}" for i, p in enumerate(ports))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD_")}
    members = []
    for i, (cp, pp) in enumerate(ports):
        data_dir = os.path.join(base, f"e{i}.etcd")
        argv = [binary, *_member_argv(f"e{i}", data_dir, cp, pp, "http", "http", cluster),
                "--initial-cluster-token", "etcd-oracle", *extra,
                *(member_extra or {}).get(i, ())]
        log_path = os.path.join(base, f"e{i}.log")
        logf = open(log_path, "a")
        proc = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, env=env,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        logf.close()
        members.append(Server("etcd", proc, cp, pp, data_dir, argv, log_path, env))
    try:
        for srv in members:
            wait_port(srv.port, srv.proc)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if etcdctl(endpoints(members), "endpoint", "health", timeout=15)[0] == 0:
                break
            time.sleep(0.2)
    except Exception:
        for s in members:
            s.stop()
        raise
    return members
