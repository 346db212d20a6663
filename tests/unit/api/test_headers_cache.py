"""wire.Headers reuses the last ResponseHeader only while all four fields are the
same; any change gives protobuf's bytes for the new fields."""
from kvcore.api import rpc_pb2, wire


def _want(cid, mid, rev, term):
    return b"\x0a" + bytes([len(b := rpc_pb2.ResponseHeader(
        cluster_id=cid, member_id=mid, revision=rev, raft_term=term).SerializeToString())]) + b


def test_headers_follow_every_field():
    h = wire.Headers()
    seq = [(1, 2, 10, 1), (1, 2, 10, 1), (1, 2, 11, 1), (1, 2, 11, 2), (3, 2, 11, 2),
           (3, 4, 11, 2), (3, 4, 11, 2), (1, 2, 10, 1), (2**64 - 1, 2**63, 2**40, 7)]
    last = None
    for cid, mid, rev, term in seq:
        got = h.get(cid, mid, rev, term)
        assert wire.with_header(got, b"") == _want(cid, mid, rev, term)
        if last is not None and last[0] == (cid, mid, rev, term):
            assert got is last[1]   # reused, not rebuilt
        last = ((cid, mid, rev, term), got)
