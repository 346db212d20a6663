"""Real Patroni members (Debian's `patroni` and `postgresql`) on an etcd-v3 endpoint.

Each member is one `patroni` process with its own PostgreSQL data dir, REST API port
and Postgres port, all on 127.0.0.1. PostgreSQL refuses to run as root, so under root
the members run as the `postgres` user of Debian's package; their files then live in
a directory that user can reach (pytest's tmp_path sits under a root-only 0700 dir),
and the harness copies each member's log into the test's tmp_path when it closes.

What the tests read back is what users look at: the keys under /service/<scope>/
(through the real etcdctl), `patronictl list -f json`, and Patroni's own log.
"""
from __future__ import annotations

import base64
import glob
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from typing import Callable, Optional

import yaml

from bench.servers import free_port
from tests.servers import Server

PATRONI = "/usr/bin/patroni"
PATRONICTL = "/usr/bin/patronictl"


def pg_bin_dir() -> str:
    """The newest installed PostgreSQL's bin dir (Debian keeps each major apart)."""
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: int(d.split("/")[-2]))
    if not dirs or not os.path.exists(PATRONI):
        raise RuntimeError("Patroni and PostgreSQL are not installed (tools/setup.sh)")
    return dirs[-1]


def run_as() -> Optional[pwd.struct_passwd]:
    """The user Patroni and Postgres run as: `postgres` under root, else ourselves."""
    return pwd.getpwnam("postgres") if os.geteuid() == 0 else None


def wait_for(what: str, cond: Callable[[], object], timeout: float, step: float = 0.3):
    """Poll ``cond`` until it returns something true; its last value, or TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not after {timeout}s")
        time.sleep(step)


class Member:
    """One Patroni member: its config file, process, log and Postgres data dir."""

    def __init__(self, cluster: "PatroniCluster", name: str):
        self.cluster, self.name = cluster, name
        self.dir = os.path.join(cluster.base, name)
        os.makedirs(self.dir)
        user = run_as()
        if user is not None:
            os.chown(self.dir, user.pw_uid, user.pw_gid)
        os.chmod(self.dir, 0o700)
        self.rest_port, self.pg_port = free_port(), free_port()
        self.config_path = os.path.join(self.dir, "patroni.yml")
        self.log_path = os.path.join(self.dir, "patroni.log")
        self.data_dir = os.path.join(self.dir, "data")
        self.proc: Optional[subprocess.Popen] = None
        with open(self.config_path, "w") as f:
            yaml.safe_dump(self._config(), f)
        os.chmod(self.config_path, 0o644)

    def _config(self) -> dict:
        c = self.cluster
        etcd = {"hosts": c.hosts}
        if c.username:
            etcd.update(username=c.username, password=c.password)
        if c.tls:
            etcd["protocol"] = "https"
            user = run_as()
            for name, path in c.tls.items():
                etcd[name] = os.path.join(self.dir, os.path.basename(path))
                shutil.copy(path, etcd[name])
                if user is not None:
                    os.chown(etcd[name], user.pw_uid, user.pw_gid)
        return {
            "scope": c.scope, "name": self.name, "log": {"level": "DEBUG"},
            "restapi": {"listen": f"127.0.0.1:{self.rest_port}",
                        "connect_address": f"127.0.0.1:{self.rest_port}"},
            c.dcs: etcd,
            "bootstrap": {
                # Short timings so a failover fits a CI test (Patroni wants
                # ttl >= loop_wait + 2 * retry_timeout).
                "dcs": {"ttl": c.ttl, "loop_wait": max(1, c.ttl // 5),
                        "retry_timeout": max(2, c.ttl * 2 // 5),
                        "maximum_lag_on_failover": 1048576,
                        "postgresql": {"use_pg_rewind": False,
                                       "parameters": {"max_connections": 20,
                                                      "shared_buffers": "16MB",
                                                      "fsync": "off"}}},
                "initdb": [{"encoding": "UTF8"}],
                "pg_hba": ["local all all trust",
                           "host replication replicator 127.0.0.1/32 trust",
                           "host all all 127.0.0.1/32 trust"]},
            "postgresql": {
                "listen": f"127.0.0.1:{self.pg_port}",
                "connect_address": f"127.0.0.1:{self.pg_port}",
                "data_dir": self.data_dir, "bin_dir": pg_bin_dir(),
                "pgpass": os.path.join(self.dir, "pgpass"),
                "authentication": {"replication": {"username": "replicator", "password": "r"},
                                   "superuser": {"username": "postgres", "password": "p"}},
                "parameters": {"unix_socket_directories": self.dir}},
        }

    def start(self) -> "Member":
        user = run_as()
        env = {"PATH": "/usr/bin:/bin", "HOME": self.dir, "LANG": "C.UTF-8"}
        with open(self.log_path, "a") as log:
            self.proc = subprocess.Popen(
                [PATRONI, self.config_path], stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, env=env, cwd=self.dir, start_new_session=True,
                user=user.pw_uid if user else None, group=user.pw_gid if user else None)
        return self

    def log(self) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def rest(self, path: str = "/patroni") -> Optional[dict]:
        """Patroni's REST API answer (any status: a replica's / is 503), None if down."""
        url = f"http://127.0.0.1:{self.rest_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=3) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            return json.loads(e.read() or b"null")
        except (OSError, ValueError):
            return None

    def kill9(self) -> None:
        """kill -9 Patroni alone: its Postgres (in a session of its own) keeps running."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        """At the end of a test: kill -9 Patroni, then its Postgres by postmaster.pid
        (immediate shutdown, then SIGKILL): a clean stop would cost seconds."""
        self.kill9()
        pid = self.postmaster_pid()
        if pid:
            for sig in (signal.SIGQUIT, signal.SIGKILL):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    break
                try:
                    wait_for("postmaster exit", lambda: not os.path.exists(f"/proc/{pid}"), 10,
                             step=0.05)
                    break
                except TimeoutError:
                    continue

    def postmaster_pid(self) -> Optional[int]:
        try:
            with open(os.path.join(self.data_dir, "postmaster.pid")) as f:
                pid = int(f.readline())
        except (OSError, ValueError):
            return None
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                return pid if b"postgres" in f.read() else None
        except OSError:
            return None


class PatroniCluster:
    """Patroni members of one scope on one etcd-v3 server (kvcore or etcd)."""

    def __init__(self, server: Server, keep_dir: str, scope: str = "demo",
                 username: str = "", password: str = "", ctl_args: tuple = (),
                 dcs: str = "etcd3", ttl: int = 10, hosts: str = "",
                 tls: Optional[dict] = None):
        """``username``/``password`` go into Patroni's etcd3 section; ``ctl_args`` are
        the etcdctl flags the harness reads the keys with (--user on an auth server);
        ``dcs`` "etcd" is Patroni's v2 DCS (the server then needs --enable-v2); ``ttl``
        the leader lease's (loop_wait and retry_timeout follow from it); ``hosts``
        Patroni's etcd hosts (default: the server's client URL); ``tls`` the etcd
        section's TLS settings ({"cacert": path, "cert": path, "key": path}: the
        files are copied where Patroni's user can read them; protocol https)."""
        self.server, self.keep_dir, self.scope, self.dcs = server, keep_dir, scope, dcs
        self.ttl, self.tls = ttl, tls or {}
        self.username, self.password, self.ctl_args = username, password, ctl_args
        self.hosts = hosts or f"127.0.0.1:{server.port}"
        self.base = tempfile.mkdtemp(prefix=f"patroni-{server.kind}-")
        os.chmod(self.base, 0o755)
        self.members: dict[str, Member] = {}

    def add(self, name: str) -> Member:
        self.members[name] = Member(self, name).start()
        return self.members[name]

    def close(self) -> None:
        for m in self.members.values():
            m.stop()
        os.makedirs(self.keep_dir, exist_ok=True)
        for m in self.members.values():
            if os.path.exists(m.log_path):
                shutil.copy(m.log_path, os.path.join(self.keep_dir, f"{m.name}.log"))
        shutil.rmtree(self.base, ignore_errors=True)

    # -- what users look at ------------------------------------------------------

    def keys(self) -> dict[str, dict]:
        """key (below /service/<scope>/) -> {"value": str, "lease": bool, "lease_id":
        int}, by etcdctl."""
        prefix = f"/service/{self.scope}/"
        rc, out, err = self.server.etcdctl(*self.ctl_args, "get", "--prefix", prefix, "-w", "json")
        assert rc == 0, err
        kvs = json.loads(out).get("kvs", [])
        return {base64.b64decode(kv["key"]).decode()[len(prefix):]:
                {"value": base64.b64decode(kv.get("value", "")).decode(),
                 "lease": bool(kv.get("lease")), "lease_id": kv.get("lease", 0)}
                for kv in kvs}

    def leader_key(self) -> Optional[str]:
        return self.keys().get("leader", {}).get("value")

    def patronictl(self, *args: str, member: Optional[Member] = None,
                   timeout: float = 60) -> subprocess.CompletedProcess:
        m = member or next(iter(self.members.values()))
        env = {"PATH": "/usr/bin:/bin", "HOME": m.dir, "LANG": "C.UTF-8"}
        return subprocess.run([PATRONICTL, "-c", m.config_path, *args], capture_output=True,
                              text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL)

    def list(self) -> list[dict]:
        p = self.patronictl("list", "-f", "json")
        assert p.returncode == 0, p.stderr
        return json.loads(p.stdout)

    def wait_leader(self, name: str, timeout: float = 120) -> list[dict]:
        """Until `patronictl list` shows ``name`` as the running Leader and the leader
        key names it; the list then."""
        def ok():
            if self.leader_key() != name:
                return None
            rows = self.list()
            return rows if any(r["Member"] == name and r["Role"] == "Leader"
                               and r["State"] == "running" for r in rows) else None
        return wait_for(f"{name} leads {self.server.kind}", ok, timeout)

    def wait_replica(self, name: str, timeout: float = 60) -> list[dict]:
        """Until `patronictl list` shows ``name`` as a running replica on the
        leader's timeline (a demoted leader shows its old one for a loop or two)."""
        def ok():
            rows = self.list()
            tl = {r.get("TL") for r in rows if r["Role"] == "Leader"}
            return rows if any(r["Member"] == name and r["Role"] == "Replica"
                               and r["State"] in ("running", "streaming")
                               and r.get("TL") in tl for r in rows) else None
        return wait_for(f"{name} replicates on {self.server.kind}", ok, timeout)


# -- comparing two clusters ----------------------------------------------------------

def shape(keys: dict[str, dict]) -> dict[str, object]:
    """What must be equal between etcd and kvcore: each key's name, whether it carries
    a lease, and its value's JSON structure (field names and value types; plain
    values by type, the leader key by value: it names a member)."""
    def struct(v):
        if isinstance(v, dict):
            return {k: struct(x) for k, x in sorted(v.items())}
        if isinstance(v, list):
            return [struct(x) for x in v[:1]]
        return type(v).__name__

    out = {}
    for name, kv in sorted(keys.items()):
        try:
            value = json.loads(kv["value"])
        except ValueError:
            value = kv["value"]
        out[name] = {"lease": kv["lease"],
                     "value": value if name == "leader" else struct(value)}
    return out


# Patroni log lines about its DCS that say something went wrong with etcd.
DCS_TROUBLE = re.compile(
    r"watchprefix failed|KVCache\.run|refresh_lease|Failed to keepalive|not chunked|"
    r"Etcd is not responding|Invalid auth token|not owner of the lease|"
    r"lease disappeared|Traceback|Failed to get list of machines|Retrying|"
    r"Etcd3Error|Etcd3ClientError|Unknown|EtcdException|ProtocolError")


# ... and lines about other members' REST APIs: whether a member probes one that was
# just killed is a matter of timing, not of the DCS.
PEER_REST = re.compile(r"Request failed to \S+: GET http")


def dcs_trouble(log: str) -> list[str]:
    """Patroni's WARNING/ERROR lines and any DCS-trouble line, timestamps, numbers and
    object addresses blanked so two runs compare."""
    out = []
    for line in log.splitlines():
        msg = re.sub(r"^\d{4}-\d\d-\d\d [\d:,]+ ", "", line)
        if PEER_REST.search(msg):
            continue
        if msg.startswith(("WARNING:", "ERROR:", "CRITICAL:")) or DCS_TROUBLE.search(msg):
            out.append(re.sub(r"\d+", "N", re.sub(r"0x[0-9a-f]+", "ADDR", msg)))
    return sorted(set(out))


# -- vip-manager (Debian's 1.0.2: the Go etcd client's v2 keys API) ------------------

VIP_MANAGER = "/usr/bin/vip-manager"


def vip_interface() -> str:
    """A non-loopback interface (vip-manager refuses lo: no hardware address)."""
    for name in sorted(os.listdir("/sys/class/net")):
        with open(f"/sys/class/net/{name}/address") as f:
            if f.read().strip() not in ("", "00:00:00:00:00:00"):
                return name
    raise RuntimeError("no interface with a hardware address for vip-manager")


def start_vip_manager(server: Server, log_path: str, trigger_value: str,
                      scope: str = "demo") -> subprocess.Popen:
    """vip-manager on Patroni's leader key, unprivileged (`nobody` under root): it
    reads and decides as it would in production, but cannot touch the host's network
    (its first step towards the VIP, an ARP socket, is refused and it exits)."""
    if not os.path.exists(VIP_MANAGER):
        raise RuntimeError("vip-manager is not installed (tools/setup.sh)")
    nobody = pwd.getpwnam("nobody") if os.geteuid() == 0 else None
    with open(log_path, "w") as log:
        return subprocess.Popen(
            [VIP_MANAGER, "--ip", "10.255.254.253", "--netmask", "32",
             "--interface", vip_interface(), "--trigger-key", f"/service/{scope}/leader",
             "--trigger-value", trigger_value, "--dcs-type", "etcd",
             "--dcs-endpoints", f"http://127.0.0.1:{server.port}", "--interval", "300"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={"PATH": "/usr/bin:/bin"}, start_new_session=True,
            user=nobody.pw_uid if nobody else None, group=nobody.pw_gid if nobody else None)


def vip_decisions(log: str) -> list[str]:
    """vip-manager's log after its config dump, timestamps, the etcd index and the
    interface blanked, repeats of a line collapsed: what it saw and decided."""
    out: list[str] = []
    for line in log.split("version : ", 1)[-1].splitlines()[1:]:
        line = re.sub(r"^\d{4}/\d\d/\d\d [\d:]+ ", "", line)
        line = re.sub(r"\[\d+\]$", "[INDEX]", line)
        line = re.sub(r"listen packet [0-9a-f:]+", "listen packet MAC", line)
        if line and (not out or out[-1] != line):
            out.append(line)
    return out
