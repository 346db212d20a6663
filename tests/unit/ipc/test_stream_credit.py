"""Stream credit between the core and a worker: messages the core pushes (a watch
fan-out) take credit and the worker returns it; a reply to a client's request
(S_REPLY, a keep-alive's answer) takes none and returns none. A batch takes, and
gets back, one credit per message in it."""
import asyncio

from kvcore.ipc import framing as fr
from kvcore.ipc.client import CoreClient, _Stream
from kvcore.ipc.server import CoreStream


class _Conn:
    def __init__(self):
        self.frames = []

    def send(self, call_id, method, kind, payload):
        self.frames.append((kind, payload))


def test_core_side_reply_takes_no_credit():
    conn = _Conn()
    st = CoreStream(conn, 7, 3)
    for _ in range(fr.STREAM_WINDOW + 5):
        st.reply(b"r")
    assert st.credit == fr.STREAM_WINDOW and st.can_send()
    st.send(b"m")
    st.send_packed(fr.pack_batch([b"a", b"b"]))
    assert st.credit == fr.STREAM_WINDOW - 3     # the batch: a credit per message
    assert [k for k, _ in conn.frames] == [fr.S_REPLY] * (fr.STREAM_WINDOW + 5) + [
        fr.S_MSG, fr.S_BATCH]


def _sent_frames(client) -> list:
    out, pos, frames = bytes(client._out), 0, []
    while pos < len(out):
        length, call_id, method, kind = fr.HEADER.unpack_from(out, pos)
        frames.append((call_id, kind, out[pos + fr.HSIZE:pos + fr.HSIZE + length]))
        pos += fr.HSIZE + length
    return frames


def test_worker_side_returns_credit_for_pushed_messages_only():
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        client = CoreClient(on_lost=lambda: None)
        st = client._streams[5] = _Stream()
        handed = []
        st.direct = lambda m: handed.append(m) or True   # the engine takes it at once
        client.frame_received(5, 2, fr.S_REPLY, b"reply")
        assert _sent_frames(client) == []
        client.frame_received(5, 2, fr.S_MSG, b"event")
        assert _sent_frames(client) == [(5, fr.S_CREDIT, fr.pack_credit(1))]
        assert handed == [b"reply", b"event"]
        client._out.clear()
        client.frame_received(5, 2, fr.S_BATCH, fr.pack_batch([b"a", b"b", b"c"]))
        assert _sent_frames(client) == [(5, fr.S_CREDIT, fr.pack_credit(3))]
        assert handed[-1].count == 3
        # the engine's buffer is full: the reply waits in the stream's queue, in order
        st.direct = lambda m: False
        client.frame_received(5, 2, fr.S_REPLY, b"later")
        assert st.queue.get_nowait() == (fr.S_REPLY, b"later")
    finally:
        loop.close()
        asyncio.set_event_loop(None)
