"""Zero-filling the live WAL segment ahead of the writer, off the request path.

Segments are preallocated with posix_fallocate (as etcd's are), which leaves
*unwritten* extents: the first fdatasync after appending into one must also commit
the extent conversion to the filesystem journal. Into blocks already written (with
zeros) and synced, an append's fdatasync is a pure data flush (on ext4 about 0.12 ms
against 0.17 ms). A ``ZeroFiller`` keeps such a zone ahead of the write offset: its
own thread and fd write zeros in pieces, one fdatasync per chunk, until a watermark
``ahead`` bytes past the write offset (never past the segment end); the WAL pokes it
when the write offset nears the watermark, and points it at each new segment.
A zero tail is what a preallocated segment holds anyway, so the format is unchanged.
The zeros go with O_DIRECT where the filesystem allows it (whole 4 KiB blocks): no
dirty pages of the filler's for the writer's fdatasync to flush or wait on.

Large appends gain nothing from it: a 1 MiB append converts its extents in one
journal update (~50 us against milliseconds of data), while the zeros under it double
the bytes that go to disk, plus the filler's syncs. So the filler stands down while
the writer's byte rate is high (``high_rate``, e.g. a stream of 1 MiB puts; small puts
append ~100 bytes each and stay far below it): it writes nothing, the WAL stops poking
(``trigger`` is NEVER), and the filler's thread looks at the rate every ``recheck``
seconds, resuming once it falls below ``low_rate`` (hysteresis).
The rate is measured off the hot path: the write offset's advance between the
filler's own wake-ups (pokes, or the timer while it stands down).

Safety: zeros never land at or behind bytes the WAL has handed out. Before each
piece the filler publishes its start (``claim``) and then re-reads the WAL's offset;
the WAL publishes its new offset and then, if it passed ``claim``, waits for the
piece to finish (``poke``). One of the two always sees the other (Dekker's order,
both under the GIL); the filler then skips ahead of the writer instead of writing.
"""
from __future__ import annotations

import errno
import mmap
import os
import threading
import time

CHUNK = 1 << 20       # bytes between the filler's fdatasyncs
PIECE = 128 << 10     # one pwrite, the longest the writer may wait when it catches up
AHEAD = 8 << 20       # the watermark's lead over the write offset
NEVER = 1 << 62
BLOCK = 4096          # O_DIRECT's unit: pieces start and end on it
DIRECT = True         # O_DIRECT zeros (the probe bench/probes/experiments/wal_fill compares)
HIGH_RATE = 16 << 20  # bytes/s of appends above which the filler stands down
LOW_RATE = 4 << 20    # ... and below which it resumes
RECHECK = 0.25        # seconds between looks at the rate while standing down
SAMPLE = 1 << 20      # a rate needs this many bytes of advance, or recheck/2 seconds


class ZeroFiller:
    """``offset()`` -> (segment seq, write offset) of the WAL being filled."""

    def __init__(self, offset, ahead: int = AHEAD, chunk: int = CHUNK,
                 piece: int = PIECE, direct: bool | None = None,
                 high_rate: float = HIGH_RATE, low_rate: float = LOW_RATE,
                 recheck: float = RECHECK) -> None:
        self._offset = offset
        self.high_rate, self.low_rate, self.recheck = high_rate, low_rate, recheck
        self.standing_down = False   # the writer's byte rate is high: no zeros
        self.stood_down = 0          # times it stood down (tests, metrics)
        self._base = (-1, 0, 0.0)    # (seq, offset, monotonic time) the rate starts from
        self.ahead = ahead
        self.chunk = max(BLOCK, min(chunk, ahead // 4) // BLOCK * BLOCK)
        self.piece = max(BLOCK, min(piece, self.chunk) // BLOCK * BLOCK)
        self.direct = (DIRECT if direct is None else direct) and hasattr(os, "O_DIRECT")
        self._zeros = memoryview(mmap.mmap(-1, self.piece))   # page-aligned zeros
        self._path = ""
        self._lock = threading.Lock()     # held while a piece is written, and to switch
        self._wake = threading.Event()
        self.claim = NEVER        # start of the piece being written (NEVER: none)
        self.trigger = NEVER      # the WAL pokes once its offset passes this
        self.mark = 0             # zeros written and synced below this offset
        self._fd = -1
        self._seq = -1
        self._limit = 0
        self._stop = False
        self.synced_bytes = 0     # zeros written and synced since start (tests, metrics)
        self.error: OSError | None = None   # the last failure (the filler then idles)
        self._thread = threading.Thread(target=self._run, name="wal-zero-fill", daemon=True)
        self._thread.start()

    def switch(self, path: str, seq: int, start: int, limit: int) -> None:
        """Fill segment ``seq`` at ``path`` from ``start`` (its write offset, or where
        zeros already reach) up to ``limit`` (the segment size). Call it BEFORE the WAL
        publishes the new segment's offset and seq, and ``poke`` after."""
        fd = self._open(path)
        with self._lock:          # waits for a piece in the old segment
            old, self._fd, self._path = self._fd, fd, path
            self._seq, self._limit, self.mark = seq, limit, start
            self.trigger = -1 if fd >= 0 else NEVER   # the WAL's next offset pokes
        if old >= 0:
            os.close(old)

    def _open(self, path: str) -> int:
        """-> an fd for the filler's writes (O_DIRECT when allowed), -1 if none."""
        flags = os.O_WRONLY | os.O_CLOEXEC
        try:
            if self.direct:
                try:
                    return os.open(path, flags | os.O_DIRECT)
                except OSError as e:
                    if e.errno != errno.EINVAL:
                        raise
                    self.direct = False   # e.g. tmpfs: buffered zeros, synced as well
            return os.open(path, flags)
        except OSError as e:      # no filling for this segment; the WAL goes on
            self.error = e
            return -1

    def poke(self, end: int) -> None:
        """The WAL's offset is now ``end`` (already published): wait out a piece being
        written at or below it, and let the filler move its watermark."""
        if end > self.claim:
            with self._lock:
                pass
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait(self.recheck if self.standing_down else None)
            self._wake.clear()
            if self._stop:
                return
            self._fill()

    def _fill(self) -> None:
        """Write and sync chunks until the watermark is ``ahead`` past the writer.
        Invariant: a claim is never below ``trigger``, so a WAL offset passing a claim
        also passes the trigger and pokes."""
        while not self._stop:
            with self._lock:
                fd, seq, limit, mark = self._fd, self._seq, self._limit, self.mark
            at = self._where(seq)
            if at is None:
                return            # the WAL is not on this segment (yet): a poke follows
            if self._rate_says_stand_down(seq, at):
                with self._lock:
                    if self._seq == seq:
                        self.trigger = NEVER   # no pokes; the timer looks again
                return
            mark = -(-max(mark, at) // BLOCK) * BLOCK   # never behind the writer
            limit = limit // BLOCK * BLOCK
            if mark >= min(limit, at + self.ahead):
                with self._lock:
                    if self._seq == seq:
                        self.mark = max(self.mark, mark)
                        self.trigger = NEVER if mark >= limit else mark - self.ahead // 2
                return            # far enough ahead (or at the end): sleep until poked
            try:
                reached = self._write(fd, seq, mark, min(limit, mark + self.chunk))
                if reached is None:
                    continue      # the segment changed under us
                with self._lock:  # (a switch closes the old fd: not during the sync)
                    if self._seq != seq:
                        continue
                    if reached > mark:
                        os.fdatasync(fd)
                        self.synced_bytes += reached - mark
                    self.mark = max(self.mark, reached)
            except OSError as e:  # e.g. a full disk: the writer's own writes will say so
                with self._lock:
                    if e.errno == errno.EINVAL and self.direct and self._seq == seq:
                        self.direct = False   # O_DIRECT refused after all: buffered
                        fd, self._fd = self._fd, self._open(self._path)
                        os.close(fd)
                        continue
                    if self._seq == seq:
                        self.error = e
                        self.trigger = NEVER   # idle until the next segment
                return

    def _write(self, fd: int, seq: int, start: int, stop: int):
        """Zeros over [start, stop) in pieces, each claimed before it is written;
        -> the offset reached (short of ``stop`` when the writer got there first),
        None when the segment was switched."""
        at = start
        while at < stop:
            n = min(self.piece, stop - at)
            with self._lock:
                if self._seq != seq:
                    return None
                self.claim = at          # publish the claim, then look at the writer
                try:
                    pos = self._where(seq)
                    if pos is None or pos > at:
                        return at        # overtaken: the next round starts past it
                    os.pwrite(fd, self._zeros[:n], at)
                finally:
                    self.claim = NEVER
            at += n
        return at

    def _rate_says_stand_down(self, seq: int, at: int) -> bool:
        """Update ``standing_down`` from the writer's byte rate since the last sample
        (only the filler's thread calls this)."""
        now = time.monotonic()
        bseq, boff, bt = self._base
        if bseq != seq:           # a new segment: its rate starts here
            self._base = (seq, at, now)
            return self.standing_down
        moved, dt = at - boff, now - bt
        if moved < SAMPLE and dt < self.recheck / 2:
            return self.standing_down   # too little to judge: keep the current state
        rate = moved / dt if dt > 0 else float("inf")
        if rate >= self.high_rate and not self.standing_down:
            self.standing_down = True
            self.stood_down += 1
        elif rate <= self.low_rate:
            self.standing_down = False
        self._base = (seq, at, now)
        return self.standing_down

    def _where(self, seq: int):
        """The WAL's write offset in segment ``seq``, or None if it is elsewhere."""
        s, off = self._offset()
        return off if s == seq else None

    def close(self) -> None:
        self._stop = True
        self._wake.set()
        self._thread.join()
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
