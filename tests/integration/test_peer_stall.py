"""A peer that takes the connection and then stops reading: the lane's write gives
up after WRITE_TIMEOUT (etcd's ConnWriteTimeout) and dials again, instead of waiting
for ever while heartbeats queue behind it (a member left leaderless for good)."""
import asyncio
import types

from kvcore.raft.types import Entry, Message, MsgApp, MsgHeartbeat
from kvcore.server import peer
from kvcore.server.peer import PeerTransport
from tests import servers

CLUSTER = 0x1234


def test_a_peer_that_stops_reading_is_dialed_again(tmp_path):
    async def main():
        connections = []

        async def stalled_peer(reader, writer):
            await reader.readexactly(len(peer.MAGIC) + peer._HELLO.size)
            writer.write(bytes([peer.OK]))
            await writer.drain()
            connections.append(writer)      # keep it open; never read again

        port = servers.free_port()
        server = await asyncio.start_server(stalled_peer, "127.0.0.1", port)
        t = PeerTransport(
            2, CLUSTER, step=lambda m: None, unreachable=lambda pid: None,
            snapshot_status=lambda *a: None, snapshot_source=None,
            snapshot_dir=str(tmp_path), members_info=lambda: {},
            is_removed=lambda i: False, on_removed=lambda: None, tls=None)
        t.set_members([types.SimpleNamespace(id=1, peer_urls=[f"http://127.0.0.1:{port}"])])
        big = Entry(term=1, index=1, data=b"x" * 256 * 1024)
        loop = asyncio.get_running_loop()
        end = loop.time() + 4 * peer.WRITE_TIMEOUT + 20
        try:
            # Enough appends to fill the socket buffers, then heartbeats behind them,
            # until the lane has dialed a second time (bounded).
            while len(connections) < 3 and loop.time() < end:
                t.send([Message(MsgApp, to=1, frm=2, term=1, entries=[big])] * 8 +
                       [Message(MsgHeartbeat, to=1, frm=2, term=1)])
                await asyncio.sleep(0.05)
        finally:
            await t.close()
            for w in connections:
                w.close()
            server.close()
        return len(connections)

    # The first dial of each lane (messages and appends) plus at least one re-dial.
    assert asyncio.run(main()) >= 3
