"""The concurrency services' internals on a real core run in this process (no workers):
what the gRPC tests cannot reach through a worker."""
import asyncio


from kvcore.api import rpc_pb2, v3lock_pb2 as lpb
from kvcore.concurrency.client import HubWatch, LocalClient, prefix_end
from kvcore.server import config
from kvcore.server.core import Core
from tests.servers import free_port

WAIT = 30.0


async def _with_core(tmp_path, body):
    peer = free_port()
    cfg = config.parse(["--name", "c", "--data-dir", str(tmp_path / "c.etcd"),
                        "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                        "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                        "--initial-cluster", f"c=http://127.0.0.1:{peer}"], env={})
    core = Core(cfg)
    core.open()
    try:
        await core.start_peer()
        for _ in range(int(WAIT / 0.01)):
            if core.raft.lead:
                break
            await asyncio.sleep(0.01)
        assert core.raft.lead
        await body(core, LocalClient(core, core.services["kv"], core.services["lease"]))
    finally:
        await core.close()


def test_prefix_end():
    assert prefix_end(b"a/") == b"a0"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff\xff") == b"\x00"


def test_hub_watch_reader_slower_than_writes_gets_every_event_once(tmp_path):
    """More changes than the watcher's window before it reads: the hub falls back to
    history for it and resumes once next() makes room; nothing lost or repeated."""
    async def body(core, c):
        w = HubWatch(core, b"hw/", prefix_end(b"hw/"), core.store.current_rev + 1)
        first = core.store.current_rev + 1
        n = HubWatch.WINDOW * 3
        put = core.unary["/etcdserverpb.KV/Put"]
        for i in range(n):
            await put(rpc_pb2.PutRequest(key=b"hw/%d" % (i % 5), value=b"%d" % i)
                      .SerializeToString())
        revs = []
        while len(revs) < n:
            wr = await asyncio.wait_for(w.next(), WAIT)
            revs.extend(ev.kv.mod_revision for ev in wr.events)
        w.close()
        assert revs == list(range(first, first + n))
        assert not core.watch_hub.count()
    asyncio.run(_with_core(tmp_path, body))


def test_cancelled_lock_waiter_leaves_the_queue(tmp_path):
    """etcd deletes the key of a waiter whose caller went away; so does kvcore when
    the call's future is cancelled."""
    async def body(core, c):
        async def keys():
            r = await c.get(rpc_pb2.RangeRequest(key=b"q/", range_end=b"q0", keys_only=True))
            return [kv.key for kv in r.kvs]

        lock = core.unary["/v3lockpb.Lock/Lock"]
        la, lb = await c.session_lease(0), await c.session_lease(0)   # new 60 s leases
        held = lpb.LockResponse.FromString(
            await lock(lpb.LockRequest(name=b"q", lease=la).SerializeToString()))
        waiter = lock(lpb.LockRequest(name=b"q", lease=lb).SerializeToString())
        for _ in range(int(WAIT / 0.01)):
            if len(await keys()) == 2:
                break
            await asyncio.sleep(0.01)
        assert sorted(await keys()) == sorted([held.key, b"q/%x" % lb])
        assert not waiter.done()
        waiter.cancel()
        for _ in range(int(WAIT / 0.01)):
            if await keys() == [held.key]:
                break
            await asyncio.sleep(0.01)
        assert await keys() == [held.key]
        assert not core.watch_hub.count()
    asyncio.run(_with_core(tmp_path, body))
