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
import base64
import os
import re
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from tests import discovery_members as dm
from tests import servers
from tests.dnsserver import LoopbackDNS
from tests.etcd351 import ETCDCTL as ETCDCTL351
from tests.servers import free_port

FULL = "failed to join discovery cluster (discovery: cluster is full)"


# kvcore as the discovery service: the same scenario, slow (CI time; the v2 keys
# calls discovery makes are in tests/compat/test_v2_keys.py's session too)
@pytest.fixture(params=["etcd-3.4.23", pytest.param("kvcore", marks=pytest.mark.slow)])
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


def _http(method: str, url: str, body: bytes = None, ctype: str = None):
    req = urllib.request.Request(url, data=body, method=method)
    if ctype:
        req.add_header("Content-Type", ctype)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _proxy_up(p, timeout: float = 60.0) -> bool:
    """The v2 proxy answers /version from a member (it has found the endpoints)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and p.proc.poll() is None:
        try:
            if _http("GET", f"http://127.0.0.1:{p.port}/version")[0] == 200:
                return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def _through_proxy(p) -> dict:
    """v2 keys and the JSON gateway through a v2 proxy."""
    base = f"http://127.0.0.1:{p.port}"
    form = "application/x-www-form-urlencoded"
    put = _http("PUT", f"{base}/v2/keys/viaproxy", b"value=1", form)[0]
    got = _http("GET", f"{base}/v2/keys/viaproxy")
    rng = _http("POST", f"{base}/v3/kv/range",
                json.dumps({"key": base64.b64encode(b"k").decode()}).encode(),
                "application/json")
    value = json.loads(rng[1])["kvs"][0]["value"] if rng[0] == 200 else rng[0]
    return {"v2_put": put, "v2_get": (got[0], json.loads(got[1]).get("node", {}).get("value")),
            "v3_range": base64.b64decode(value).decode() if isinstance(value, str) else value}


def _discovery_run(kind: str, base: str, service, token: str, proxy=None) -> dict:
    """Two members register and wait, the third joins them; a fourth is turned away."""
    url = dm.new_token(service, token, 3)
    flags = ("--discovery", url, "--enable-v2") + (
        ("--discovery-proxy", proxy.address) if proxy else ())
    members = [dm.spawn(kind, base, f"m{i}", flags) for i in range(2)]
    try:
        for m in members:   # both registered, watching the token for the third
            dm.wait_event(m, "found peers from discovery server; waiting for more")
        members.append(dm.spawn(kind, base, "m2", flags))
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
        # etcd's default --discovery-fallback is proxy: a v2 proxy to the cluster
        fifth = dm.spawn(kind, base, "m4", ("--discovery", url))
        members.append(fifth)
        outcome["fifth"] = [(e["msg"], e.get("error")) for e in dm.events(fifth)
                            if e["level"] == "warn"] if _proxy_up(fifth) else "down"
        outcome["through_proxy"] = _through_proxy(fifth)
        # --proxy readonly, from --initial-cluster
        ro = dm.spawn(kind, base, "ro", ("--proxy", "readonly", "--initial-cluster",
                                         f"m1=http://127.0.0.1:{members[1].peer_port}"))
        members.append(ro)
        outcome["readonly_proxy"] = _through_proxy(ro) if _proxy_up(ro) else "down"
        if kind == "etcd":   # kvcore's v2 proxy in front of the etcd members
            kvp = dm.spawn("kvcore", base, "kvproxy", ("--proxy", "on", "--initial-cluster",
                           f"m1=http://127.0.0.1:{members[1].peer_port}"))
            members.append(kvp)
            assert _proxy_up(kvp), kvp.log()[-2000:]
            through = _through_proxy(kvp)
            assert through["v2_get"] == (200, "1") and through["v3_range"] == "v", through
        if kind == "kvcore":
            # restart with a data dir: discovery (now full) is not consulted again
            m0 = members[0]
            m0.stop()
            servers.wait_port_free(m0.port)
            members[0] = m0 = dm.spawn(kind, base, "m0", flags,
                                       client=m0.port, peer=m0.peer_port)
            dm.wait_serving(members[:3])
            dm.wait_event(m0, "discovery token is ignored since cluster already "
                              "initialized; valid logs are found")
            assert _members(m0.endpoint)[0] == _members(members[1].endpoint)[0]
        if kind == "kvcore" and service.kind == "kvcore":   # the slow variant
            # a proxy's restart uses its cluster file
            fifth.stop()
            servers.wait_port_free(fifth.port)
            members[3] = fifth = dm.spawn(kind, base, "m4", ("--discovery", url),
                                          client=fifth.port, peer=fifth.peer_port)
            assert _proxy_up(fifth)
            dm.wait_event(fifth, "discovery token ignored since the proxy has already been "
                                 "initialized; valid cluster file found")
        return outcome
    finally:
        dm.stop_all(members)


def test_discovery_url_forms_one_cluster_like_etcd(service, tmp_path):
    # with etcd as the service, every member talks to it through --discovery-proxy
    proxy = dm.ForwardProxy() if service.kind == "etcd" else None
    try:
        kv = _discovery_run("kvcore", str(tmp_path / "kv"), service, "kv", proxy)
        et = _discovery_run("etcd", str(tmp_path / "etcd"), service, "etcd", proxy)
    finally:
        if proxy:
            proxy.close()
    if proxy:
        for token in ("kv", "etcd"):     # the size, the registration, the watch
            seen = {(m, p) for m, p in proxy.forwarded}
            assert {("GET", f"/v2/keys/_etcd/registry/{token}/_config/size"),
                    ("GET", f"/v2/keys/_etcd/registry/{token}")} <= seen, seen
            assert any(m == "PUT" and p.startswith(f"/v2/keys/_etcd/registry/{token}/")
                       for m, p in seen), seen
    assert kv["names"] == ["m0", "m1", "m2"] and kv["got"] == "v"
    assert kv["ids_are_registry_keys"] and kv["registered"] == ["m0", "m1", "m2"]
    assert kv["fourth"] == {"rc": 1, "warnings": [
        ("failed to bootstrap; discovery token was already used", FULL),
        ("do not reuse discovery token; generate a new one to bootstrap a cluster", None)]}
    assert kv["registry_after_fourth"] == 3
    assert kv["fifth"] == [("discovery cluster is full, falling back to proxy", FULL)]
    assert kv["through_proxy"] == {"v2_put": 201, "v2_get": (200, "1"), "v3_range": "v"}
    assert kv["readonly_proxy"]["v2_put"] == 501
    assert kv == et


def _srv_run(kind: str, base: str, restart: bool = False, hosts: bool = False) -> dict:
    """Three members in SRV records, a fourth that is not. The records' targets are
    "localhost." and the members advertise localhost; or (``hosts``) each target is a
    name of its own (mN.kv.test, an A record) and the members advertise 127.0.0.1: then
    peers dial those names, so kvcore members run in the private resolv.conf too."""
    peers = [free_port() for _ in range(3)]
    clients = [free_port() for _ in range(3)]
    dns = _dns_for(peers, clients, hosts)
    advertise = "127.0.0.1" if hosts else "localhost"
    env = {"KVCORE_DNS_RESOLVER": dns.address} if kind == "kvcore" else None
    wrap = None if kind == "kvcore" and not hosts else dns.in_private_resolv
    flags = ("--discovery-srv", "kv.test")
    members = [dm.spawn(kind, base, f"m{i}", flags, peer=p, client=c,
                        advertise_host=advertise, wrap=wrap, env_extra=env)
               for i, (p, c) in enumerate(zip(peers, clients))]
    try:
        dm.wait_serving(members)
        outcome = _cluster_outcome(members)
        # clients find the cluster by SRV too (_etcd-client._tcp): etcd 3.5.1's etcdctl
        ctl = subprocess.run(dns.in_private_resolv(
            [ETCDCTL351, "--discovery-srv", "kv.test", "--command-timeout=10s", "get", "k",
             "--print-value-only"]), capture_output=True, text=True, timeout=30,
            env={**os.environ, "ETCDCTL_API": "3"})
        outcome["etcdctl_discovery_srv"] = (ctl.returncode, ctl.stdout.strip())
        fourth = dm.spawn(kind, base, "m3", flags, advertise_host=advertise, wrap=wrap,
                          env_extra=env)
        outcome["fourth"] = _refusal(fourth)
        found = [e for e in dm.events(members[0])
                 if e["msg"] == "got bootstrap from DNS for etcd-server"]
        outcome["bootstrap_nodes"] = sorted(e["node"].split("=")[0] for e in found)
        if kind == "kvcore" and restart:   # with a data dir, DNS is not looked at again
            if not hosts:    # (peers still dial the records' names)
                dns.close()
            m0 = members[0]
            m0.stop()
            servers.wait_port_free(m0.port)
            members[0] = dm.spawn(kind, base, "m0", flags, client=m0.port, peer=m0.peer_port,
                                  advertise_host=advertise, env_extra=env, wrap=wrap)
            dm.wait_serving(members)
            assert _members(members[0].endpoint)[0] == _members(members[1].endpoint)[0]
        return outcome
    finally:
        dm.stop_all(members)
        dns.close()


def _dns_for(peers, clients, hosts: bool = False):
    def target(i):
        return f"m{i}.kv.test." if hosts else "localhost."
    return LoopbackDNS(
        {"_etcd-server._tcp.kv.test": [(0, 0, p, target(i)) for i, p in enumerate(peers)],
         "_etcd-client._tcp.kv.test": [(0, 0, c, target(i)) for i, c in enumerate(clients)]},
        {"localhost": "127.0.0.1", **{f"m{i}.kv.test": "127.0.0.1" for i in range(3)}})


# slow: each member has a host name of its own in the records while it advertises
# 127.0.0.1 (matched by address, as etcd matches), and a kvcore member restarts
@pytest.mark.parametrize("hosts", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_discovery_srv_forms_one_cluster_like_etcd(tmp_path, hosts):
    kv = _srv_run("kvcore", str(tmp_path / "kv"), restart=hosts, hosts=hosts)
    et = _srv_run("etcd", str(tmp_path / "etcd"), hosts=hosts)
    assert kv["names"] == ["m0", "m1", "m2"] and kv["got"] == "v"
    assert kv["bootstrap_nodes"] == ["0", "1", "m0"]
    assert kv["etcdctl_discovery_srv"] == (0, "v")
    assert kv["fourth"]["rc"] == 1
    assert kv["fourth"]["warnings"][-1] == (
        "discovery failed",
        'error setting up initial cluster: cannot find local etcd member "m3" in SRV records')
    assert kv == et


def _outage_run(kind: str, base: str, svc: dict, token: str) -> dict:
    """Two members wait on the token, the discovery service goes down and comes back,
    the third registers: the waiting members retry and the cluster forms."""
    url = dm.new_token(svc["srv"], token, 3)
    members = [dm.spawn(kind, base, f"m{i}", ("--discovery", url)) for i in range(2)]
    try:
        for m in members:
            dm.wait_event(m, "found peers from discovery server; waiting for more")
        svc["srv"].stop()
        for m in members:
            dm.wait_event(m, "error while waiting for peers")
            dm.wait_event(m, "retry connecting to discovery service")
        svc["srv"] = svc["srv"].restart()
        members.append(dm.spawn(kind, base, "m2", ("--discovery", url)))
        dm.wait_serving(members, timeout=120)
        return _cluster_outcome(members)
    finally:
        dm.stop_all(members)


@pytest.mark.slow
def test_discovery_service_outage_while_waiting_like_etcd(tmp_path):
    svc = {"srv": servers.start_etcd(str(tmp_path / "service.etcd"), binary=dm.ETCD34,
                                     extra=("--enable-v2",))}
    try:
        kv = _outage_run("kvcore", str(tmp_path / "kv"), svc, "kv")
        et = _outage_run("etcd", str(tmp_path / "etcd"), svc, "etcd")
    finally:
        svc["srv"].stop()
    assert kv["names"] == ["m0", "m1", "m2"]
    assert kv == et
