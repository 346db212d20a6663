"""A stream that a fan-out leaves over its window falls behind for LAG_RESYNC: the
revisions of that time reach each of its watchers merged in one response (events in
revision order, header revision the newest); a stream within its window gets one
response per revision at once."""
from unittest import mock

from kvcore.api import rpc_pb2
from kvcore.ipc import framing
from kvcore.lease.lessor import Lessor
from kvcore.mvcc import watch as watch_mod
from kvcore.mvcc.kvops import KVApplier
from kvcore.mvcc.store import KVStore
from kvcore.mvcc.watch import WatchHub, WatchStream
from kvcore.storage.backend import Backend


def _header(rev):
    return rpc_pb2.ResponseHeader(revision=rev).SerializeToString()


class Out:
    """An IPC stream as the core's: a credit per message, the client reads at once
    (credit comes back) when the test says."""

    def __init__(self, window):
        self.window = self.credit = window
        self.got = []

    def can_send(self):
        return self.credit > 0

    def send(self, payload):
        self.credit -= 1
        self.got.append(rpc_pb2.WatchResponse.FromString(payload))

    def send_packed(self, payload):
        msgs = framing.split_batch(payload)
        self.credit -= len(msgs)
        self.got.extend(rpc_pb2.WatchResponse.FromString(m) for m in msgs)

    def read_all(self):
        self.credit = self.window


def _run(tmp_path, watchers, window):
    b = Backend(str(tmp_path / "db"), map_size=64 << 20)
    store = KVStore(b)
    kv = KVApplier(store, Lessor(b, 1))
    hub = WatchHub(store, _header, 1 << 20)
    clock = [100.0]
    wakes = []
    hub.wake_later = wakes.append
    out = Out(window)
    ws = WatchStream(hub, out)
    for _ in range(watchers):
        ws.on_message(rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(
            key=b"k")).SerializeToString())
    out.got.clear()
    out.read_all()      # the client took the created responses

    def put(i):
        with b.begin_write() as txn:
            w = store.write(txn)
            kv.put(w, rpc_pb2.PutRequest(key=b"k", value=b"%d" % i))
            w.end()
        with b.begin_read() as rtxn:
            hub.notify(rtxn, w.begin_rev + 1, w.changes)
        out.read_all()      # the client keeps reading: credit comes straight back

    def catch_up():
        with b.begin_read() as rtxn:
            return hub.catch_up(rtxn)

    with mock.patch.object(watch_mod, "_now", lambda: clock[0]):
        for i in range(5):
            put(i)
            assert catch_up() is False or clock[0] < ws.lag_until
        clock[0] += watch_mod.LAG_RESYNC
        assert catch_up() is False
    b.close()
    return out.got, wakes


def test_stream_over_its_window_merges_the_revisions_of_its_lag(tmp_path):
    got, wakes = _run(tmp_path, watchers=3, window=2)
    # revision 2 went at once (and left the stream over its window); 3..6 merged
    assert wakes == [watch_mod.LAG_RESYNC]
    first, merged = got[:3], got[3:]
    assert [[e.kv.mod_revision for e in r.events] for r in first] == [[2]] * 3
    assert sorted(r.watch_id for r in merged) == [0, 1, 2]
    for r in merged:
        assert [e.kv.mod_revision for e in r.events] == [3, 4, 5, 6]
        assert [e.kv.value for e in r.events] == [b"1", b"2", b"3", b"4"]
        assert r.header.revision == 6


def test_stream_within_its_window_gets_one_response_per_revision(tmp_path):
    got, wakes = _run(tmp_path, watchers=3, window=4)
    assert wakes == []
    assert [[e.kv.mod_revision for e in r.events] for r in got] == [
        [rev] for rev in range(2, 7) for _ in range(3)]
    assert all(r.header.revision == r.events[0].kv.mod_revision for r in got)


def test_lag_left_tells_an_early_timer_how_long_to_wait_again(tmp_path):
    """The loop's timer may fire before the monotonic clock reaches a stream's
    lag_until (its clock is cached per loop pass): lag_left says how much is left, so
    the timer waits again instead of leaving the stream behind for good."""
    b = Backend(str(tmp_path / "db"), map_size=64 << 20)
    hub = WatchHub(KVStore(b), _header, 1 << 20)
    clock = [100.0]
    wakes = []
    hub.wake_later = wakes.append
    ws = WatchStream(hub, Out(1))
    with mock.patch.object(watch_mod, "_now", lambda: clock[0]):
        hub._fell_behind(ws)
        assert wakes == [watch_mod.LAG_RESYNC]
        clock[0] += watch_mod.LAG_RESYNC - 0.004      # the timer fired 4 ms early
        assert not ws.can_send()
        assert abs(hub.lag_left() - 0.004) < 1e-9
        clock[0] += 0.004
        assert hub.lag_left() == 0 and not hub.lagging
        assert ws.can_send()
    b.close()
