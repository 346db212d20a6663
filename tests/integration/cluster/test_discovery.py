"""Bootstrapping by discovery (kvcore/discovery/): three members started with only
--discovery <token URL> (token size 3) or --discovery-srv <domain> form one cluster,
a fourth is turned away with etcd's "cluster is full" handling (or, with SRV, is not
in the records), a restarted member ignores discovery; each scenario is run with
kvcore members and with real etcd 3.5.1 members and their outcomes compared.

Discovery services: real etcd 3.4.23 --enable-v2 and kvcore --enable-v2. DNS: the
test's own server (tests/dnsserver.py); etcd 3.5.1 reaches it from a private mount
namespace whose /etc/resolv.conf names it."""
from __future__ import annotations

import json
import re
import time
import urllib.request

import pytest

from tests import discovery_members as dm
from tests import servers
from tests.dnsserver import LoopbackDNS
from tests.servers import free_port

FULL = "failed to join discovery cluster (discovery: cluster is full)"


@pytest.fixture(params=["etcd-3.4.23", "kvcore"])
def service(request, tmp_path):
    """A v2 keys service for discovery tokens."""
    if request.param == "kvcore":
        srv = servers.start_kvcore(str(tmp_path / "service.etcd"), extra=("--enable-v2",))
    else:
        srv = servers.start_etcd(str(tmp_path / "service.etcd"), binary=dm.ETCD34,
                                 extra=("--enable-v2",))
    yield srv
    srv.stop()


def _registry(service, token: str) -> dict:
    """member-id hex -> registered 'name=peerURL' of a token."""
    url = f"http://127.0.0.1:{service.port}/v2/keys/_etcd/registry/{token}?recursive=true"
    with urllib.request.urlopen(url, timeout=10) as r:
        node = json.load(r)["node"]
    return {n["key"].rsplit("/", 1)[1]: n["value"] for n in node.get("nodes", [])
            if not n["key"].endswith("/_config")}


def _members(endpoint: str) -> list:
    rc, out, err = servers.etcdctl(endpoint, "member", "list", "-w", "json")
    assert rc == 0, err
    doc = json.loads(out)
    return sorted((f"{m['ID']:x}", m.get("name", ""), tuple(m["peerURLs"]))
                  for m in doc["members"]), f"{doc['header']['cluster_id']:x}"


def _cluster_outcome(members: list) -> dict:
    """What the formed cluster looks like, with ports masked (comparable across runs)."""
    views = [_members(m.endpoint) for m in members]
    assert all(v == views[0] for v in views), views      # one cluster, seen alike by all
    rc, _, err = servers.etcdctl(members[0].endpoint, "put", "k", "v")
    assert rc == 0, err
    rc, out, err = servers.etcdctl(members[-1].endpoint, "get", "k", "--print-value-only")
    assert rc == 0, err
    return {"names": sorted(n for _, n, _ in views[0][0]), "got": out.strip(),
            "peer_urls": sorted(re.sub(r":\d+", ":PORT", u) for _, _, us in views[0][0]
                                for u in us)}


def _refusal(m) -> dict:
    """How a turned-away member ended: exit code and its last warnings (msg, error)."""
    rc = dm.wait_exit(m)
    warns = [(e["msg"].replace("failed to start etcd", "failed to start kvcore"),
              e.get("error")) for e in dm.events(m) if e["level"] in ("warn", "fatal")]
    return {"rc": rc, "warnings": warns[-2:]}


def _discovery_run(kind: str, base: str, service, token: str) -> dict:
    url = dm.new_token(service, token, 3)
    members = [dm.spawn(kind, base, f"m{i}", ("--discovery", url)) for i in range(3)]
    try:
        dm.wait_serving(members)
        outcome = _cluster_outcome(members)
        ids = sorted(i for i, _, _ in _members(members[0].endpoint)[0])
        registry = _registry(service, token)
        outcome["registered"] = sorted(v.split("=")[0] for v in registry.values())
        outcome["ids_are_registry_keys"] = ids == sorted(registry)
        fourth = dm.spawn(kind, base, "m3", ("--discovery", url,
                                             "--discovery-fallback", "exit"))
        outcome["fourth"] = _refusal(fourth)
        outcome["registry_after_fourth"] = len(_registry(service, token))
        if kind == "kvcore":
            # restart with a data dir: discovery (now full) is not consulted again
            m0 = members[0]
            m0.stop()
            servers.wait_port_free(m0.port)
            members[0] = m0 = dm.spawn(kind, base, "m0", ("--discovery", url),
                                       client=m0.port, peer=m0.peer_port)
            dm.wait_serving(members)
            dm.wait_event(m0, "discovery token is ignored since cluster already "
                              "initialized; valid logs are found")
            assert _members(m0.endpoint)[0] == _members(members[1].endpoint)[0]
        # etcd's default --discovery-fallback is proxy: a v2 proxy to the members
        fifth = dm.spawn(kind, base, "m4", ("--discovery", url))
        try:
            outcome["fifth"] = _fallback_proxy(fifth, members)
        finally:
            fifth.stop()
        return outcome
    finally:
        dm.stop_all(members)


def _fallback_proxy(m, members) -> dict:
    """A start that found the cluster full and fell back to etcd's v2 proxy: its
    warning, the endpoints it proxies to, and a request through it."""
    ev = dm.wait_event(m, "discovery cluster is full, falling back to proxy")[0]
    want = sorted(f"http://127.0.0.1:{x.port}" for x in members)
    eps = []
    deadline = time.monotonic() + 30
    while sorted(eps) != want and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{m.port}/v2/config/local/proxy",
                                        timeout=5) as r:
                eps = json.load(r)["endpoints"]
        except OSError:
            time.sleep(0.2)
    with urllib.request.urlopen(f"http://127.0.0.1:{m.port}/version", timeout=10) as r:
        version = sorted(json.load(r))
    return {"warning": (ev["msg"], ev.get("error")), "endpoints": sorted(eps) == want,
            "version": version}


def test_discovery_url_forms_one_cluster_like_etcd(service, tmp_path):
    kv = _discovery_run("kvcore", str(tmp_path / "kv"), service, "kv")
    et = _discovery_run("etcd", str(tmp_path / "etcd"), service, "etcd")
    assert kv["names"] == ["m0", "m1", "m2"] and kv["got"] == "v"
    assert kv["ids_are_registry_keys"] and kv["registered"] == ["m0", "m1", "m2"]
    assert kv["fourth"] == {"rc": 1, "warnings": [
        ("failed to bootstrap; discovery token was already used", FULL),
        ("do not reuse discovery token; generate a new one to bootstrap a cluster", None)]}
    assert kv["registry_after_fourth"] == 3
    assert kv["fifth"] == {"warning": ("discovery cluster is full, falling back to proxy",
                                       FULL), "endpoints": True,
                           "version": ["etcdcluster", "etcdserver"]}
    assert kv == et


def _srv_run(kind: str, base: str, dns_for) -> dict:
    """Three members in SRV records (targets "localhost."), a fourth that is not."""
    peers = [free_port() for _ in range(3)]
    dns = dns_for(peers)
    env = {"KVCORE_DNS_RESOLVER": dns.address} if kind == "kvcore" else None
    wrap = None if kind == "kvcore" else dns.in_private_resolv
    flags = ("--discovery-srv", "kv.test")
    members = [dm.spawn(kind, base, f"m{i}", flags, peer=p, advertise_host="localhost",
                        wrap=wrap, env_extra=env) for i, p in enumerate(peers)]
    try:
        dm.wait_serving(members)
        outcome = _cluster_outcome(members)
        fourth = dm.spawn(kind, base, "m3", flags, advertise_host="localhost", wrap=wrap,
                          env_extra=env)
        outcome["fourth"] = _refusal(fourth)
        found = [e for e in dm.events(members[0])
                 if e["msg"] == "got bootstrap from DNS for etcd-server"]
        outcome["bootstrap_nodes"] = sorted(e["node"].split("=")[0] for e in found)
        if kind == "kvcore":      # a restart with a data dir does not look at DNS again
            dns.close()
            m0 = members[0]
            m0.stop()
            servers.wait_port_free(m0.port)
            members[0] = dm.spawn(kind, base, "m0", flags, client=m0.port, peer=m0.peer_port,
                                  advertise_host="localhost", env_extra=env)
            dm.wait_serving(members)
            assert _members(members[0].endpoint)[0] == _members(members[1].endpoint)[0]
        return outcome
    finally:
        dm.stop_all(members)
        dns.close()


def _dns_for(peers):
    return LoopbackDNS({"_etcd-server._tcp.kv.test": [(0, 0, p, "localhost.") for p in peers]},
                   {"localhost": "127.0.0.1"})


def test_discovery_srv_forms_one_cluster_like_etcd(tmp_path):
    kv = _srv_run("kvcore", str(tmp_path / "kv"), _dns_for)
    et = _srv_run("etcd", str(tmp_path / "etcd"), _dns_for)
    assert kv["names"] == ["m0", "m1", "m2"] and kv["got"] == "v"
    assert kv["bootstrap_nodes"] == ["0", "1", "m0"]
    assert kv["fourth"]["rc"] == 1
    assert kv["fourth"]["warnings"][-1] == (
        "discovery failed",
        'error setting up initial cluster: cannot find local etcd member "m3" in SRV records')
    assert kv == et
