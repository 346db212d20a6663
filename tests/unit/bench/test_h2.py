"""HTTP/2 and request-encoding pieces (no network)."""
import pytest

import hpack

from bench import workloads
from kvcore.h2client import framing as h2


def test_request_header_block_decodes_with_hpack():
    blk = h2.request_header_block("/etcdserverpb.KV/Range", "127.0.0.1:2379", [("token", "t0k")])
    hdrs = hpack.Decoder().decode(blk)
    assert hdrs == [(":method", "POST"), (":scheme", "http"), (":path", "/etcdserverpb.KV/Range"),
                    (":authority", "127.0.0.1:2379"), ("content-type", "application/grpc"),
                    ("te", "trailers"), ("token", "t0k")]


def test_long_header_values_use_multibyte_lengths():
    v = "x" * 300
    assert hpack.Decoder().decode(h2.encode_headers([("grpc-message", v)])) == [("grpc-message", v)]


def test_header_decoder_cache_follows_the_dynamic_table():
    enc = hpack.Encoder()
    dec = h2.HeaderDecoder()
    seq = [[("grpc-status", "0")], [("grpc-status", "0")], [("grpc-status", "0")],
           [("grpc-status", "14"), ("grpc-message", "down")], [("grpc-status", "0")],
           [("grpc-status", "0")]]
    blocks = [enc.encode(h) for h in seq]
    for blk, want in zip(blocks, seq):
        assert dec.decode(blk) == dict(want)
    # the indexed-only block repeats byte for byte and is served from the cache
    assert blocks[1] == blocks[2]
    assert blocks[1] in dec._cache or blocks[4] in dec._cache


def test_frame_layout():
    f = h2.frame(h2.HEADERS, h2.FLAG_END_HEADERS, 3, b"abc")
    assert f == b"\x00\x00\x03\x01\x04\x00\x00\x00\x03abc"
    assert h2.frame_prefix(h2.DATA, 1, 5) + (7).to_bytes(4, "big") == h2.frame(h2.DATA, 1, 7, b"12345")[:9]
    assert h2.grpc_message(b"xy") == b"\x00\x00\x00\x00\x02xy"


@pytest.mark.parametrize("n,want", [(0, b"\x00"), (1, b"\x02"), (-1, b"\x01"), (63, b"\x7e"),
                                    (64, b"\x80\x01"), (300, b"\xd8\x04")])
def test_varint_key_matches_go_putvarint(n, want):
    k = workloads.varint_key(n, 8)
    assert len(k) == 8 and k.startswith(want) and k[len(want):] == b"\x00" * (8 - len(want))


def test_put_workload_bodies():
    from kvcore.api import rpc_pb2
    wl = workloads.put_workload(8, 256, 10, True, 25)
    assert wl.path == "/etcdserverpb.KV/Put" and len(wl.bodies) == 10
    req = rpc_pb2.PutRequest()
    req.ParseFromString(wl.bodies[3][5:])
    assert req.key == workloads.varint_key(3, 8) and len(req.value) == 256
    wl2 = workloads.put_workload(8, 8, 1000, False, 50, proc=1, nprocs=2)
    assert len(wl2.bodies) == 25


def test_range_and_txn_workloads():
    from kvcore.api import rpc_pb2
    r = rpc_pb2.RangeRequest()
    r.ParseFromString(workloads.range_workload("a", "b", "s").bodies[0][5:])
    assert (r.key, r.range_end, r.serializable) == (b"a", b"b", True)
    t = rpc_pb2.TxnRequest()
    t.ParseFromString(workloads.txn_put_workload(8, 8, 10, 3, 5).bodies[0][5:])
    keys = [op.request_put.key for op in t.success]
    assert len(keys) == 3 == len(set(keys))
    with pytest.raises(ValueError):
        workloads.txn_put_workload(8, 8, 2, 3, 5)


def test_stream_messages_split_from_shared_and_straddling_data_frames():
    """A server may put many gRPC messages in one DATA frame and split one across
    frames: the load client's stream reader hands each message over once, whole."""
    import asyncio
    from bench.client import Conn, Stream

    class Got(Stream):
        def __init__(self):
            self.msgs = []

        def on_message(self, msg):
            self.msgs.append(bytes(msg))

    msgs = [bytes([i]) * (i * 7 % 40) for i in range(200)]
    wire = b"".join(h2.grpc_message(m) for m in msgs)
    loop = asyncio.new_event_loop()
    try:
        conn = Conn("x", loop=loop)
        got = Got()
        conn.streams[1] = got
        # DATA frames of uneven sizes, several arriving in one read, one read cut mid-frame
        frames, pos = [], 0
        for size in (1, 4, 5, 6, 300, 2, 1000, 3, 5000):
            frames.append(h2.frame(h2.DATA, 0, 1, wire[pos:pos + size]))
            pos += size
        frames.append(h2.frame(h2.DATA, 0, 1, wire[pos:]))
        stream = b"".join(frames)
        conn.got_bytes = True
        for cut in range(0, len(stream), 777):
            conn.data_received(stream[cut:cut + 777])
    finally:
        loop.close()
    assert got.msgs == msgs
