"""Requests that reach a member while it knows no leader wait for one, kvcore against
etcd 3.5.1: a put and a lease grant sent during an outage are answered once a leader is
elected again (etcd's raft takes no proposal without a leader); a linearizable range
waits too and is then answered "etcdserver: leader changed", as etcd's read loop
answers the reads it held (clientv3 asks again). With no leader by the request
timeout, the put fails with "context deadline exceeded" (gRPC Unknown: it was never
proposed) and the range with "etcdserver: request timed out".

Two members with a short election timeout (request timeout 5 s + 2 x 0.5 s); one is
killed -9, so the other has no quorum and (pre-vote) no leader."""
from __future__ import annotations

import concurrent.futures
import time

import grpc

from kvcore.api import rpc_pb2, rpc_pb2_grpc
from tests import etcd351, servers

FAST_ELECTION = ("--heartbeat-interval", "50", "--election-timeout", "500")


def _outcome(fn, *args, **kw):
    try:
        r = fn(*args, timeout=20, **kw)
        return ("ok", [kv.value for kv in getattr(r, "kvs", ())])
    except grpc.RpcError as e:
        return (e.code().name, e.details())


def _scenario(members) -> dict:
    leader = servers.leader_of(members)
    survivor = next(m for m in members if m is not leader)
    ch = grpc.insecure_channel(f"127.0.0.1:{survivor.port}")
    kv, lease = rpc_pb2_grpc.KVStub(ch), rpc_pb2_grpc.LeaseStub(ch)
    out = {}
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        leader.kill9()
        servers.wait_leaderless(survivor.port)
        put = pool.submit(_outcome, kv.Put, rpc_pb2.PutRequest(key=b"k", value=b"during"))
        grant = pool.submit(lambda: _outcome(lease.LeaseGrant,
                                             rpc_pb2.LeaseGrantRequest(TTL=60))[0])
        read = pool.submit(_outcome, kv.Range, rpc_pb2.RangeRequest(key=b"other"))
        time.sleep(1.0)
        out["still waiting after 1 s"] = [not f.done() for f in (put, grant, read)]
        leader.restart()       # quorum again: an election, then the answers
        out["put during the outage"] = put.result()[0]
        out["lease grant during the outage"] = grant.result()
        out["linearizable range during the outage"] = read.result()
        out["the put is there"] = _outcome(kv.Range, rpc_pb2.RangeRequest(key=b"k"))
        # No leader until the request timeout: the answers at the deadline.
        servers.leader_of(members)
        leader.kill9()
        servers.wait_leaderless(survivor.port)
        put = pool.submit(_outcome, kv.Put, rpc_pb2.PutRequest(key=b"k", value=b"late"))
        read = pool.submit(_outcome, kv.Range, rpc_pb2.RangeRequest(key=b"k"))
        out["put with no leader in time"] = put.result()
        out["linearizable range with no leader in time"] = read.result()
        out["serializable range meanwhile"] = _outcome(
            kv.Range, rpc_pb2.RangeRequest(key=b"k", serializable=True))
    ch.close()
    return out


def test_requests_wait_for_a_leader_as_in_etcd(tmp_path):
    got = servers.on_both(tmp_path, _scenario, 2, FAST_ELECTION, etcd351.ETCD)
    assert got["kvcore"] == got["etcd"], got
    # What both answered, spelled out.
    k = got["kvcore"]
    assert k["still waiting after 1 s"] == [True, True, True]
    assert k["put during the outage"] == "ok"
    assert k["lease grant during the outage"] == "ok"
    assert k["linearizable range during the outage"] == \
        ("UNAVAILABLE", "etcdserver: leader changed")
    assert k["the put is there"] == ("ok", [b"during"])
    assert k["put with no leader in time"] == ("UNKNOWN", "context deadline exceeded")
    assert k["linearizable range with no leader in time"] == \
        ("UNAVAILABLE", "etcdserver: request timed out")
    assert k["serializable range meanwhile"] == ("ok", [b"during"])
