"""clientv3.WithRequireLeader (request metadata hasleader=true) on a member that has
lost its leader, kvcore against etcd 3.5.1: a unary call, and a stream at its start,
fail at once with UNAVAILABLE "etcdserver: no leader"; a watch and a lease keep-alive
stream that began with a leader end with that error a few election timeouts later; a
call without the metadata is served as before (a serializable read).

Two members with a short election timeout; one is killed -9, so the other has no
quorum and (pre-vote) no leader."""
from __future__ import annotations

import time

import grpc

from kvcore.api import rpc_pb2, rpc_pb2_grpc
from tests import etcd351, servers

FAST_ELECTION = ("--heartbeat-interval", "50", "--election-timeout", "500")
REQUIRE = (("hasleader", "true"),)


def _outcome(fn, *args, **kw):
    try:
        fn(*args, timeout=10, **kw)
        return "ok"
    except grpc.RpcError as e:
        return (e.code().name, e.details())


def _stream_end(responses, deadline: float):
    """How a response stream ended: (code name, details), or "still open"."""
    try:
        for _ in responses:
            if time.monotonic() > deadline:
                return "still open"
        return "ended OK"
    except grpc.RpcError as e:
        if e.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            return "still open"
        return (e.code().name, e.details())


def _scenario(members) -> dict:
    leader = servers.leader_of(members)
    survivor = next(m for m in members if m is not leader)
    ch = grpc.insecure_channel(f"127.0.0.1:{survivor.port}")
    kv, watch = rpc_pb2_grpc.KVStub(ch), rpc_pb2_grpc.WatchStub(ch)
    lease = rpc_pb2_grpc.LeaseStub(ch)
    out = {"with a leader": _outcome(kv.Range, rpc_pb2.RangeRequest(key=b"k"), metadata=REQUIRE)}
    lid = lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=60), timeout=10).ID
    # Streams opened while there is a leader (20 s deadline: longer than the wait).
    create = rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=b"k"))
    watching = watch.Watch(iter([create]), metadata=REQUIRE, timeout=20)
    first = next(watching)
    out["watch created"] = first.created

    def keepalives():
        yield rpc_pb2.LeaseKeepAliveRequest(ID=lid)
        time.sleep(30)   # the stream stays open from our side
    kept = lease.LeaseKeepAlive(keepalives(), metadata=REQUIRE, timeout=20)
    out["keepalive ttl"] = next(kept).TTL
    leader.kill9()
    # Until the member knows no leader (an election timeout), then the outcomes.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if _outcome(kv.Range, rpc_pb2.RangeRequest(key=b"k", serializable=True),
                    metadata=REQUIRE) != "ok":
            break
        time.sleep(0.05)
    out["unary"] = _outcome(kv.Range, rpc_pb2.RangeRequest(key=b"k", serializable=True),
                            metadata=REQUIRE)
    out["without the metadata"] = _outcome(
        kv.Range, rpc_pb2.RangeRequest(key=b"k", serializable=True))
    out["new stream"] = _stream_end(watch.Watch(iter([create]), metadata=REQUIRE, timeout=5),
                                    time.monotonic() + 5)
    out["open watch"] = _stream_end(watching, time.monotonic() + 15)
    out["open keepalive"] = _stream_end(kept, time.monotonic() + 15)
    ch.close()
    return out


def test_require_leader_without_a_leader(tmp_path):
    got = servers.on_both(tmp_path, _scenario, 2, FAST_ELECTION, etcd351.ETCD)
    assert got["kvcore"] == got["etcd"], got
    no_leader = ("UNAVAILABLE", "etcdserver: no leader")
    assert got["kvcore"] == {
        "with a leader": "ok", "watch created": True, "keepalive ttl": 60,
        "unary": no_leader, "without the metadata": "ok", "new stream": no_leader,
        "open watch": no_leader, "open keepalive": no_leader}
