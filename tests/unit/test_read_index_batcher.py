"""The worker's read-index batching: never reuses a request older than the read,
shares one request among the reads of a loop turn, and keeps at most
max_inflight requests out."""
import asyncio
import random

from kvcore.worker.reads import ReadIndexBatcher


class Core:
    """Stands in for the core: records when each request was sent."""

    def __init__(self, loop):
        self.loop = loop
        self.sent = []          # futures, in the order asked
        self.clock = 0          # advances on every event below

    def ask(self):
        fut = self.loop.create_future()
        self.clock += 1
        fut.sent_at = self.clock
        self.sent.append(fut)
        return fut


def test_reads_of_a_turn_share_one_request_sent_after_them():
    async def main():
        core = Core(asyncio.get_running_loop())
        b = ReadIndexBatcher(core.ask, max_inflight=2)
        r1, r2 = b.get(), b.get()
        assert core.sent == [] and r1 is not r2        # sent at the end of the turn
        await asyncio.sleep(0)
        assert len(core.sent) == 1
        r3 = b.get()                                    # a later turn: a new request
        await asyncio.sleep(0)
        assert len(core.sent) == 2
        r4 = b.get()                                    # two out: it waits
        await asyncio.sleep(0)
        assert len(core.sent) == 2
        core.sent[1].set_result(b"2")
        await asyncio.sleep(0)
        assert r3.result() == b"2" and not r1.done()
        assert len(core.sent) == 3 and not r4.done()   # r4 did not reuse request 2
        core.sent[0].set_exception(RuntimeError("no leader"))
        core.sent[2].set_result(b"3")
        await asyncio.sleep(0)
        assert isinstance(r1.exception(), RuntimeError) and isinstance(r2.exception(), RuntimeError)
        assert r4.result() == b"3"

    asyncio.run(main())


def test_random_schedules_never_serve_a_read_with_an_older_request():
    """Reads and answers in random order: every read is answered by a request sent
    after it arrived, at most max_inflight are out, and every read is answered."""
    async def main(seed):
        rng = random.Random(seed)
        core = Core(asyncio.get_running_loop())
        limit = rng.randint(1, 4)
        b = ReadIndexBatcher(core.ask, max_inflight=limit)
        reads = []                   # (arrived at, future)
        for _ in range(200):
            if rng.random() < 0.5:
                core.clock += 1
                reads.append((core.clock, b.get()))
            open_reqs = [f for f in core.sent if not f.done()]
            assert len(open_reqs) <= limit
            if open_reqs and rng.random() < 0.4:
                f = rng.choice(open_reqs)
                f.set_result(f.sent_at)
            await asyncio.sleep(0)
        while any(not f.done() for f in core.sent) or any(not r.done() for _, r in reads):
            for f in core.sent:
                if not f.done():
                    f.set_result(f.sent_at)
            await asyncio.sleep(0)
        for arrived, r in reads:
            assert r.result() > arrived      # the request was sent after the read came

    for seed in range(50):
        asyncio.run(main(seed))
