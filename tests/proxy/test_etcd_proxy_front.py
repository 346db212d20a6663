"""etcd's own front ends in front of kvcore members: `etcd grpc-proxy start` (the
official 3.5.1 and Debian's 3.4.23) and `etcd gateway start` (etcd's L4 TCP proxy),
each also in front of the etcd 3.5.1 cluster of the same fixture, etcdctl 3.5.1's
outputs through both compared. (tests/proxy/test_grpc_proxy.py is the other way
round: kvcore's proxy against etcd's, each in front of its own kind.)

Covered: kv, txn, lease grant and keep-alive, lock, elect, watch (coalesced watchers:
one upstream watch), member list with --advertise-client-url, endpoint status /
health / hashkv --cluster, snapshot save, --namespace, --resolver-prefix, the proxy's
/health and /metrics, and kill -9 of the member each front end uses first."""
from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from tests import etcd351, servers
from tests.proxy.proxyctl import WAIT, ctl, lines_of
from tests.proxy.test_grpc_proxy import (coalesced_watchers, put_after_election,
                                         transcript, watcher_output)
from tests.proxy.test_namespace_resolver import member_lines, namespace_transcript

ETCD = {"etcd-3.5.1": etcd351.ETCD, "etcd-3.4.23": "/usr/bin/etcd"}
VERSIONS = list(ETCD)


@contextlib.contextmanager
def front(version: str, what: str, members, base: str, extra: tuple = ()):
    """etcd's grpc-proxy or gateway of ``version`` in front of ``members`` (first
    endpoint first) -> (its address, its metrics URL or None)."""
    port = servers.free_port()
    eps = ",".join(f"127.0.0.1:{m.port}" for m in members)
    if what == "grpc-proxy":
        metrics = f"http://127.0.0.1:{servers.free_port()}"
        flags = ["grpc-proxy", "start", f"--endpoints={eps}",
                 f"--listen-addr=127.0.0.1:{port}", f"--metrics-addr={metrics}",
                 f"--advertise-client-url=127.0.0.1:{port}", *extra]
    else:
        metrics = None
        flags = ["gateway", "start", f"--endpoints={eps}", f"--listen-addr=127.0.0.1:{port}",
                 *extra]
    log = open(os.path.join(base, f"{version}-{what}-{port}.log"), "w")
    p = subprocess.Popen([ETCD[version], *flags], stdout=log, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, start_new_session=True)
    log.close()
    try:
        servers.wait_port(port, p)
        yield f"127.0.0.1:{port}", metrics
    finally:
        p.terminate()
        p.wait(10)


def _http(url: str) -> tuple:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _tools(proxy: str, direct: str, snap: str) -> list:
    """member list, endpoint status/health/hashkv, snapshot save through the proxy,
    masked for what differs between any two clusters (ids, sizes, indexes)."""
    t = []
    rc, out, err = ctl(proxy, "member", "list", "-w", "json")
    t.append((rc, [(m.get("name") is not None, m["clientURLs"])
                   for m in json.loads(out)["members"]], err))
    rc, out, err = ctl(proxy, "endpoint", "status")
    t.append((rc, out.split(", ")[0::2][:2], err))     # endpoint, version
    rc, out, err = ctl(proxy, "endpoint", "health")
    t.append((rc, re.sub(r"took = [^\n]+", "took", out), err))
    # hashkv through the proxy is the hash of a member at the same revision
    rc, out, err = ctl(proxy, "endpoint", "hashkv", "--cluster", "-w", "json")
    via = json.loads(out)[0]["HashKV"] if rc == 0 else err
    rc2, out2, _ = ctl(direct, "endpoint", "hashkv", f"--rev={via['header']['revision']}",
                       "-w", "json")
    t.append((rc, json.loads(out)[0]["Endpoint"],
              via["hash"] == json.loads(out2)[0]["HashKV"]["hash"]))
    t.append(ctl(proxy, "snapshot", "save", snap))
    status = subprocess.run([etcd351.ETCDUTL, "snapshot", "status", snap, "-w", "json"],
                            capture_output=True, text=True, timeout=WAIT)
    t.append((status.returncode, sorted(json.loads(status.stdout)) if status.stdout else
              status.stderr))
    return [str(x).replace(proxy, "PROXY").replace(snap, "SNAP") for x in t]


@pytest.mark.parametrize("version", VERSIONS)
def test_etcdctl_through_etcds_grpc_proxy(stacks, tmp_path, version):
    outs = {}
    for kind in ("kvcore", "etcd"):
        members = stacks[kind][0]
        direct = f"127.0.0.1:{members[1].port}"
        with front(version, "grpc-proxy", members, str(tmp_path)) as (proxy, metrics):
            tag = f"front{version.replace('.', '')}"
            outs[kind] = (transcript(proxy, direct, tag)
                          + _tools(proxy, direct, str(tmp_path / f"{kind}.db"))
                          + [_http(f"http://{proxy}/health"), _http(f"{metrics}/health")])
            families = _http(f"{metrics}/metrics")[1]
            outs[kind].append(sorted({l.split()[2] for l in families.splitlines()
                                      if l.startswith("# TYPE etcd_grpc_proxy")}))
    kv = outs["kvcore"]
    assert "locked" in kv[8] and "seen" in kv[9]
    assert kv[12] == "(0, [(True, ['PROXY'])], '')"          # --advertise-client-url
    assert "is healthy" in kv[14] and "True" in kv[15]
    assert "Snapshot saved at SNAP" in kv[16] and kv[17].startswith("(0, [")
    assert kv[-3][0] == 200 and kv[-2][0] == 200 and "etcd_grpc_proxy_cache_hits_total" in kv[-1]
    assert kv == outs["etcd"]


def _leases_and_limits(proxy: str, tag: str) -> list:
    t = []
    rc, out, err = ctl(proxy, "lease", "grant", "5")
    lease = out.split()[1]
    t.append(lines_of(proxy, 3, "lease", "keep-alive", lease))      # the stream
    t.append(ctl(proxy, "lease", "timetolive", lease, "--keys"))
    t.append(ctl(proxy, "lease", "revoke", lease))
    t.append(ctl(proxy, "lease", "revoke", lease))
    t.append(ctl(proxy, "lease", "keep-alive", "--once", lease))
    t.append(ctl(proxy, "lease", "timetolive", lease))
    ctl(proxy, "put", f"{tag}/w", "1")
    ctl(proxy, "put", f"{tag}/w", "2")
    rev = json.loads(ctl(proxy, "get", f"{tag}/w", "-w", "json")[1])["header"]["revision"]
    t.append(lines_of(proxy, 8, "watch", f"{tag}/w", f"--rev={rev - 1}", "--prev-kv"))
    t.append(ctl(proxy, "get", f"{tag}/w", f"--rev={rev - 1}", "--print-value-only"))
    t.append(ctl(proxy, "txn", input="\n" + "".join(f"put {tag}/t{i} v\n" for i in range(130))
                 + "\n\n"))
    t.append(ctl(proxy, "put", f"{tag}/big", input="x" * (2 * 1024 * 1024)))  # over gRPC's 2 MiB
    t.append(ctl(proxy, "put", f"{tag}/big", input="x" * (1024 * 1024)))
    t.append(ctl(proxy, "del", "--prefix", f"{tag}/"))
    return [str(x).replace(lease, "LEASE").replace(tag, "TAG") for x in t]


def test_leases_and_limits_through_etcds_grpc_proxy(stacks, tmp_path):
    outs = {}
    for kind in ("kvcore", "etcd"):
        with front("etcd-3.5.1", "grpc-proxy", stacks[kind][0], str(tmp_path)) as (proxy, _):
            outs[kind] = _leases_and_limits(proxy, "leases-front")
    kv = outs["kvcore"]
    assert kv[0] == str(["lease LEASE keepalived with TTL(5)"] * 3)
    assert "requested lease not found" in kv[3] and "already expired" in kv[5]
    assert "too many operations in txn request" in kv[8] and "larger than max" in kv[9]
    assert kv[10] == "(0, 'OK\\n', '')"
    assert kv == outs["etcd"]


def test_leasing_prefix_of_etcds_grpc_proxy(stacks, tmp_path):
    """--experimental-leasing-prefix: the proxy serves reads from keys it holds a
    lease on (clientv3's leasing KV, built of Txns with revision compares) and gives
    them up on a write; the lease keys sit under the prefix on the cluster."""
    outs = {}
    for kind in ("kvcore", "etcd"):
        members = stacks[kind][0]
        direct = f"127.0.0.1:{members[1].port}"
        with front("etcd-3.5.1", "grpc-proxy", members, str(tmp_path),
                   ("--experimental-leasing-prefix=/leasing/",)) as (proxy, _):
            t = [ctl(proxy, *args) for args in (
                ("put", "lk/a", "1"), ("get", "lk/a"), ("get", "lk/a"), ("put", "lk/a", "2"),
                ("get", "lk/a"), ("del", "lk/a"), ("get", "lk/a"))]
            t.append(ctl(direct, "get", "/leasing/", "--prefix", "--keys-only"))
            ctl(direct, "put", "lk/b", "outside")        # a write around the proxy
            t.append(ctl(proxy, "get", "lk/b", "--print-value-only"))
            t.append(ctl(proxy, "txn", input='value("lk/b") = "outside"\n\nput lk/c 1\n\n'
                                             'put lk/c 2\n\n'))
            t.append(ctl(proxy, "get", "lk/c", "--print-value-only"))
        ctl(direct, "del", "--prefix", "lk/")
        ctl(direct, "del", "--prefix", "/leasing/")
        outs[kind] = t
    kv = outs["kvcore"]
    assert kv[4] == (0, "lk/a\n2\n", "") and kv[6] == (0, "", "")
    assert "/leasing/lk/a" in kv[7][1] and kv[10] == (0, "1\n", "")
    assert kv == outs["etcd"]


@pytest.mark.parametrize("version", VERSIONS)
def test_watchers_coalesced_by_etcds_grpc_proxy(stacks, tmp_path, version):
    """200 watchers of one key (4 streams of 50) through etcd's proxy: every watcher
    gets the event, and the cluster holds far fewer watches than that. (etcd's proxy
    opens a few upstream watches and ends the ones of cancelled streams lazily, in
    front of etcd as of kvcore: the count moves by 0 to ~25 per run, so only the
    bound is compared.)"""
    for kind in ("kvcore", "etcd"):
        members = stacks[kind][0]
        with front(version, "grpc-proxy", members, str(tmp_path)) as (proxy, _):
            upstream, got = coalesced_watchers(members, proxy, 4, 50, f"coal-{version}")
            assert got == 200 and upstream < 100, (kind, upstream, got)


@pytest.mark.parametrize("version", VERSIONS)
def test_namespace_of_etcds_grpc_proxy(stacks, tmp_path, version):
    outs = {}
    for kind in ("kvcore", "etcd"):
        members = stacks[kind][0]
        direct = f"127.0.0.1:{members[1].port}"
        held = tmp_path / f"held-{kind}.sh"
        held.write_text(f"#!/bin/sh\nexec {etcd351.ETCDCTL} --endpoints={direct} "
                        "get --prefix nsp/nsl --keys-only\n")
        held.chmod(0o755)
        with front(version, "grpc-proxy", members, str(tmp_path),
                   ("--namespace=nsp/",)) as (proxy, _):
            outs[kind] = namespace_transcript(proxy, direct, str(held))
    assert "nsp/a" in outs["kvcore"][16] and "'nsp/nsl/LEASE" in outs["kvcore"][17]
    assert outs["kvcore"] == outs["etcd"]


def test_resolver_prefix_of_etcds_grpc_proxy(stacks, tmp_path):
    """Two etcd 3.5.1 proxies register under one prefix on the kvcore cluster: each
    lists both as the members; the registrations are leased keys."""
    outs = {}
    for kind in ("kvcore", "etcd"):
        members = stacks[kind][0]
        direct = f"127.0.0.1:{members[1].port}"
        flags = ("--resolver-prefix=/efront", "--resolver-ttl=7")
        with front("etcd-3.5.1", "grpc-proxy", members, str(tmp_path), flags) as (a, _), \
                front("etcd-3.5.1", "grpc-proxy", members, str(tmp_path), flags) as (b, _):
            listed = [member_lines(a, 2), member_lines(b, 2)]
            rc, out, err = ctl(direct, "get", "--prefix", "/efront", "-w", "json")
            leased = [kv.get("lease", 0) != 0 for kv in json.loads(out).get("kvs", [])]
        ctl(direct, "del", "--prefix", "/efront")
        names = {a: "PROXY-A", b: "PROXY-B"}
        outs[kind] = [sorted(re.sub("|".join(map(re.escape, names)),
                                    lambda m: names[m.group(0)], line) for line in view)
                      for view in listed] + [leased]
    assert outs["kvcore"][2] == [True, True]
    assert outs["kvcore"] == outs["etcd"]


def test_etcdctl_through_etcds_gateway(stacks, tmp_path):
    outs = {}
    for kind in ("kvcore", "etcd"):
        members = stacks[kind][0]
        direct = f"127.0.0.1:{members[1].port}"
        outs[kind] = []
        for version in VERSIONS:
            with front(version, "gateway", members, str(tmp_path)) as (gw, _):
                outs[kind].append(transcript(gw, direct, f"gw{version.replace('.', '')}"))
                rc, out, err = ctl(gw, "endpoint", "status")
                outs[kind].append((rc, out.split(", ")[2], err))       # the version
                snap = str(tmp_path / f"gw-{kind}-{version}.db")
                outs[kind].append(ctl(gw, "snapshot", "save", snap)[0])
                status = subprocess.run([etcd351.ETCDUTL, "snapshot", "status", snap],
                                        capture_output=True, text=True, timeout=WAIT)
                outs[kind].append(status.returncode)
    assert "locked" in outs["kvcore"][0][8] and "seen" in outs["kvcore"][0][9]
    assert outs["kvcore"][2:4] == [0, 0]           # snapshot save, etcdutl status
    assert outs["kvcore"] == outs["etcd"]


@pytest.mark.parametrize("kind", ["kvcore", "etcd"])
def test_front_ends_survive_kill9_of_their_first_member(stacks, tmp_path, kind):
    """Both grpc-proxies and both gateways in front of one cluster; the member each
    dials first is killed with -9: new requests through each succeed (after the
    cluster's own election errors, if it led), a watch opened through the 3.5.1
    proxy before the kill still delivers. The member is started again afterwards."""
    members = stacks[kind][0]
    direct = f"127.0.0.1:{members[2].port}"
    with contextlib.ExitStack() as stack:
        fronts = [stack.enter_context(front(v, what, members, str(tmp_path)))[0]
                  for what in ("grpc-proxy", "gateway") for v in VERSIONS]
        for f in fronts:
            assert ctl(f, "put", "k9/a", "1")[0] == 0
        watcher = subprocess.Popen([etcd351.ETCDCTL, f"--endpoints={fronts[0]}", "watch",
                                    "k9/w"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                   text=True, start_new_session=True)
        stack.callback(lambda: (watcher.kill(), watcher.wait(10)))
        time.sleep(1.0)
        members[0].kill9()
        try:
            servers.wait_port_free(members[0].port)
            for i, f in enumerate(fronts):
                put_after_election(f, f"k9/b{i}", str(i))
                assert ctl(f, "get", f"k9/b{i}", "--print-value-only") == (0, f"{i}\n", "")
            deadline = time.monotonic() + WAIT
            seen = ""
            while "after-kill" not in seen and time.monotonic() < deadline:
                ctl(direct, "put", "k9/w", "after-kill")
                try:
                    seen += watcher_output(watcher, 3.0)
                except TimeoutError:
                    pass
            assert "after-kill" in seen
        finally:
            members[0].restart()
            servers.leader_of(members, timeout=90.0)
    ctl(direct, "del", "--prefix", "k9/")
