"""Start and stop real servers (etcd, kvcore, trivial) on fresh data dirs and free ports."""
from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time

from kvcore.robust.cluster import free_port  # noqa: F401 (one picker for both tools)

from . import client, etcdapi

ETCD351 = "/opt/etcd351/bin/etcd"
DEBIAN_ETCD = "/usr/bin/etcd"


def rss_kib(pids) -> int:
    """Summed resident memory (VmRSS, KiB) of these processes; a gone one counts 0."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                total += next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
        except (OSError, StopIteration):
            pass
    return total


def memory_kib(pids) -> dict:
    """Summed /proc/<pid>/smaps_rollup figures (KiB) of these processes: Rss counts a
    page shared by several of them (the LMDB map a core and its workers read) once
    per process; Pss splits it between them, so its sum counts it once, as one
    process's Rss does; Anonymous is heap and stacks, not file pages."""
    total = {"rss": 0, "pss": 0, "anonymous": 0}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    name, _, rest = line.partition(":")
                    key = name.strip().lower()
                    if key in total:
                        total[key] += int(rest.split()[0])
        except (OSError, ValueError):
            pass
    return total


def default_etcd_bins() -> list[str]:
    bins = []
    if os.access(ETCD351, os.X_OK):
        bins.append(ETCD351)
    on_path = shutil.which("etcd")
    if on_path and os.path.realpath(on_path) not in [os.path.realpath(b) for b in bins]:
        bins.append(on_path)
    elif os.access(DEBIAN_ETCD, os.X_OK) and DEBIAN_ETCD not in bins:
        bins.append(DEBIAN_ETCD)
    return bins


def etcd_version(binary: str) -> str:
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
        for line in out.stdout.splitlines():
            if line.lower().startswith("etcd version"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    return "?"


class Server:
    """One single-member server process with its own temp data dir."""

    def __init__(self, name: str, argv_prefix: list[str], kind: str, extra: list[str] = (),
                 env: dict | None = None):
        self.name = name
        self.kind = kind
        self.argv_prefix = list(argv_prefix)
        self.extra = list(extra)
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.tmp = None
        self.port = self.peer_port = 0
        self.log_path = ""
        self.version = ""

    member = "m1"
    initial_cluster: str | None = None

    @property
    def endpoint(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    @property
    def endpoints(self) -> list[tuple[str, int]]:
        return [self.endpoint]

    def start(self):
        self.tmp = tempfile.mkdtemp(prefix=f"kvbench-{self.kind}-")
        if not self.port:
            self.port, self.peer_port = free_port(), free_port()
        peer = f"http://127.0.0.1:{self.peer_port}"
        cli = f"http://127.0.0.1:{self.port}"
        member = self.member
        argv = self.argv_prefix + [
            "--name", member, "--data-dir", os.path.join(self.tmp, "data"),
            "--listen-client-urls", cli, "--advertise-client-urls", cli,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", self.initial_cluster or f"{member}={peer}"] + self.extra
        if self.initial_cluster:
            argv += ["--initial-cluster-state", "new", "--initial-cluster-token", "kvbench"]
        self.log_path = os.path.join(self.tmp, "server.log")
        self.argv = argv
        env = dict(os.environ, **(self.env or {}))
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                         cwd=self.tmp, start_new_session=True)
        return self

    def wait_ready(self, timeout: float = 30.0) -> str | None:
        """None when it serves KV; otherwise why not."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return f"exited with code {self.proc.returncode}; log: {self.log_tail()}"
            try:
                etcdapi.run_sync(_probe(self.port), timeout=5)
                return None
            except (client.EndpointError, client.CallError, TimeoutError, OSError) as e:
                last = str(e)
            time.sleep(0.2)
        return f"not serving after {timeout:g}s ({last}); log: {self.log_tail()}"

    def log_tail(self, n: int = 400) -> str:
        try:
            with open(self.log_path, "rb") as f:
                data = f.read()[-n:]
            return data.decode("utf-8", "replace").strip().replace("\n", " | ")
        except OSError:
            return "(no log)"

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except OSError:
                self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except OSError:
                    self.proc.kill()
                self.proc.wait(5)
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None

    def pids(self) -> list[int]:
        """The server process and its descendants (kvcore runs workers)."""
        if self.proc is None:
            return []
        pids = [self.proc.pid]
        try:
            out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.proc.pid)],
                                 capture_output=True, text=True, timeout=5).stdout
            pids += [int(x) for x in out.split()]
        except (OSError, subprocess.TimeoutExpired, ValueError):
            pass
        return pids

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


async def _probe(port: int):
    async with etcdapi.Session("127.0.0.1", port, timeout=3) as s:
        await s.range(b"\x00probe", serializable=True)
        try:
            await s.range(b"\x00probe", serializable=False)
        except client.CallError:
            raise


class Cluster:
    """N members of one server kind on loopback (like etcd's Procfile), fresh dirs."""

    def __init__(self, make_member, n: int, name: str):
        self.members = [make_member() for _ in range(n)]
        self.name = name
        self.kind = self.members[0].kind
        self.version = self.members[0].version
        ports = [(free_port(), free_port()) for _ in range(n)]
        ic = ",".join(f"m{i + 1}=http://127.0.0.1:{pp}" for i, (_, pp) in enumerate(ports))
        for i, (m, (cp, pp)) in enumerate(zip(self.members, ports)):
            m.member = f"m{i + 1}"
            m.port, m.peer_port = cp, pp
            m.initial_cluster = ic

    @property
    def argv(self):
        return self.members[0].argv_prefix

    @property
    def endpoint(self):
        return self.members[0].endpoint

    @property
    def endpoints(self):
        return [m.endpoint for m in self.members]

    @property
    def port(self):
        return self.members[0].port

    def start(self):
        for m in self.members:
            m.start()
        return self

    def wait_ready(self, timeout: float = 30.0) -> str | None:
        for m in self.members:
            why = m.wait_ready(timeout)
            if why:
                return f"member {m.member}: {why}"
        return None

    def stop(self):
        for m in self.members:
            m.stop()

    def pids(self) -> list[int]:
        return [p for m in self.members for p in m.pids()]


def etcd_server(binary: str, name: str | None = None) -> Server:
    ver = etcd_version(binary)
    s = Server(name or f"etcd {ver}", [binary], "etcd",
               extra=["--log-level", "error"] if not ver.startswith("3.4") else
               ["--logger", "zap", "--log-level", "error"])
    s.version = ver
    return s


def kvcore_server(cmd: str, workers: int | None = None) -> Server:
    extra = ["--workers", str(workers)] if workers else []
    s = Server("kvcore", shlex.split(cmd), "kvcore", extra=extra)
    s.version = "kvcore (this tree)"
    return s
