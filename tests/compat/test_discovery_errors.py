"""Bad discovery input: a kvcore member and a real etcd 3.5.1 member given the same
bad --discovery URL, token or SRV domain end the same way: the same exit code and
the same warnings (message and error text), or, for a discovery service that cannot
be reached, the same retry lines while both keep trying (etcd retries for ever)."""
from __future__ import annotations

import urllib.request

import pytest

from tests import discovery_members as dm
from tests import servers
from tests.dnsserver import LoopbackDNS
from tests.servers import free_port

from kvcore.server.membership import member_id


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """etcd 3.4.23 --enable-v2 with the tokens the cases use."""
    srv = servers.start_etcd(str(tmp_path_factory.mktemp("svc") / "service.etcd"),
                             binary=dm.ETCD34, extra=("--enable-v2",))
    base = f"http://127.0.0.1:{srv.port}"
    dm.v2_put(base, "_etcd/registry/badsize/_config/size", "abc")
    dm.v2_put(base, "_etcd/registry/nosize/other", "x")
    yield srv
    srv.stop()


def _outcome(m) -> dict:
    rc = dm.wait_exit(m)
    warns = [(e["level"], e["msg"].replace("failed to start etcd", "failed to start kvcore"),
              e.get("error")) for e in dm.events(m) if e["level"] in ("warn", "fatal")]
    return {"rc": rc, "warnings": warns}


def _both(tmp_path, flags, **kw) -> tuple[dict, dict]:
    kv = _outcome(dm.spawn("kvcore", str(tmp_path / "kv"), "x", flags, **kw.get("kv", {})))
    et = _outcome(dm.spawn("etcd", str(tmp_path / "etcd"), "x", flags, **kw.get("etcd", {})))
    return kv, et


SLOW = pytest.mark.slow    # CI runs one case of each kind


@pytest.mark.parametrize("path, cause", [
    ("", "discovery: bad discovery endpoint"),                    # no token in the URL
    pytest.param("/v2/keys/_etcd/registry/badsize", "discovery: size key is bad", marks=SLOW),
    pytest.param("/v2/keys/_etcd/registry/nosize", "100: Key not found",   # no _config/size
                 marks=SLOW),
    ("/v2/keys/_etcd/registry/nosuch", "100: Key not found"),     # no such token
    pytest.param("/v2/keys/_etcd/registry/%zz", 'invalid URL escape "%zz"',  # malformed
                 marks=SLOW),
])
def test_malformed_token_fails_like_etcd(service, tmp_path, path, cause):
    kv, et = _both(tmp_path, ("--discovery", f"http://127.0.0.1:{service.port}{path}",
                              "--discovery-fallback", "exit"))
    assert kv["rc"] == 1
    assert cause in kv["warnings"][0][2]
    assert [w[1] for w in kv["warnings"]][-2:] == [
        "failed to bootstrap; discovery token was already used",
        "do not reuse discovery token; generate a new one to bootstrap a cluster"]
    assert kv == et


@SLOW
def test_member_already_registered_fails_like_etcd(service, tmp_path):
    """Its ID is registered under the token already: etcd's ErrDuplicateID lines."""
    url = dm.new_token(service, "dup", 3)
    ports = {}
    for kind in ("kv", "etcd"):
        client, peer = free_port(), free_port()
        mid = member_id([f"http://127.0.0.1:{peer}"], url)
        req = urllib.request.Request(f"{url}/{mid:x}", data=b"value=x=http://127.0.0.1:1",
                                     method="PUT")
        req.add_header("Content-Type", "application/x-www-form-urlencoded")
        urllib.request.urlopen(req, timeout=10).read()
        ports[kind] = {"client": client, "peer": peer}
    kv, et = _both(tmp_path, ("--discovery", url), kv=ports["kv"], etcd=ports["etcd"])
    assert kv["rc"] == 1
    assert [w[1] for w in kv["warnings"]][1:] == [
        "member has been registered with discovery service",
        "but could not find valid cluster configuration",
        "check data dir if previous bootstrap succeeded",
        "or use a new discovery token if previous bootstrap failed"]
    assert kv == et


@pytest.mark.parametrize("proxy", [False, pytest.param(True, marks=SLOW)])
def test_unreachable_discovery_service_is_retried_like_etcd(tmp_path, proxy):
    dead = free_port()
    url = f"http://127.0.0.1:{dead}/v2/keys/_etcd/registry/gone"
    flags = ("--discovery", url)
    if proxy:      # the service would be there, the proxy to it is not
        flags = ("--discovery", "http://127.0.0.1:2379/v2/keys/_etcd/registry/t",
                 "--discovery-proxy", f"127.0.0.1:{dead}")
    seen = []
    for kind in ("kvcore", "etcd"):
        m = dm.spawn(kind, str(tmp_path / kind), "x", flags)
        try:
            failed = dm.wait_event(m, "failed to get from discovery server")[0]
            retry = dm.wait_event(m, "retry connecting to discovery service")[0]
            assert m.proc.poll() is None             # still trying, as etcd
        finally:
            m.stop()
        seen.append(({k: failed[k] for k in ("discovery-url", "path", "error", "err-detail")},
                     {k: retry[k] for k in ("url", "reason", "backoff")}))
    kv, et = seen
    assert "connect: connection refused" in kv[0]["error"]
    assert kv[1]["backoff"] == "2s"
    assert kv == et


@pytest.fixture(scope="module")
def dns():
    d = LoopbackDNS({"_etcd-server._tcp.nowhere.test": [(0, 0, 2380, "nowhere.nowhere.test."),
                                                          (0, 0, 2381, "gone.nowhere.test.")]})
    yield d
    d.close()


@pytest.mark.parametrize("domain", ["nowhere.test", pytest.param("norecords.test", marks=SLOW)])
def test_srv_records_pointing_nowhere_fail_like_etcd(dns, tmp_path, domain):
    flags = ("--discovery-srv", domain)
    kv, et = _both(tmp_path, flags,
                   kv={"env_extra": {"KVCORE_DNS_RESOLVER": dns.address}},
                   etcd={"wrap": dns.in_private_resolv})
    assert kv["rc"] == 1
    assert kv["warnings"][-1][:2] == ("fatal", "discovery failed")
    assert kv["warnings"][-1][2].startswith("error setting up initial cluster: error querying "
                                            "DNS SRV records for _etcd-server-ssl lookup ")
    assert kv == et


def test_srv_record_spelling_the_member_otherwise_fails_like_etcd(tmp_path):
    """The record's target is localhost, the member advertises 127.0.0.1: etcd does not
    resolve localhost or IPs when it compares, so the two differ."""
    peer = free_port()
    with LoopbackDNS({"_etcd-server._tcp.spelt.test": [(0, 0, peer, "localhost.")]},
                     {"localhost": "127.0.0.1"}) as d:
        flags = ("--discovery-srv", "spelt.test")
        kv, et = _both(tmp_path, flags,
                       kv={"env_extra": {"KVCORE_DNS_RESOLVER": d.address}, "peer": peer},
                       etcd={"wrap": d.in_private_resolv, "peer": peer})
    assert kv["rc"] == 1
    assert kv["warnings"][-1] == ("fatal", "discovery failed", (
        f"--initial-cluster has x=http://localhost:{peer} but missing from "
        f"--initial-advertise-peer-urls=http://127.0.0.1:{peer} "
        f'("http://127.0.0.1:{peer}"(resolved from "http://127.0.0.1:{peer}") != '
        f'"http://localhost:{peer}"(resolved from "http://localhost:{peer}"))'))
    assert kv == et
