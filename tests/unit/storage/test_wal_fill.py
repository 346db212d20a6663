"""The WAL's zero-filler (kvcore/storage/walfill.py): zeros written and synced ahead of
the write offset, never at or behind bytes the WAL handed out, to the segment end and
no further, following a segment cut and a reopen."""
from __future__ import annotations

import os
import time

import pytest

from kvcore import _ext
from kvcore.storage import walwriter_py
from kvcore.storage.walfill import BLOCK, NEVER, ZeroFiller
from kvcore.storage.wal import WAL, HardState

DATA = 0xAB


def block_up(n: int) -> int:
    """Zeros start at the next whole block (O_DIRECT's unit) past the writer."""
    return -(-n // BLOCK) * BLOCK


def wait_for(cond, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def data_file(path, size: int) -> int:
    """A file of non-zero bytes: every byte the filler zeroes shows."""
    with open(path, "wb") as f:
        f.write(bytes([DATA]) * size)
    return os.open(path, os.O_RDWR)


DIRECT = pytest.mark.parametrize("direct", [True, False], ids=["o_direct", "page_cache"])


@DIRECT
def test_watermark_runs_ahead_and_stops_at_the_end(tmp_path, direct):
    path = tmp_path / "seg"
    size = 1 << 20
    data_file(path, size)
    pos = {"seq": 7, "off": 1000}
    f = ZeroFiller(lambda: (pos["seq"], pos["off"]), ahead=256 << 10, chunk=64 << 10,
                   piece=16 << 10, direct=direct)
    try:
        f.switch(str(path), 7, 1000, size)
        f.poke(1000)
        wait_for(lambda: f.mark >= 1000 + (256 << 10), what="the watermark")
        assert f.trigger > pos["off"]        # idle: the writer's next bytes do not poke
        buf = path.read_bytes()
        assert buf[:BLOCK] == bytes([DATA]) * BLOCK   # the writer's block is left alone
        assert not any(buf[BLOCK:f.mark])
        mark1 = f.mark
        assert buf[mark1:] == bytes([DATA]) * (size - mark1)   # whole chunks, then stop
        # the writer moves on: the filler follows, up to the segment end and no further
        pos["off"] = size - 5000
        f.poke(pos["off"])
        wait_for(lambda: f.mark == size, what="the segment end")
        assert f.trigger > size
        buf = path.read_bytes()
        assert len(buf) == size
        assert buf[size - 5000:block_up(size - 5000)] == bytes([DATA]) * (
            block_up(size - 5000) - (size - 5000))
        assert not any(buf[block_up(size - 5000):])
        assert buf[mark1:size - 5000] == bytes([DATA]) * (size - 5000 - mark1), \
            "zeros behind the write offset"
        assert f.error is None and f.direct == direct
    finally:
        f.close()


@DIRECT
def test_a_writer_racing_the_filler_keeps_every_byte(tmp_path, direct):
    """The writer appends non-zero bytes as fast as it can with a filler of tiny
    pieces just ahead of it: no written byte may turn to zero."""
    path = tmp_path / "seg"
    size = 4 << 20
    fd = data_file(path, 0)
    os.posix_fallocate(fd, 0, size)
    pos = {"seq": 1, "off": 0}
    f = ZeroFiller(lambda: (pos["seq"], pos["off"]), ahead=64 << 10, chunk=16 << 10,
                   piece=4 << 10, direct=direct, high_rate=float("inf"))   # always racing
    try:
        f.switch(str(path), 1, 0, size)
        rec = bytes([DATA]) * 777
        off = 0
        deadline = time.monotonic() + 5
        while off + len(rec) <= size and time.monotonic() < deadline:
            pos["off"] = end = off + len(rec)   # publish, then poke, then write
            if end > f.trigger:
                f.poke(end)
            os.pwrite(fd, rec, off)
            off = end
        wait_for(lambda: f.mark >= min(size, off + (64 << 10)), what="the filler to settle")
        buf = path.read_bytes()
        assert buf[:off] == bytes([DATA]) * off
        assert f.synced_bytes > 0
    finally:
        f.close()
        os.close(fd)


@DIRECT
def test_a_writer_passing_a_claim_it_did_not_see_is_not_zeroed(tmp_path, direct):
    """The other order of the race, made to happen: the writer publishes and writes
    past a piece just after the filler claimed it (so it did not wait): the filler's
    look at the offset must see it and skip ahead rather than zero those bytes."""
    path = tmp_path / "seg"
    size = 256 << 10
    fd = data_file(path, 0)
    os.posix_fallocate(fd, 0, size)
    pos = {"off": 0, "raced": 0}

    def where():
        if f.claim != NEVER and pos["raced"] < 3:
            end = f.claim + 5000
            os.pwrite(fd, bytes([DATA]) * (end - pos["off"]), pos["off"])
            pos["off"] = end
            pos["raced"] += 1
        return 1, pos["off"]

    f = ZeroFiller(where, ahead=64 << 10, chunk=16 << 10, piece=4 << 10, direct=direct)
    try:
        f.switch(str(path), 1, 0, size)
        f.poke(0)
        wait_for(lambda: pos["raced"] == 3 and f.mark >= pos["off"] + (64 << 10),
                 what="the filler")
        buf = path.read_bytes()
        assert buf[:pos["off"]] == bytes([DATA]) * pos["off"]
        assert not any(buf[block_up(pos["off"]):f.mark])
    finally:
        f.close()
        os.close(fd)


def test_the_filler_stands_down_while_appends_stream_and_resumes_after(tmp_path):
    """1 MiB appends far above ``high_rate``: the filler stops writing zeros under
    them (instead of zeroing every byte the writer is about to write) and the WAL
    stops poking; once the writer idles, the filler fills ahead again."""
    path = tmp_path / "seg"
    size, ahead, big = 40 << 20, 1 << 20, 1 << 20
    fd = data_file(path, 0)
    os.posix_fallocate(fd, 0, size)
    pos = {"seq": 1, "off": 0}
    f = ZeroFiller(lambda: (pos["seq"], pos["off"]), ahead=ahead, chunk=256 << 10,
                   piece=64 << 10, high_rate=1 << 20, low_rate=64 << 10, recheck=0.2)
    try:
        f.switch(str(path), 1, 0, size)
        f.poke(0)
        wait_for(lambda: f.mark >= ahead, what="the first watermark")
        before = f.synced_bytes
        rec, off = bytes([DATA]) * big, 0
        for _ in range(32):                     # 32 MiB, as fast as pwrite goes
            pos["off"] = end = off + big        # publish, then poke, then write
            if end > f.trigger:
                f.poke(end)
            os.pwrite(fd, rec, off)
            off = end
        wait_for(lambda: f.stood_down >= 1, what="the filler to stand down")
        streamed_zeros = f.synced_bytes - before
        assert streamed_zeros < off // 4, "zeros written under the stream"
        wait_for(lambda: not f.standing_down and f.mark >= off + ahead,
                 what="filling to resume once the writer idles")
        buf = path.read_bytes()
        assert buf[:off] == rec * (off // big)
        assert not any(buf[off:f.mark])
        # and with small appends well under the rate it never stands down
        n = f.stood_down
        for _ in range(200):
            pos["off"] = end = off + 100
            if end > f.trigger:
                f.poke(end)
            os.pwrite(fd, bytes([DATA]) * 100, off)
            off = end
            time.sleep(0.001)
        assert f.stood_down == n and not f.standing_down
    finally:
        f.close()
        os.close(fd)


def entries(lo, hi, size=300):
    return [(i, 1, 0, bytes([i % 251 + 1]) * size) for i in range(lo, hi)]


def test_wal_fills_across_cuts_and_after_a_reopen(tmp_path):
    seg = 256 << 10
    d = str(tmp_path / "wal")
    w = WAL(d, segment_bytes=seg, fill_ahead=64 << 10)
    w.open(1, 2)
    for lo in range(1, 2001, 50):   # 2000 entries of ~320 bytes: a few cuts
        w.save(HardState(1, 1, lo), entries(lo, lo + 50))
    assert len(w._segments) >= 3
    f = w.filler
    # The WAL pokes only once its offset passes the trigger (half the lead short of
    # the watermark): after its last writes the lead may be anywhere from half the
    # ahead to all of it, depending on when the filler last ran.
    wait_for(lambda: f._seq == w._seq and f.mark >= min(seg, w._offset + (32 << 10)),
             what="the filler on the new segment")
    live = w.current_path()
    w.close()
    buf = open(live, "rb").read()
    assert not any(buf[w._offset:])
    # reopen: everything reads back, and filling resumes from the write offset
    w2 = WAL(d, segment_bytes=seg, fill_ahead=64 << 10)
    got = w2.open()
    assert [e[0] for e in got.entries] == list(range(1, 2001))
    assert got.entries[-1][3] == entries(2000, 2001)[0][3]
    at = w2._offset
    wait_for(lambda: w2.filler.mark >= min(seg, at + (64 << 10)), what="filling after reopen")
    w2.save(None, entries(2001, 2101))
    w2.close()
    assert [e[0] for e in WAL(d, segment_bytes=seg).open().entries] == list(range(1, 2101))


def test_wal_with_the_writer_threads_and_a_filler(tmp_path):
    """The write path a member uses: reserve() on one thread, pwrite + fdatasync on the
    writer thread (compiled and plain), the filler on its own; the log reads back."""
    for impl in (walwriter_py, _ext.compiled("walwriter")):
        d = str(tmp_path / impl.__name__.rsplit(".", 1)[-1])
        w = WAL(d, segment_bytes=1 << 20, fill_ahead=32 << 10)
        w.open(1, 2)
        writer = impl.WalWriter()
        try:
            for i in range(1, 1500):
                job = w.reserve(HardState(1, 1, i), entries(i, i + 1, 200), allow_cut=False)
                if job is None:
                    w.save(HardState(1, 1, i), entries(i, i + 1, 200))
                    continue
                writer.submit(*job, True)
                while writer.finish() == -1:
                    time.sleep(0.0002)
        finally:
            writer.close()
            w.close()
        got = WAL(d, segment_bytes=1 << 20).open()
        assert [e[0] for e in got.entries] == list(range(1, 1500))
        assert got.state.commit == 1499
