"""deploy/ assets run as shipped: the systemd unit's command with the sample config
(READY=1 through a fake $NOTIFY_SOCKET), the Kubernetes StatefulSet's command line
and environment for three members on loopback, and tools/cluster.py --base-port."""
from __future__ import annotations

import configparser
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import yaml

from tests import servers

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEPLOY = os.path.join(ROOT, "deploy")


def _python_command(cmd: list) -> list:
    """The shipped command, with this test's interpreter for 'python3'."""
    assert cmd[:3] in (["python3", "-m", "kvcore"], ["/usr/bin/python3", "-m", "kvcore"]), cmd
    return [sys.executable, *cmd[1:]]


def _popen(argv, log_path, env):
    with open(log_path, "a") as log:
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def _stop(procs):
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()


def _clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD_")}
    env.update(extra)
    return env


def test_systemd_unit_with_the_sample_config_notifies_readiness(tmp_path):
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(os.path.join(DEPLOY, "kvcore.service"))
    assert unit["Service"]["Type"] == "notify"
    cmd = shlex.split(unit["Service"]["ExecStart"])
    conf_at = cmd.index("--config-file") + 1
    # The sample config, with this test's ports and directory.
    cp, pp = servers.free_port(), servers.free_port()
    text = open(os.path.join(DEPLOY, "kvcore.conf.yml")).read()
    text = (text.replace("127.0.0.1:2379", f"127.0.0.1:{cp}")
            .replace("127.0.0.1:2380", f"127.0.0.1:{pp}")
            .replace("/var/lib/kvcore/infra1.etcd", str(tmp_path / "infra1.etcd"))
            .replace("workers: 0", "workers: 1"))
    conf = tmp_path / "kvcore.conf.yml"
    conf.write_text(text)
    cmd[conf_at] = str(conf)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.settimeout(60)
    proc = _popen(_python_command(cmd), tmp_path / "unit.log",
                  _clean_env(NOTIFY_SOCKET=str(tmp_path / "notify.sock"), PYTHONPATH=ROOT))
    try:
        msg = notify.recv(256)
        assert msg == b"READY=1"
        # READY comes once it serves: a write through the advertised URL works now.
        rc, _, err = servers.etcdctl(f"127.0.0.1:{cp}", "put", "k", "v")
        assert rc == 0, err
        rc, out, _ = servers.etcdctl(f"127.0.0.1:{cp}", "member", "list", "-w", "json")
        assert json.loads(out)["members"][0]["name"] == "infra1"
    finally:
        _stop([proc])
        notify.close()
    log = (tmp_path / "unit.log").read_text()
    assert '"msg":"loaded server configuration' in log
    assert '"msg":"notified systemd for readiness"' in log


def test_notify_socket_absent_means_no_notification():
    from kvcore.server import sdnotify
    assert sdnotify.notify("READY=1", env={}) is False


def _statefulset_container():
    docs = list(yaml.safe_load_all(open(os.path.join(DEPLOY, "kubernetes", "kvcore.yaml"))))
    svc = next(d for d in docs if d["kind"] == "Service")
    sts = next(d for d in docs if d["kind"] == "StatefulSet")
    assert svc["spec"]["clusterIP"] == "None"
    assert sts["spec"]["serviceName"] == svc["metadata"]["name"]
    return sts, sts["spec"]["template"]["spec"]["containers"][0]


def test_statefulset_command_line_starts_three_members_on_loopback(tmp_path):
    sts, c = _statefulset_container()
    replicas, svc = sts["spec"]["replicas"], sts["spec"]["serviceName"]
    assert replicas == 3
    ports = [(servers.free_port(), servers.free_port(), servers.free_port())
             for _ in range(replicas)]
    procs, members = [], []
    for i in range(replicas):
        pod = f"{sts['metadata']['name']}-{i}"
        fields = {"metadata.name": pod, "metadata.namespace": "default"}
        env = {}
        for e in c["env"]:
            env[e["name"]] = (e["value"] if "value" in e
                              else fields[e["valueFrom"]["fieldRef"]["fieldPath"]])

        def local(text: str) -> str:
            """Kubernetes' $(VAR) expansion, then pod DNS names and 0.0.0.0 listeners
            turned into this pod's loopback ports."""
            text = re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], text)
            for j, (cp, pp, mp) in enumerate(ports):
                host = f"{sts['metadata']['name']}-{j}.{svc}.default.svc.cluster.local"
                text = (text.replace(f"{host}:2379", f"127.0.0.1:{cp}")
                        .replace(f"{host}:2380", f"127.0.0.1:{pp}"))
            cp, pp, mp = ports[i]
            return (text.replace("0.0.0.0:2379", f"127.0.0.1:{cp}")
                    .replace("0.0.0.0:2380", f"127.0.0.1:{pp}")
                    .replace("0.0.0.0:2381", f"127.0.0.1:{mp}")
                    .replace("/var/lib/kvcore", str(tmp_path / pod)))
        argv = _python_command(c["command"]) + [local(a) for a in c["args"]]
        penv = _clean_env(PYTHONPATH=ROOT, **{k: v for k, v in env.items()
                                              if k.startswith("ETCD_")})
        penv["ETCD_WORKERS"] = "1"   # the shared test machine
        procs.append(_popen(argv, tmp_path / f"{pod}.log", penv))
        members.append((pod, ports[i][0]))
    try:
        for (pod, cp), proc in zip(members, procs):
            servers.wait_port(cp, proc, timeout=60)
        eps = ",".join(f"127.0.0.1:{cp}" for _, cp in members)
        deadline = time.monotonic() + 60
        rc, err = 1, ""
        while rc != 0 and time.monotonic() < deadline:
            rc, _, err = servers.etcdctl(eps, "put", "k8s", "yes")
            time.sleep(0.2 if rc else 0)
        assert rc == 0, err
        rc, out, _ = servers.etcdctl(f"127.0.0.1:{members[0][1]}", "member", "list",
                                     "-w", "json")
        assert sorted(m["name"] for m in json.loads(out)["members"]) == [p for p, _ in members]
        for pod, cp in members:
            assert _eventually_value(cp)
            for probe in (c["readinessProbe"], c["livenessProbe"]):
                path = probe["httpGet"]["path"]
                assert probe["httpGet"]["port"] == 2379
                with urllib.request.urlopen(f"http://127.0.0.1:{cp}{path}", timeout=10) as r:
                    assert r.status == 200
        # the ETCD_* environment of the manifest was honoured
        log = (tmp_path / "kvcore-0.log").read_text()
        start = next(json.loads(l) for l in log.splitlines()
                     if '"msg":"starting a kvcore server"' in l)
        assert start["initial-cluster-token"] == "kvcore-k8s"
        assert start["auto-compaction-retention"] == "1"
    finally:
        _stop(procs)


def _eventually_value(cp, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = servers.etcdctl(f"127.0.0.1:{cp}", "get", "k8s", "--consistency=s",
                              "--print-value-only")[1]
        if out.strip() == "yes":
            return True
        time.sleep(0.2)
    return False


def _free_run(n: int) -> int:
    """A base port with n free ports after it."""
    for _ in range(50):
        base = servers.free_port()
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket()
                s.bind(("127.0.0.1", p))
                socks.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no run of free ports")


def test_cluster_tool_base_port(tmp_path):
    base = _free_run(6)
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "tools", "cluster.py"),
                             "--base-port", str(base), "--base-dir", str(tmp_path / "c"),
                             "--workers", "1"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=_clean_env(
                                PYTHONPATH=ROOT), start_new_session=True)
    try:
        eps = ",".join(f"127.0.0.1:{base + 2 * i}" for i in range(3))
        deadline = time.monotonic() + 60
        rc, out = 1, ""
        while time.monotonic() < deadline:
            rc, out, _ = servers.etcdctl(eps, "endpoint", "status", "-w", "json")
            if rc == 0 and all(s["Status"].get("leader") for s in json.loads(out)):
                break
            time.sleep(0.3)
        status = json.loads(out)
        assert [s["Endpoint"] for s in status] == eps.split(",")
        rc, out, _ = servers.etcdctl(eps, "member", "list", "-w", "json")
        peers = sorted(u for m in json.loads(out)["members"] for u in m["peerURLs"])
        assert peers == [f"http://127.0.0.1:{base + 2 * i + 1}" for i in range(3)]
    finally:
        _stop([proc])
