"""kvcore/ipc/framing.py: frames of every size come out whole and in order however
the stream is cut, and what send() writes parses back to the same frames."""
import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from kvcore.ipc import framing as fr


class Recorder(fr.FrameProtocol):
    def __init__(self):
        super().__init__()
        self.frames = []

    def frame_received(self, call_id, method, kind, payload):
        assert type(payload) is bytes
        self.frames.append((call_id, method, kind, payload))


class Transport:
    def __init__(self):
        self.writes = []

    def write(self, data):
        self.writes.append(data)

    def writelines(self, parts):
        self.writes.extend(parts)

    def is_closing(self):
        return False


def encode(frames) -> bytes:
    return b"".join(fr.HEADER.pack(len(p), c, m, k) + p for c, m, k, p in frames)


sizes = st.sampled_from([0, 1, 10, fr.LARGE - 1, fr.LARGE, fr.LARGE + 1, 300_000])
frame = st.builds(lambda c, m, k, n, b: (c, m, k, bytes([b]) * n),
                  st.integers(0, 2**32 - 1), st.integers(0, 0xFFFF), st.integers(0, 13), sizes,
                  st.integers(0, 255))


def in_loop(fn):
    """Run fn() inside a running loop (FrameProtocol takes the current loop)."""
    async def run():
        return fn()
    return asyncio.run(run())


def feed(frames, cuts):
    return in_loop(lambda: _feed(frames, cuts))


def _feed(frames, cuts):
    stream = encode(frames)
    p = Recorder()
    points = sorted({c % (len(stream) + 1) for c in cuts})
    last = 0
    for c in points + [len(stream)]:
        if c > last:
            p.data_received(stream[last:c])
            last = c
    return p


@settings(max_examples=60, deadline=None)
@given(st.lists(frame, max_size=6), st.lists(st.integers(0, 2**31), max_size=12))
def test_frames_whole_and_in_order_however_cut(frames, cuts):
    p = feed(frames, cuts)
    assert p.frames == frames
    assert not p._buf and p._large is None


def test_large_frame_in_small_chunks_then_small_frames():
    frames = [(1, 2, fr.REQ, bytes(range(256)) * 4096), (2, 2, fr.REQ, b"x"),
              (3, 0, fr.RESP, b"")]
    stream = encode(frames)
    for step in (1, 7, 4096, 219_264, 256_000):
        p = in_loop(Recorder)
        for i in range(0, len(stream), step):
            p.data_received(stream[i:i + step])
        assert p.frames == frames


def test_send_writes_frames_in_order_with_large_payloads_uncopied():
    async def run():
        p = Recorder()
        t = Transport()
        p.connection_made(t)
        big = bytes(300_000)
        frames = [(1, 5, fr.REQ, b"a"), (2, 5, fr.REQ, big), (3, 5, fr.REQ, b"b")]
        for f in frames:
            p.send(*f)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        back = Recorder()
        back.data_received(b"".join(bytes(w) for w in t.writes))
        assert back.frames == frames
        assert len(t.writes) == 3  # "a" + big's header, big itself, then "b"
        assert t.writes[1] is big
    asyncio.run(run())


def test_socketpair_buffers_take_a_large_frame_in_one_write():
    import socket
    with open("/proc/sys/net/core/wmem_max") as f:
        wmem_max = int(f.read())
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with a, b:
        for end in (a, b):
            fr.size_buffers(end)
        # Linux doubles the asked size (bookkeeping) after capping it at wmem_max.
        want = 2 * min(fr.SOCKET_BUFFER, wmem_max)
        assert a.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) == want
        a.setblocking(False)
        frame = fr.HEADER.pack(1 << 20, 1, 2, fr.REQ) + bytes(1 << 20)
        sent = a.send(frame)
        if wmem_max >= fr.SOCKET_BUFFER:
            assert sent == len(frame)
