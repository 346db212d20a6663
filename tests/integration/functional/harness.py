"""etcd's own functional tester (etcd-agent, etcd-tester, etcd-runner from etcd 3.4.23's
go.etcd.io/etcd/functional, built by build.sh) driving a 3-member cluster on loopback.

One etcd-agent per member starts the server process with etcd's flags (kvcore through
a small launcher script, or the real etcd binary) and puts its own TCP proxy in front
of the peer port: the members advertise the proxy's port, so the agent can blackhole or
delay peer traffic. The tester sends the agents the faults of each case, runs its
stressers against the client ports meanwhile, and checks hashkv across the members and
lease expiry after each case. With exit-on-failure it exits 2 at the first failed case,
else 0 after the round.
"""
from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

from tests import servers

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))

# What the stressers send: the key stresser's mix as etcd's own functional.yaml has it,
# plus leases (10 leases of 10 keys per member, checked by LEASE_EXPIRE).
KEY_AND_LEASE_STRESSERS = (
    ("KV_WRITE_SMALL", 0.35), ("KV_WRITE_LARGE", 0.002), ("KV_READ_ONE_KEY", 0.07),
    ("KV_READ_RANGE", 0.07), ("KV_DELETE_ONE_KEY", 0.07), ("KV_DELETE_RANGE", 0.07),
    ("KV_TXN_WRITE_DELETE", 0.35), ("LEASE", 0.0))


def build() -> str:
    """-> the directory holding etcd-agent, etcd-tester and etcd-runner."""
    p = subprocess.run([os.path.join(HERE, "build.sh")], capture_output=True, text=True,
                       timeout=900)
    assert p.returncode == 0, f"building etcd's functional tester failed:\n{p.stderr[-3000:]}"
    return p.stdout.strip()


def kvcore_launcher(path: str) -> str:
    """Writes an executable that runs this tree's kvcore with the flags it is given.
    The agent starts the member with no environment but GOFAIL_HTTP, so the launcher
    carries the interpreter, the import path and the KVCORE_* settings of this run."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": REPO}
    env.update({k: v for k, v in os.environ.items() if k.startswith("KVCORE_")})
    exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in sorted(env.items()))
    with open(path, "w") as f:
        f.write(f"#!/bin/sh\n{exports}exec {shlex.quote(sys.executable)} -m kvcore \"$@\"\n")
    os.chmod(path, 0o755)
    return path


@dataclass
class Run:
    rc: int                  # the tester's exit code (None: killed at the time limit)
    log: str                 # the tester's log (JSON lines)
    passed: list = field(default_factory=list)   # the cases whose consistency check passed
    base: str = ""

    def member_logs(self) -> str:
        out = []
        for i in range(3):
            for name in (f"m{i}/etcd.log", f"m{i}.backup/etcd.log", f"agent{i}.log"):
                p = os.path.join(self.base, name)
                if os.path.exists(p):
                    with open(p, errors="replace") as f:
                        out.append(f"---- {name} ----\n{f.read()[-2500:]}")
        return "\n".join(out)

    def failures(self) -> list[str]:
        """The tester's lines that say why a case or the round failed."""
        out = []
        for line in self.log.splitlines():
            try:
                msg = json.loads(line).get("msg", "")
            except ValueError:
                continue
            if msg in FAILURE_MESSAGES:
                out.append(line)
        return out


# The tester's messages for a failed case, round, compaction or start.
FAILURE_MESSAGES = {"round FAIL", "compact FAIL", "check compact FAIL", "expected no errors",
                    "cleanup FAIL", "restart FAIL", "functional-tester FAIL",
                    "Bootstrap failed", "WaitHealth failed", "failed to create a cluster"}


def config(base: str, exec_path: str, runner: str, cases, stressers=KEY_AND_LEASE_STRESSERS,
           checkers=("KV_HASH", "LEASE_EXPIRE"), snapshot_count: int = 1000,
           case_delay_ms: int = 2000, stress_qps: int = 400, stress_clients: int = 10,
           delay_latency_ms: int = 1500, delay_latency_rv_ms: int = 200) -> dict:
    """The tester's configuration (its YAML as JSON, which YAML reads): 3 members on
    free loopback ports, each behind a peer proxy, etcd's own member settings
    (heartbeat 100 ms, election 1 s, pre-vote, initial corruption check, zap logging
    to the member's base dir). Round limit 1, exit at the first failed case."""
    ports = [dict(agent=servers.free_port(), client=servers.free_port(),
                  peer=servers.free_port(), proxy=servers.free_port(),
                  failpoint=servers.free_port()) for _ in range(3)]
    cluster = ",".join(f"s{i}=http://127.0.0.1:{p['proxy']}" for i, p in enumerate(ports))
    members = []
    for i, p in enumerate(ports):
        mbase = os.path.join(base, f"m{i}")
        members.append({
            "etcd-exec": exec_path,
            "agent-addr": f"127.0.0.1:{p['agent']}",
            "failpoint-http-addr": f"http://127.0.0.1:{p['failpoint']}",
            "base-dir": mbase,
            "etcd-client-proxy": False,
            "etcd-peer-proxy": True,
            "etcd-client-endpoint": f"127.0.0.1:{p['client']}",
            "snapshot-path": os.path.join(base, f"m{i}.snapshot.db"),
            "etcd": {
                "name": f"s{i}",
                "data-dir": os.path.join(mbase, "etcd.data"),
                "wal-dir": os.path.join(mbase, "etcd.data", "member", "wal"),
                "heartbeat-interval": 100,
                "election-timeout": 1000,
                "listen-client-urls": [f"http://127.0.0.1:{p['client']}"],
                "advertise-client-urls": [f"http://127.0.0.1:{p['client']}"],
                "auto-tls": False,
                "client-cert-auth": False,
                "listen-peer-urls": [f"http://127.0.0.1:{p['peer']}"],
                "initial-advertise-peer-urls": [f"http://127.0.0.1:{p['proxy']}"],
                "peer-auto-tls": False,
                "peer-client-cert-auth": False,
                "initial-cluster": cluster,
                "initial-cluster-state": "new",
                "initial-cluster-token": "functional",
                "snapshot-count": snapshot_count,
                "quota-backend-bytes": 10740000000,
                "pre-vote": True,
                "initial-corrupt-check": True,
                "logger": "zap",
                "log-outputs": [os.path.join(mbase, "etcd.log")],
                "log-level": "info",
            },
        })
    return {
        "agent-configs": members,
        "tester-config": {
            "data-dir": os.path.join(base, "tester"),
            "network": "tcp",
            "addr": f"127.0.0.1:{servers.free_port()}",
            "delay-latency-ms": delay_latency_ms,
            "delay-latency-ms-rv": delay_latency_rv_ms,
            "updated-delay-latency-ms": delay_latency_ms,
            "round-limit": 1,
            "exit-on-failure": True,
            "enable-pprof": False,
            "case-delay-ms": case_delay_ms,
            "case-shuffle": False,
            "cases": list(cases),
            "failpoint-commands": [],
            "runner-exec-path": os.path.join(runner, "etcd-runner"),
            "external-exec-path": "",
            "stressers": [{"type": t, "weight": w} for t, w in stressers],
            "checkers": list(checkers),
            "stress-key-size": 100,
            "stress-key-size-large": 32769,
            "stress-key-suffix-range": 250000,
            "stress-key-suffix-range-txn": 100,
            "stress-key-txn-ops": 10,
            "stress-clients": stress_clients,
            "stress-qps": stress_qps,
        },
    }


def run(bins: str, base: str, exec_path: str, cases, timeout: float = 300, **kw) -> Run:
    """Starts the 3 agents, runs the tester to its end (or kills it at ``timeout``),
    then ends the agents and whatever member processes they left."""
    os.makedirs(base, exist_ok=True)
    cfg = config(base, exec_path, bins, cases, **kw)
    cfg_path = os.path.join(base, "functional.yaml")
    with open(cfg_path, "w") as f:
        json.dump(cfg, f, indent=1)
    agents = []
    try:
        for i, m in enumerate(cfg["agent-configs"]):
            with open(os.path.join(base, f"agent{i}.log"), "w") as logf:
                agents.append(subprocess.Popen(
                    [os.path.join(bins, "etcd-agent"), "--network", "tcp",
                     "--address", m["agent-addr"]],
                    stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    cwd=base, start_new_session=True))
        for a, m in zip(agents, cfg["agent-configs"]):
            servers.wait_port(int(m["agent-addr"].rsplit(":", 1)[1]), a)
        tester_log = os.path.join(base, "tester.log")
        with open(tester_log, "w") as logf:
            tester = subprocess.Popen(
                [os.path.join(bins, "etcd-tester"), "--config", cfg_path],
                stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=base,
                start_new_session=True)
            try:
                rc = tester.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                rc = None
            finally:
                # The tester leaves its etcd-runner stressers running when it exits
                # (and hangs closing ones it paused, after a failed case); they are in
                # its process group.
                _kill_group(tester.pid)
                tester.wait()
        with open(tester_log, errors="replace") as f:
            log = f.read()
    finally:
        _end_agents(agents)
    passed = []
    for line in log.splitlines():
        if '"consistency check PASS"' in line:
            try:
                passed.append(json.loads(line)["desc"])
            except ValueError:
                pass
    return Run(rc, log, passed, base)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _end_agents(agents) -> None:
    """Each agent runs in a session of its own, and the members it started (and their
    worker processes) in its process group: one signal to the group ends them all."""
    for a in agents:
        _kill_group(a.pid)
    for a in agents:
        a.wait()
    # the members were the agents' children, reparented on the agents' death: give the
    # kernel a moment to reap them before a next run takes ports
    time.sleep(0.2)
