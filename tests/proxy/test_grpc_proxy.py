"""`kvcore grpc-proxy start` in front of a 3-member kvcore cluster, compared with etcd
3.5.1's own `etcd grpc-proxy start` in front of a 3-member etcd 3.5.1 cluster.

Each scenario runs etcd 3.5.1's etcdctl through a proxy and directly against its
cluster; the transcripts must be equal, and the kvcore-proxy transcript must equal the
etcd-proxy one. Transcripts are normalised only for what is random (lease IDs) and the
proxy's own address. Every wait is bounded.
"""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time

import pytest

from tests import etcd351, servers
from tests.proxy.proxyctl import WAIT, ctl, lines_of, start_proxy


def transcript(endpoint: str, direct: str, tag: str) -> list:
    """One scenario through ``endpoint``; ``direct`` is a member (for puts a watcher
    must see). Keys are prefixed by ``tag`` so runs on one cluster do not meet."""
    t = []
    k = f"{tag}/k"
    t.append(ctl(endpoint, "put", k, "v"))
    t.append(ctl(endpoint, "get", k))
    t.append(ctl(endpoint, "txn", input=f'value("{k}") = "v"\n\nput {k}2 yes\n\nput {k}3 no\n'))
    t.append(ctl(endpoint, "get", "--prefix", f"{tag}/"))
    t.append(ctl(endpoint, "get", k, "--consistency=s", "--print-value-only"))
    rc, out, err = ctl(endpoint, "lease", "grant", "60")
    t.append((rc, re.sub(r"lease [0-9a-f]+", "lease ID", out), err))
    lease = out.split()[1]
    t.append(ctl(endpoint, "put", f"{tag}/leased", "x", f"--lease={lease}"))
    rc, out, err = ctl(endpoint, "lease", "keep-alive", "--once", lease)
    t.append((rc, out.replace(lease, "ID"), err))
    t.append(ctl(endpoint, "lock", f"{tag}/lock", "echo", "locked"))
    t.append(lines_of(endpoint, 3, "watch", f"{tag}/w",
                      then=lambda: (time.sleep(0.5), ctl(direct, "put", f"{tag}/w", "seen"))))
    elect = lines_of(endpoint, 2, "elect", f"{tag}/e", "leader1")
    t.append([re.sub(r"/[0-9a-f]+$", "/ID", l) for l in elect])
    t.append(ctl(endpoint, "del", "--prefix", f"{tag}/"))
    return [re.sub(re.escape(tag), "TAG", str(x)) for x in t]


@pytest.mark.parametrize("kind", ["kvcore", "etcd"])
def test_etcdctl_through_proxy_equals_direct(stacks, kind):
    members, _, proxy = stacks[kind]
    direct = f"127.0.0.1:{members[1].port}"
    via_proxy = transcript(proxy, direct, "tagviaproxy")
    assert via_proxy == transcript(direct, direct, "tagdirect")
    assert "locked" in via_proxy[8] and "seen" in via_proxy[9]


def test_kvcore_proxy_equals_etcd_proxy(stacks):
    kv = stacks["kvcore"]
    et = stacks["etcd"]
    a = transcript(kv[2], f"127.0.0.1:{kv[0][1].port}", "tagcompare")
    b = transcript(et[2], f"127.0.0.1:{et[0][1].port}", "tagcompare")
    assert a == b


def test_member_list_is_the_proxy(stacks):
    """grpcproxy/cluster.go: with an advertised URL, the proxy lists only itself."""
    outs = []
    for kind in ("kvcore", "etcd"):
        proxy = stacks[kind][2]
        rc, out, err = ctl(proxy, "member", "list")
        assert rc == 0, err
        outs.append(out.replace(proxy, "PROXY"))
    assert outs[0] == outs[1] == f"0, started, {socket.gethostname()}, , PROXY, false\n"


def test_health_and_metrics(stacks):
    import urllib.request
    proxy = stacks["kvcore"][2]
    assert ctl(proxy, "get", "a")[0] == 0
    for kind in ("kvcore", "etcd"):
        with urllib.request.urlopen(f"http://{stacks[kind][2]}/health", timeout=10) as r:
            assert r.read() == b'{"health":"true","reason":""}'
    with urllib.request.urlopen(f"http://{proxy}/metrics", timeout=10) as r:
        assert b'etcd_grpc_proxy_requests_total{grpc_method="Range"}' in r.read()


def test_serializable_cache_as_etcd_proxy(stacks):
    """A write that bypasses the proxy is not seen by serializable reads through it
    (cached) but is by linearizable ones; a write through the proxy invalidates what
    it overlaps (put, delete of a range, txn). Same outputs through both proxies."""
    outs = {}
    for kind in ("kvcore", "etcd"):
        members, _, proxy = stacks[kind]
        direct = f"127.0.0.1:{members[1].port}"
        t = []

        def sget(key, *more):
            t.append(ctl(proxy, "get", key, "--consistency=s", "--print-value-only", *more))
        ctl(proxy, "put", "cache/a", "1")
        sget("cache/a")
        sget("cache/", "--prefix")
        ctl(direct, "put", "cache/a", "2")
        sget("cache/a")                                   # stale: cached
        sget("cache/", "--prefix")
        t.append(ctl(proxy, "get", "cache/a", "--print-value-only"))   # linearizable
        ctl(proxy, "put", "cache/a", "3")
        sget("cache/a")
        sget("cache/", "--prefix")
        ctl(direct, "put", "cache/b", "4")
        ctl(proxy, "txn", input='\n\nput cache/b 5\n\n')   # the put is the failure op
        sget("cache/", "--prefix")
        ctl(proxy, "txn", input='\nput cache/b 5\n\n\n')
        sget("cache/", "--prefix")
        ctl(proxy, "del", "cache/", "--prefix")
        sget("cache/", "--prefix")
        outs[kind] = t
    assert outs["kvcore"] == outs["etcd"]
    assert outs["kvcore"][2][1] == "1\n" and outs["kvcore"][4][1] == "2\n"
    import urllib.request
    with urllib.request.urlopen(f"http://{stacks['kvcore'][2]}/metrics", timeout=10) as r:
        hits = [l for l in r.read().decode().splitlines()
                if l.startswith("etcd_grpc_proxy_cache_hits_total ")]
    assert hits and float(hits[0].split()[1]) >= 2


def server_watchers(members) -> int:
    """etcd_debugging_mvcc_watcher_total summed over the members."""
    import urllib.request
    total = 0
    for m in members:
        with urllib.request.urlopen(f"http://127.0.0.1:{m.port}/metrics", timeout=10) as r:
            for line in r.read().decode().splitlines():
                if line.startswith("etcd_debugging_mvcc_watcher_total "):
                    total += int(float(line.split()[1]))
    return total


async def held_open(requests):
    """The requests, then no half-close (etcd's proxy ends a half-closed Watch)."""
    import asyncio
    for r in requests:
        yield r
    await asyncio.Event().wait()


def coalesced_watchers(members, proxy: str, streams: int, per: int, key: str) -> tuple:
    """``streams`` client streams of ``per`` watchers of ``key`` through ``proxy``; a
    put -> (watches the cluster gained meanwhile, watchers that got the event)."""
    import asyncio
    import grpc
    from kvcore.api import rpc_pb2
    before = server_watchers(members)

    async def run():
        async with grpc.aio.insecure_channel(proxy) as ch:
            watch = ch.stream_stream("/etcdserverpb.Watch/Watch",
                                     request_serializer=rpc_pb2.WatchRequest.SerializeToString,
                                     response_deserializer=rpc_pb2.WatchResponse.FromString)
            req = rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(
                key=key.encode()))
            calls = [watch(held_open([req] * per)) for _ in range(streams)]
            created = [0] * streams
            for i, c in enumerate(calls):
                while created[i] < per:
                    r = await asyncio.wait_for(c.read(), WAIT)
                    created[i] += r.created
            during = server_watchers(members)
            assert ctl(proxy, "put", key, "x")[0] == 0
            got = 0
            for c in calls:
                ids = set()
                while len(ids) < per:
                    r = await asyncio.wait_for(c.read(), WAIT)
                    if r.events and r.events[0].kv.value == b"x":
                        ids.add(r.watch_id)
                got += len(ids)
                c.cancel()
            return during, got
    during, got = asyncio.run(run())
    return during - before, got


def test_thousand_watchers_one_upstream_watch(stacks):
    """1,000 watchers of one key (10 client streams of 100) cost one watch on the
    cluster, and every one of them gets the event."""
    members, _, proxy = stacks["kvcore"]
    assert coalesced_watchers(members, proxy, 10, 100, "coal") == (1, 1000)


@pytest.mark.parametrize("kind", ["kvcore", "etcd"])
def test_endpoint_in_use_dies(stacks, kind):
    """The proxy uses the first endpoint; killing it breaks neither new requests nor a
    watch opened before. The member is started again afterwards: the stacks are
    shared by the folder's files, which a parallel run may take in any order."""
    members, _, proxy = stacks[kind]
    direct = f"127.0.0.1:{members[2].port}"
    assert ctl(proxy, "put", "fo/a", "1")[0] == 0
    watcher = subprocess.Popen([etcd351.ETCDCTL, f"--endpoints={proxy}", "watch", "fo/w"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               start_new_session=True)
    try:
        time.sleep(1.0)
        members[0].kill9()
        servers.wait_port_free(members[0].port)
        put_after_election(proxy, "fo/b", "2")
        assert ctl(proxy, "get", "fo/b", "--print-value-only") == (0, "2\n", "")
        deadline = time.monotonic() + WAIT
        seen = ""
        while "after-kill" not in seen and time.monotonic() < deadline:
            ctl(direct, "put", "fo/w", "after-kill")
            try:
                seen = watcher_output(watcher, 3.0)
            except TimeoutError:
                pass
        assert "after-kill" in seen
    finally:
        watcher.kill()
        watcher.wait(10)
        members[0].restart()
        servers.leader_of(members, timeout=90.0)


# What the cluster itself answers while it elects a new leader (the killed member may
# have led): a client retries these whether or not a proxy is in between.
# etcd passes on Raft's "raft proposal dropped" for a proposal made while the leader
# hands over or steps down.
ELECTION_ERRORS = ("request timed out", "leader changed", "no leader", "raft proposal dropped")


def put_after_election(proxy: str, key: str, value: str) -> None:
    """The put succeeds through the proxy; until it does, only the cluster's election
    errors are acceptable, never the proxy's (unavailable, connection refused)."""
    deadline = time.monotonic() + WAIT
    while True:
        rc, out, err = ctl(proxy, "put", key, value)
        if rc == 0:
            assert out == "OK\n"
            return
        assert any(e in err for e in ELECTION_ERRORS), err
        assert time.monotonic() < deadline, err


def watcher_output(p, timeout: float) -> str:
    import select
    r, _, _ = select.select([p.stdout], [], [], timeout)
    if not r:
        raise TimeoutError
    return os.read(p.stdout.fileno(), 65536).decode()


@pytest.mark.parametrize("where", ["dead port", "unresolvable host"])
def test_no_reachable_endpoint(tmp_path, where):
    """Both proxies start without a reachable endpoint (nothing listening, or a host
    name that does not resolve), report unhealthy with etcd's body and status, and
    fail a client's request on its deadline."""
    import urllib.error
    import urllib.request
    dead = (f"127.0.0.1:{servers.free_port()}" if where == "dead port"   # nothing there
            else "no-such-host.invalid:2379")
    outs = []
    for kind in ("kvcore", "etcd"):
        proxy, addr = start_proxy(kind, str(tmp_path), [], endpoints=dead)
        try:
            with pytest.raises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(f"http://{addr}/health", timeout=10)
            get = subprocess.run([etcd351.ETCDCTL, f"--endpoints={addr}",
                                  "--command-timeout=2s", "get", "a"],
                                 capture_output=True, text=True, timeout=WAIT)
            # Whether the client's or the proxy's deadline fires first varies (through
            # etcd's proxy too): only the error's text is compared.
            outs.append((e.value.code, e.value.read(), get.returncode,
                         get.stderr.splitlines()[-1].endswith("context deadline exceeded")))
        finally:
            proxy.terminate()
            proxy.wait(10)
    assert outs[0] == outs[1] == (503, b'{"health":"false","reason":"GET ERROR:context '
                                       b'deadline exceeded"}\n', 1,
                                       True)


def test_watch_half_close_ends_the_call(stacks):
    """etcd's proxy, unlike its server, ends a Watch call the client half-closes."""
    import asyncio
    import grpc
    from kvcore.api import rpc_pb2

    async def status(addr):
        async with grpc.aio.insecure_channel(addr) as ch:
            watch = ch.stream_stream("/etcdserverpb.Watch/Watch",
                                     request_serializer=rpc_pb2.WatchRequest.SerializeToString,
                                     response_deserializer=rpc_pb2.WatchResponse.FromString)
            req = rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=b"hc"))
            call = watch(iter([req]))
            try:
                async for _ in call:
                    pass
            except grpc.aio.AioRpcError:
                pass
            return await asyncio.wait_for(call.code(), WAIT), await call.details()
    got = [asyncio.run(status(stacks[k][2])) for k in ("kvcore", "etcd")]
    assert got[0] == got[1] == (grpc.StatusCode.UNKNOWN, "context canceled")


def test_keepalives_of_one_lease_from_many_streams(stacks):
    """20 streams keep one lease alive at once through the proxy: each gets its answer
    (kvcore's proxy sends them up as one); a half-closed stream ends as through etcd's
    proxy."""
    import asyncio
    import grpc
    from kvcore.api import rpc_pb2

    async def run(addr):
        async with grpc.aio.insecure_channel(addr) as ch:
            grant = ch.unary_unary("/etcdserverpb.Lease/LeaseGrant",
                                   request_serializer=rpc_pb2.LeaseGrantRequest.SerializeToString,
                                   response_deserializer=rpc_pb2.LeaseGrantResponse.FromString)
            ka = ch.stream_stream("/etcdserverpb.Lease/LeaseKeepAlive",
                                  request_serializer=rpc_pb2.LeaseKeepAliveRequest.SerializeToString,
                                  response_deserializer=rpc_pb2.LeaseKeepAliveResponse.FromString)
            lid = (await grant(rpc_pb2.LeaseGrantRequest(TTL=60), timeout=WAIT)).ID
            req = rpc_pb2.LeaseKeepAliveRequest(ID=lid)
            calls = [ka(held_open([req])) for _ in range(20)]
            answers = [await asyncio.wait_for(c.read(), WAIT) for c in calls]
            for c in calls:
                c.cancel()
            closed = ka(iter([req]))
            # Whether its answer comes before the end varies, through etcd's proxy too.
            [r async for r in _until_end(closed)]
            return ([(a.ID == lid, a.TTL) for a in answers], closed.code_, closed.details_)
    outs = [asyncio.run(run(stacks[k][2])) for k in ("kvcore", "etcd")]
    assert outs[0] == outs[1]
    assert outs[0][0] == [(True, 60)] * 20


async def _until_end(call):
    import grpc
    try:
        async for r in call:
            yield r
    except grpc.aio.AioRpcError:
        pass
    call.code_, call.details_ = await call.code(), await call.details()


def test_metrics_addr(stacks, tmp_path):
    """--metrics-addr serves /metrics on an interface of its own, as etcd's proxy."""
    import urllib.request
    for kind in ("kvcore", "etcd"):
        mport = servers.free_port()
        proxy, _ = start_proxy(kind, str(tmp_path), stacks[kind][0][1:],
                               (f"--metrics-addr=http://127.0.0.1:{mport}",))
        try:
            deadline = time.monotonic() + WAIT
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics",
                                                timeout=5) as r:
                        body = r.read().decode()
                    break
                except OSError:
                    assert time.monotonic() < deadline
                    time.sleep(0.1)
            assert "etcd_grpc_proxy_watchers_coalescing_total" in body, kind
        finally:
            proxy.terminate()
            proxy.wait(10)


def test_tls_on_both_sides(tmp_path):
    """Clients reach the proxy over TLS (--cert-file/--key-file) and the proxy reaches
    a TLS member (--cacert), as etcd's proxy flags say."""
    from tests import tlscerts
    pki = tlscerts.make_pki(str(tmp_path / "pki"))
    m = servers.start_kvcore(str(tmp_path / "m.etcd"), scheme="https",
                             extra=("--cert-file", pki.server_cert, "--key-file",
                                    pki.server_key),
                             ctl_args=("--cacert", pki.ca))
    proxy = None
    try:
        proxy, addr = start_proxy("kvcore", str(tmp_path), [m], (
            f"--cacert={pki.ca}", f"--cert-file={pki.server_cert}",
            f"--key-file={pki.server_key}"))
        tls = (f"--cacert={pki.ca}",)
        assert ctl(addr, *tls, "put", "t", "1") == (0, "OK\n", "")
        assert ctl(addr, *tls, "get", "t", "--print-value-only") == (0, "1\n", "")
        assert ctl(addr, "get", "t")[0] != 0          # plain text is refused
    finally:
        if proxy is not None:
            proxy.terminate()
            proxy.wait(10)
        m.stop()


def test_request_over_the_send_limit(stacks):
    """A request past the proxy's --max-send-bytes (1.5 MiB) but within what it may
    receive (2 MiB) is refused by the proxy before it goes up, with grpc-go's words and
    the size of the message it would have sent."""
    outs = {}
    for kind in ("kvcore", "etcd"):
        outs[kind] = [ctl(stacks[kind][2], "put", "big-send", input="x" * n)
                      for n in (1_500_000, 1_600_000)]
    assert outs["etcd"][0] == (0, "OK\n", "")
    assert "trying to send message larger than max (1600014 vs. 1572864)" in outs["etcd"][1][2]
    assert outs["kvcore"] == outs["etcd"]


def test_response_over_the_receive_limit(stacks, tmp_path):
    """A response past the proxy's --max-recv-bytes: refused in grpc-go's words."""
    outs = {}
    for kind in ("kvcore", "etcd"):
        members, _, addr = stacks[kind]
        ctl(addr, "put", "big-recv", "x" * 10_000)
        proc, small = start_proxy(kind, str(tmp_path), members,
                                  ("--max-send-bytes=2048", "--max-recv-bytes=4096"))
        try:
            # the response's size varies with the cluster's revision and ids
            outs[kind] = [re.sub(r"\(\d+ vs", "(N vs", str(ctl(small, "get", "big-recv", *flags)))
                          for flags in ((), ("--consistency=s",))]
        finally:
            proc.terminate()
            proc.wait(10)
    assert "grpc: received message larger than max (N vs. 4096)" in outs["etcd"][0]
    assert outs["kvcore"] == outs["etcd"]


def test_receive_limit_below_the_send_limit_is_refused():
    outs = []
    for argv in ([sys.executable, "-m", "kvcore", "grpc-proxy"], [etcd351.ETCD, "grpc-proxy"]):
        port = servers.free_port()
        p = subprocess.run([*argv, "start", "--endpoints=127.0.0.1:1",
                            f"--listen-addr=127.0.0.1:{port}", "--max-recv-bytes=4096"],
                           capture_output=True, text=True, timeout=WAIT)
        outs.append((p.returncode, p.stderr.splitlines()[-1] if p.stderr else ""))
    assert outs[0] == outs[1] == (1, "gRPC message recv limit (4096 bytes) must be greater "
                                     "than send limit (1572864 bytes)")
