"""LeaseKeepAlive streams against etcd 3.5.1: many keep-alives in flight on one
stream (more than the core's stream window), leases switched on the same stream,
and a revoked lease answered with TTL 0; the answers compared field by field
(lease IDs chosen by the test, so both servers see the same requests)."""
import grpc
import pytest

from kvcore.api import rpc_pb2, rpc_pb2_grpc
from kvcore.ipc import framing
from tests import servers


@pytest.fixture(scope="module", params=["grpcio", pytest.param("native", marks=pytest.mark.native_engine)])
def pair(request, tmp_path_factory):
    with servers.kvcore_and_etcd(tmp_path_factory.mktemp("compat-ka"),
                                 ("--grpc-engine", request.param)) as p:
        yield p


def _scenario(srv) -> list:
    ch = grpc.insecure_channel(srv.endpoint.replace("http://", ""))
    try:
        lease = rpc_pb2_grpc.LeaseStub(ch)
        for lid, ttl in ((0x1111, 60), (0x2222, 90), (0x3333, 30)):
            lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(ID=lid, TTL=ttl), timeout=10)
        # a key on the lease to revoke, so that the revoke moves the revision on
        rpc_pb2_grpc.KVStub(ch).Put(rpc_pb2.PutRequest(key=b"k", value=b"v", lease=0x3333),
                                    timeout=10)
        n = 3 * framing.STREAM_WINDOW
        order = [0x1111] * n + [0x2222, 0x1111, 0x2222, 0x9999, 0x3333]
        answers = []
        # All requests sent before any answer is read: the server may not hold
        # answers back for credit the client never returns while it sends.
        call = lease.LeaseKeepAlive(iter(rpc_pb2.LeaseKeepAliveRequest(ID=i) for i in order),
                                    timeout=30)
        for _ in order:
            r = next(call)
            answers.append((r.ID, r.TTL, r.header.revision))
        call.cancel()
        lease.LeaseRevoke(rpc_pb2.LeaseRevokeRequest(ID=0x3333), timeout=10)
        after = lease.LeaseKeepAlive(iter([rpc_pb2.LeaseKeepAliveRequest(ID=0x3333),
                                           rpc_pb2.LeaseKeepAliveRequest(ID=0x1111)]),
                                     timeout=30)
        for _ in range(2):
            r = next(after)
            answers.append((r.ID, r.TTL, r.header.revision))
        after.cancel()
        return answers
    finally:
        ch.close()


def test_keepalive_answers_match_etcd(pair):
    kv, et = pair
    got, want = _scenario(kv), _scenario(et)
    n = 3 * framing.STREAM_WINDOW
    assert got == want
    # what the comparison covers: the TTL after renewal, an unknown lease's 0, and
    # after the revoke (its key deleted: one more revision) TTL 0 while another lease
    # still renews
    assert want[:n] == [(0x1111, 60, 2)] * n
    assert want[n:] == [(0x2222, 90, 2), (0x1111, 60, 2), (0x2222, 90, 2), (0x9999, 0, 2),
                        (0x3333, 30, 2), (0x3333, 0, 3), (0x1111, 60, 3)]
