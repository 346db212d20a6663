"""`grpc-proxy start --namespace` and `--resolver-prefix/--resolver-ttl`, kvcore's proxy
against etcd 3.5.1's: etcdctl's outputs through each (and read directly from the
cluster behind it) must be equal, normalised only for lease IDs and proxy addresses."""
from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest

from tests import etcd351
from tests.proxy.proxyctl import WAIT, ctl, lines_of, start_proxy


def stop(p) -> None:
    p.terminate()
    p.wait(10)


def namespace_transcript(proxy: str, direct: str, held: str) -> list:
    """``held`` is a command listing the cluster's keys under nsp/nsl."""
    t = []
    t.append(ctl(proxy, "put", "a", "1"))
    t.append(ctl(proxy, "put", "b", "2"))
    t.append(ctl(proxy, "put", "b", "3", "--prev-kv"))
    t.append(ctl(proxy, "get", "a"))
    t.append(ctl(proxy, "get", "", "--prefix"))
    t.append(ctl(proxy, "get", "", "--from-key"))
    t.append(ctl(proxy, "get", "b", "--from-key", "--keys-only"))
    t.append(ctl(proxy, "get", ""))                       # empty key: refused
    t.append(ctl(proxy, "put", "", "x"))
    t.append(ctl(proxy, "txn", "-w", "json", input='value("a") = "1"\n\nput c 3\nget a\n'
                 'get "" --prefix\n\ndel a\n\n'))
    t.append(ctl(proxy, "txn", input='value("a") = "2"\n\nput c 4\n\ndel --prev-kv c\n\n'))
    rc, out, err = ctl(proxy, "lease", "grant", "60")
    lease = out.split()[1]
    t.append(ctl(proxy, "put", "l", "x", f"--lease={lease}"))
    t.append(ctl(direct, "put", "outside", "y", f"--lease={lease}"))
    rc, out, err = ctl(proxy, "lease", "timetolive", "--keys", lease)
    t.append((rc, re.sub(r"remaining\(\d+s\)", "remaining", out), err))  # a loaded host's second
    t.append(lines_of(proxy, 5, "watch", "--prev-kv", "a",
                      then=lambda: (time.sleep(0.5), ctl(proxy, "put", "a", "w"))))
    t.append(lines_of(proxy, 3, "watch", "--prefix", "",
                      then=lambda: (time.sleep(0.5), ctl(direct, "put", "nsp/z", "9"))))
    t.append(ctl(direct, "get", "--prefix", "nsp/", "--keys-only"))
    # etcdctl's lock is a client-side recipe over KV and Watch, so its key lands in the
    # namespace (read on the cluster by ``held`` while the lock is held).
    rc, out, err = ctl(proxy, "lock", "nsl", held)
    t.append((rc, re.sub(r"nsl/[0-9a-f]+", "nsl/LEASE", out), err))
    t.append(lock_rpc(proxy))            # the Lock service is not namespaced
    t.append(ctl(proxy, "del", "", "--prefix", "--prev-kv"))
    t.append(ctl(direct, "get", "--prefix", "nsp/"))
    ctl(direct, "del", "outside")
    return [re.sub(r"\b[0-9a-f]{16}\b", "LEASE", re.sub(r'"(revision|raft_term|cluster_id|'
                                                         r'member_id|create_revision|'
                                                         r'mod_revision)":\d+', "N", str(x)))
            .replace(lease, "LEASE") for x in t]


def lock_rpc(proxy: str) -> bytes:
    """The key a v3lock Lock *RPC* through the proxy takes (then unlocked)."""
    import grpc
    from kvcore.api import rpc_pb2, v3lock_pb2
    with grpc.insecure_channel(proxy) as ch:
        def call(path, req, resp_cls):
            return ch.unary_unary(path, request_serializer=type(req).SerializeToString,
                                  response_deserializer=resp_cls.FromString)(req, timeout=WAIT)
        lid = call("/etcdserverpb.Lease/LeaseGrant", rpc_pb2.LeaseGrantRequest(TTL=30),
                   rpc_pb2.LeaseGrantResponse).ID
        key = call("/v3lockpb.Lock/Lock", v3lock_pb2.LockRequest(name=b"rpcl", lease=lid),
                   v3lock_pb2.LockResponse).key
        call("/v3lockpb.Lock/Unlock", v3lock_pb2.UnlockRequest(key=key),
             v3lock_pb2.UnlockResponse)
    return key.replace(b"%x" % lid, b"LEASE")


def test_namespace_as_etcd_proxy(stacks, tmp_path):
    outs = {}
    for kind in ("kvcore", "etcd"):
        members = stacks[kind][0]
        proxy, addr = start_proxy(kind, str(tmp_path), members, ("--namespace=nsp/",))
        try:
            direct = f"127.0.0.1:{members[1].port}"
            held = tmp_path / f"held-{kind}.sh"
            held.write_text(f"#!/bin/sh\nexec {etcd351.ETCDCTL} --endpoints={direct} "
                            "get --prefix nsp/nsl --keys-only\n")
            held.chmod(0o755)
            outs[kind] = namespace_transcript(addr, direct, str(held))
        finally:
            stop(proxy)
    assert outs["kvcore"] == outs["etcd"]
    t = outs["kvcore"]
    assert t[3] == str((0, "a\n1\n", "")) and t[2] == str((0, "OK\nb\n2\n", ""))
    assert "key is not provided" in t[7]
    assert "nsp/a" in t[16] and "nsp/z" in t[16]              # where the keys landed
    assert "'nsp/nsl/LEASE" in t[17] and t[18] == str(b"rpcl/LEASE")
    assert "'PUT', 'a', '1', 'a', 'w'" in t[14] and "'PUT', 'z', '9'" in t[15]


def member_lines(proxy: str, n: int) -> list:
    """`member list` through the proxy, once it lists n members (bounded wait)."""
    deadline = time.monotonic() + WAIT
    while True:
        rc, out, err = ctl(proxy, "member", "list")
        lines = sorted(out.splitlines())
        if rc == 0 and len(lines) >= n or time.monotonic() > deadline:
            return lines
        time.sleep(0.3)


def test_resolver_prefix_lists_registered_proxies(stacks, tmp_path):
    """Two proxies registered under one prefix: `member list` through either lists
    both; the registration is a leased key in etcd's endpoints format (under the
    namespace when there is one)."""
    outs = {}
    for kind in ("kvcore", "etcd"):
        members = stacks[kind][0]
        direct = f"127.0.0.1:{members[1].port}"
        flags = ("--resolver-prefix=/reg", "--resolver-ttl=7")
        procs = []
        try:
            for extra in ((), (), ("--namespace=rns/",)):
                procs.append(start_proxy(kind, str(tmp_path), members, flags + extra))
            (_, a1), (_, a2), (_, a3) = procs
            t = [member_lines(a1, 2), member_lines(a2, 2), member_lines(a3, 1)]
            t.append(ctl(direct, "get", "--prefix", "/reg"))
            t.append(ctl(direct, "get", "--prefix", "rns//reg", "--keys-only"))
            rc, out, err = ctl(direct, "get", "/reg/" + a1, "-w", "json")
            lease = re.search(r'"lease":(\d+)', out).group(1)
            ttl = ctl(direct, "lease", "timetolive", "%x" % int(lease))[1]   # printed as %016x
            t.append(re.sub(r"remaining\(\d+s\)", "remaining", ttl).replace(
                "%016x" % int(lease), "LEASE"))
        finally:
            for p, _ in procs:
                stop(p)
        ctl(direct, "del", "--prefix", "/reg")
        ctl(direct, "del", "--prefix", "rns/")
        names = {a1: "PROXY1", a2: "PROXY2", a3: "PROXY3"}
        if a2 < a1:                      # member list is sorted: name by address order
            names = {a1: "PROXY2", a2: "PROXY1", a3: "PROXY3"}
        outs[kind] = [re.sub("|".join(map(re.escape, names)), lambda m: names[m.group(0)],
                             str(x)) for x in t]
    assert outs["kvcore"] == outs["etcd"]
    t = outs["kvcore"]
    assert t[0] == t[1] and t[0].count("PROXY") == 2 and "PROXY1" in t[0] and "PROXY2" in t[0]
    assert t[2].count("PROXY") == 1 and "PROXY3" in t[2]
    assert "rns//reg/PROXY3" in t[4]
    assert "granted with TTL(7s)" in t[5]


@pytest.mark.parametrize("flags,message", [
    (("--resolver-prefix=/reg",), "invalid resolver-ttl 0"),
    (("--resolver-ttl=5",), 'invalid resolver-prefix ""'),
    (("--resolver-prefix=/reg", "--resolver-ttl=5", "--advertise-client-url="),
     'invalid advertise-client-url ""'),
])
def test_resolver_flags_checked_as_etcd(flags, message):
    outs = []
    for argv in ([sys.executable, "-m", "kvcore", "grpc-proxy"], [etcd351.ETCD, "grpc-proxy"]):
        p = subprocess.run([*argv, "start", "--endpoints=127.0.0.1:1", *flags],
                           capture_output=True, text=True, timeout=WAIT)
        outs.append((p.returncode, p.stderr.splitlines()[-1] if p.stderr else ""))
    assert outs[0] == outs[1] == (1, message)
