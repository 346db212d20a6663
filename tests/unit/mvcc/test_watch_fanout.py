"""The batched watch fan-out: one revision's responses to many watchers of a stream
leave as one batch (one frame), each response byte-for-byte what the
one-by-one path sends, filters and prev_kv honoured per watcher."""
from kvcore.api import kv_pb2, rpc_pb2
from kvcore.ipc import framing
from kvcore.lease.lessor import Lessor
from kvcore.mvcc.kvops import KVApplier
from kvcore.mvcc.store import KVStore
from kvcore.mvcc.watch import WatchHub, WatchStream, event_bytes, watch_response
from kvcore.storage.backend import Backend

HDR = b"\x18\x07"   # a stand-in ResponseHeader


class BatchOut:
    def __init__(self, window=64):
        self.credit = window
        self.frames = []    # ("msg", bytes) or ("batch", [bytes])

    def can_send(self):
        return self.credit > 0

    def send(self, payload):
        self.credit -= 1
        self.frames.append(("msg", payload))

    def send_batch(self, payloads):
        self.credit -= 1
        self.frames.append(("batch", framing.split_batch(framing.pack_batch(payloads))))


def _create(ws, out, **kw):
    ws.on_message(rpc_pb2.WatchRequest(
        create_request=rpc_pb2.WatchCreateRequest(**kw)).SerializeToString())
    return rpc_pb2.WatchResponse.FromString(out.frames.pop()[1]).watch_id


def test_fan_out_is_one_batch_per_stream_per_revision(tmp_path):
    b = Backend(str(tmp_path / "db"), map_size=64 << 20)
    store = KVStore(b)
    kv = KVApplier(store, Lessor(b, 1))
    hub = WatchHub(store, lambda rev: HDR, 1 << 20)

    def write(fn):
        with b.begin_write() as txn:
            w = store.write(txn)
            fn(w)
            w.end()
        with b.begin_read() as rtxn:
            hub.notify(rtxn, w.begin_rev + 1, w.changes)
        return w.begin_rev + 1, w.changes

    write(lambda w: kv.put(w, rpc_pb2.PutRequest(key=b"k", value=b"old")))
    out = BatchOut()
    ws = WatchStream(hub, out)
    plain = [_create(ws, out, key=b"k") for _ in range(200)]     # more than STREAM_WINDOW
    prev = _create(ws, out, key=b"k", prev_kv=True)
    noput = _create(ws, out, key=b"k", filters=[rpc_pb2.WatchCreateRequest.NOPUT])
    prefix = _create(ws, out, key=b"k", range_end=b"l")
    out.credit = credit0 = 64     # the client took the created responses

    rev, changes = write(lambda w: kv.put(w, rpc_pb2.PutRequest(key=b"k", value=b"new")))
    assert out.credit == credit0 - 1
    [(kind, msgs)] = out.frames
    assert kind == "batch"
    c = changes[0]
    old = kv_pb2.KeyValue(key=b"k", value=b"old", create_revision=2, mod_revision=2,
                          version=1).SerializeToString()
    want = {wid: watch_response(HDR, wid, [event_bytes(c.kind, c.kv, None)])
            for wid in plain + [prefix]}
    want[prev] = watch_response(HDR, prev, [event_bytes(c.kind, c.kv, old)])
    got = {rpc_pb2.WatchResponse.FromString(m).watch_id: m for m in msgs}
    assert got == want          # NOPUT watcher got nothing, the rest exactly theirs
    assert noput not in got
    assert all(rpc_pb2.WatchResponse.FromString(m).header.revision == 7 for m in msgs)
    assert rev == 3

    # A stream without room: every watcher of it falls back to catching up, none lost.
    out.frames.clear()
    out.credit = 0
    write(lambda w: kv.put(w, rpc_pb2.PutRequest(key=b"k", value=b"x")))
    assert out.frames == [] and len(hub.unsynced) == 203
    out.credit = 64
    with b.begin_read() as rtxn:
        assert hub.catch_up(rtxn) is False
    [(kind, msgs)] = out.frames     # caught up in one batch too
    assert kind == "batch" and out.credit == 63
    caught = [rpc_pb2.WatchResponse.FromString(m) for m in msgs]
    assert sorted(r.watch_id for r in caught) == sorted(plain + [prev, prefix])
    assert all(r.events[0].kv.value == b"x" for r in caught)
    b.close()
