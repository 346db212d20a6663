"""Patroni (Debian's package, its `etcd3` DCS over the v3 JSON gateway) keeps a
PostgreSQL cluster's leader key on kvcore exactly as on the official etcd 3.5.1.

Each test runs the same scenario against a kvcore member and an etcd 3.5.1 side by side
(concurrently: Patroni's loop is mostly waiting) and compares what users see: the keys
under /service/<scope>/ (names, leases, JSON field names), `patronictl list`, who holds
the leader key after a switchover or a kill -9, and Patroni's own warnings and errors.
"""
from __future__ import annotations

import os
import re
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

import pytest
import yaml

from tests import etcd351, servers
from tests.tlscerts import make_pki
from tests.clients.patroni_harness import (PATRONICTL, PatroniCluster, dcs_trouble, shape,
                                            start_vip_manager, vip_decisions, wait_for)

BACKENDS = ("kvcore", "etcd")


def start_backends(base, extra: tuple = (), scheme: str = "http", ctl_args: tuple = (),
                   cafile: Optional[str] = None) -> dict:
    """kvcore (two workers, as a 2-CPU host runs it) and etcd 3.5.1, fresh, with the
    same flags; once each has decided its cluster version: etcd answers /version with
    etcdcluster "not_decided" for a moment after it listens, which Patroni refuses
    ("Failed to get list of machines": ValueError) and then waits 5 s."""
    kw = dict(extra=extra, scheme=scheme, ctl_args=ctl_args)
    kv = servers.start_kvcore(str(base / "kv.etcd"), workers=2, **kw)
    try:
        et = servers.start_etcd(str(base / "etcd.etcd"), binary=etcd351.ETCD, **kw)
    except BaseException:
        kv.stop()
        raise
    for s in (kv, et):
        servers.wait_cluster_version(s, cafile)
    return {"kvcore": kv, "etcd": et}


@pytest.fixture
def backends(tmp_path):
    bk = start_backends(tmp_path)
    yield bk
    for s in bk.values():
        s.stop()


@pytest.fixture
def clusters(tmp_path):
    """make(backends, **kw): one (empty) Patroni cluster per backend."""
    made = []

    def make(backends: dict, **kw) -> dict[str, PatroniCluster]:
        out = {k: PatroniCluster(s, str(tmp_path / f"patroni-{k}"), **kw)
               for k, s in backends.items()}
        made.extend(out.values())
        return out
    yield make
    with ThreadPoolExecutor(max(1, len(made))) as ex:
        list(ex.map(PatroniCluster.close, made))


def both(fn, clusters: dict):
    """fn(cluster) on each backend at once -> {backend: result}."""
    with ThreadPoolExecutor(len(clusters)) as ex:
        futs = {k: ex.submit(fn, c) for k, c in clusters.items()}
        return {k: f.result() for k, f in futs.items()}


def rows_shape(rows: list[dict]) -> list[dict]:
    """`patronictl list -f json` without what differs between runs (ports, lag)."""
    return sorted(({k: (re.sub(r":\d+$", ":PORT", v) if k == "Host" else v)
                    for k, v in r.items() if k != "Lag in MB"} for r in rows),
                  key=lambda r: r["Member"])


def bootstrapped(c: PatroniCluster, name: str = "pg0") -> dict:
    """Start ``name``, wait until it leads with every key written; its keys then."""
    c.add(name)
    c.wait_leader(name)

    def settled():
        keys = c.keys()
        member = keys.get(f"members/{name}", {}).get("value", "")
        return keys if ("status" in keys and '"role":"master"' in member
                        and '"state":"running"' in member) else None
    return wait_for("bootstrap keys", settled, 30)


def assert_no_new_trouble(clusters: dict):
    """Every WARNING/ERROR line (and DCS-trouble line) of Patroni on kvcore also
    appears on etcd: nothing kvcore-specific went wrong."""
    trouble = {k: set().union(*(dcs_trouble(m.log()) for m in c.members.values()))
               for k, c in clusters.items()}
    assert trouble["kvcore"] - trouble["etcd"] == set(), trouble


def test_bootstrap_keys_and_leader_expiry(backends, clusters):
    """One member bootstraps a cluster: same keys, fields and `patronictl list`;
    kill -9 of Patroni lets its leader and member keys expire with the lease (ttl 5)."""
    cs = clusters(backends, ttl=5)
    keys = both(bootstrapped, cs)
    assert set(keys["kvcore"]) >= {"leader", "members/pg0", "initialize", "config", "status"}
    assert shape(keys["kvcore"]) == shape(keys["etcd"])
    rows = both(lambda c: rows_shape(c.list()), cs)
    assert rows["kvcore"] == rows["etcd"]
    assert rows["kvcore"][0]["Role"] == "Leader" and rows["kvcore"][0]["State"] == "running"
    # The table users read, too (the JSON above is the same data).
    table = cs["kvcore"].patronictl("list")
    assert table.returncode == 0 and re.search(r"\| pg0 .*\| Leader \| running \|", table.stdout)
    # Patroni's REST API says the same as the DCS.
    assert cs["kvcore"].members["pg0"].rest()["role"] == cs["etcd"].members["pg0"].rest()["role"]

    def expire(c: PatroniCluster):
        c.members["pg0"].kill9()
        return wait_for("leader key expiry",
                        lambda: (lambda k: sorted(k) if "leader" not in k else None)(c.keys()),
                        40)
    left = both(expire, cs)
    assert left["kvcore"] == left["etcd"] == ["config", "initialize", "status"]
    assert_no_new_trouble(cs)


@pytest.mark.slow
def test_replica_switchover_and_failover(backends, clusters):
    """A second member streams from the leader; `patronictl switchover` moves the
    leader to it; kill -9 of the new leader's Patroni hands the key back after the
    TTL: the same members, roles and timelines on both."""
    cs = clusters(backends)
    both(bootstrapped, cs)

    def replica(c: PatroniCluster):
        c.add("pg1")
        return rows_shape(c.wait_replica("pg1", 90))
    rows = both(replica, cs)
    assert rows["kvcore"] == rows["etcd"]

    def switchover(c: PatroniCluster):
        p = c.patronictl("switchover", "--leader", "pg0", "--candidate", "pg1", "--force")
        assert p.returncode == 0, p.stdout + p.stderr
        c.wait_leader("pg1", 60)
        return rows_shape(c.wait_replica("pg0", 90)), shape(c.keys())
    after = both(switchover, cs)
    assert after["kvcore"] == after["etcd"]
    assert "history" in after["kvcore"][1]     # the timeline switch is recorded

    def failover(c: PatroniCluster):
        c.members["pg1"].kill9()
        c.wait_leader("pg0", 60)
        return sorted(c.keys())
    left = both(failover, cs)
    assert left["kvcore"] == left["etcd"]
    assert "members/pg1" not in left["kvcore"]    # its lease expired with it
    assert_no_new_trouble(cs)


ROOT_PW, PATRONI_PW = "rootpw", "patronipw"


def enable_auth(s: servers.Server) -> None:
    """root, and a `patroni` user whose role may read and write /service/ only."""
    for args in (("user", "add", f"root:{ROOT_PW}"),
                 ("user", "add", f"patroni:{PATRONI_PW}"),
                 ("role", "add", "patroni"),
                 ("role", "grant-permission", "patroni", "readwrite", "/service/", "--prefix"),
                 ("user", "grant-role", "patroni", "patroni"),
                 ("auth", "enable")):
        rc, out, err = s.etcdctl(*args)
        assert rc == 0, (args, out, err)


@pytest.fixture
def tls_backends(tmp_path):
    pki = make_pki(str(tmp_path / "pki"))
    bk = start_backends(tmp_path, ("--cert-file", pki.server_cert, "--key-file",
                                   pki.server_key), "https", ("--cacert", pki.ca), pki.ca)
    yield bk, pki
    for s in bk.values():
        s.stop()


def test_bootstrap_with_etcd_authentication(tls_backends, clusters):
    """Patroni with `username`/`password` and a CA in its etcd3 section (protocol
    https) bootstraps on a TLS server with auth enabled (its user may touch /service/
    only), as on etcd; patronictl without the credentials is refused the same way."""
    backends, pki = tls_backends
    for s in backends.values():
        enable_auth(s)
    cs = clusters(backends, username="patroni", password=PATRONI_PW,
                  ctl_args=("--user", f"root:{ROOT_PW}"), tls={"cacert": pki.ca})
    keys = both(bootstrapped, cs)
    assert shape(keys["kvcore"]) == shape(keys["etcd"])
    logs = {k: c.members["pg0"].log() for k, c in cs.items()}
    for k, log in logs.items():
        assert "Trying to authenticate on Etcd" in log, k
        assert f'https://127.0.0.1:{backends[k].port} "POST /v3/kv/put' in log, k
        assert "Etcd authentication is not enabled" not in log, k

    def anonymous_list(c: PatroniCluster):
        m = c.members["pg0"]
        with open(m.config_path) as f:
            cfg = yaml.safe_load(f)
        del cfg["etcd3"]["username"], cfg["etcd3"]["password"]
        anon = os.path.join(m.dir, "anonymous.yml")
        with open(anon, "w") as f:
            yaml.safe_dump(cfg, f)
        p = subprocess.run([PATRONICTL, "-c", anon, "list", "-f", "json"], text=True,
                           capture_output=True, timeout=60, stdin=subprocess.DEVNULL,
                           env={"PATH": "/usr/bin:/bin", "HOME": m.dir, "LANG": "C.UTF-8"})
        # Its log and exception lines, less timestamps: what refused it and why.
        said = [re.sub(r"^[\d-]+ [\d:,]+ - ", "", l) for l in p.stderr.splitlines()
                if l.startswith("patroni.") or " - CRITICAL - " in l or " - ERROR - " in l]
        return p.returncode, p.stdout, said
    anon = both(anonymous_list, cs)
    assert anon["kvcore"] == anon["etcd"]
    assert "patroni.dcs.etcd3.UserEmpty: <UserEmpty error: 'etcdserver: user name is empty'," \
        " code: 3>" in anon["kvcore"][2]
    assert anon["kvcore"][0] != 0
    assert_no_new_trouble(cs)


@pytest.fixture
def v2_backends(tmp_path):
    """kvcore and etcd 3.5.1 with --enable-v2 (vip-manager 1.0.2 reads v2 keys)."""
    bk = start_backends(tmp_path, ("--enable-v2",))
    yield bk
    for s in bk.values():
        s.stop()


def test_vip_manager_follows_the_leader_key(v2_backends, tmp_path):
    """Debian's vip-manager (1.0.2, the Go client's v2 keys API, so Patroni runs its
    v2 `etcd` DCS here) sees no leader key, then Patroni's pg0 taking it, and decides
    to hold the VIP, as on etcd; unprivileged, it then stops at its ARP socket."""
    cs = {k: PatroniCluster(s, str(tmp_path / f"patroni-{k}"), dcs="etcd")
          for k, s in v2_backends.items()}
    vips = {k: start_vip_manager(s, str(tmp_path / f"vip-{k}.log"), "pg0")
            for k, s in v2_backends.items()}
    try:
        def run(k):
            vlog = str(tmp_path / f"vip-{k}.log")
            wait_for("vip-manager polls", lambda: "Key not found" in open(vlog).read(), 30)
            cs[k].add("pg0")
            wait_for("vip-manager decides", lambda: vips[k].poll() is not None, 60)
            # Which of /service, /service/demo and the leader key the polls before
            # Patroni's leader key find missing is a matter of timing (the wait above
            # saw at least one such poll).
            return [line for line in vip_decisions(open(vlog).read())
                    if "Key not found (/service" not in line]
        seen = both(run, {k: k for k in cs})
    finally:
        for p in vips.values():
            if p.poll() is None:
                p.kill()
                p.wait(5)
        with ThreadPoolExecutor(2) as ex:
            list(ex.map(PatroniCluster.close, cs.values()))
    assert seen["kvcore"] == seen["etcd"]
    assert "etcd error: 100: Key not found (/service" in open(tmp_path / "vip-kvcore.log").read()
    assert "IP address 10.255.254.253/32 state is false, desired true" in seen["kvcore"]


@pytest.mark.slow
def test_three_members_keep_the_leader_key(tmp_path):
    """Patroni on a three-member cluster (all three in its `hosts`), its etcd member
    killed: it moves to another and keeps its leader key and lease, as on etcd
    (kvcore used to lose the lease TTL after the grant when Patroni's keep-alives
    reached a follower: tests/integration/cluster/test_lease_followers.py)."""
    clusters_ = {}
    try:
        for kind in BACKENDS:
            ms = servers.start_cluster(str(tmp_path / kind), n=3, workers=1,
                                       etcd_binary=etcd351.ETCD if kind == "etcd" else None)
            clusters_[kind] = (ms, PatroniCluster(
                ms[0], str(tmp_path / f"patroni-{kind}"),
                hosts=",".join(f"127.0.0.1:{m.port}" for m in ms)))
        cs = {k: c for k, (ms, c) in clusters_.items()}
        both(bootstrapped, cs)

        def lose_a_member(c: PatroniCluster):
            ms = clusters_[c.server.kind][0]
            used = re.findall(r"Selected new etcd server http://127.0.0.1:(\d+)",
                              c.members["pg0"].log())[-1]
            gone = next(m for m in ms if str(m.port) == used)
            lease = c.keys()["leader"]["lease_id"]
            gone.kill9()
            c.server = next(m for m in ms if m is not gone)
            # Three TTLs: the lease would have run out twice over.
            time.sleep(3 * c.ttl)
            log = c.members["pg0"].log()
            leader = c.keys().get("leader", {})
            return (leader.get("value"), leader.get("lease_id") == lease,
                    "lease disappeared" in log, "not owner of the lease" in log)
        after = both(lose_a_member, cs)
        assert after["kvcore"] == after["etcd"] == ("pg0", True, False, False)
    finally:
        for ms, c in clusters_.values():
            c.close()
            for m in ms:
                m.stop()
