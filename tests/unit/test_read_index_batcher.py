"""The worker's read-index batching: never reuses a request older than the read."""
import asyncio

from kvcore.worker.reads import ReadIndexBatcher


def test_reads_wait_for_a_request_issued_after_they_arrived():
    async def main():
        loop = asyncio.get_running_loop()
        sent = []

        def ask():
            fut = loop.create_future()
            sent.append(fut)
            return fut

        b = ReadIndexBatcher(ask)
        first = b.get()                 # sent at once
        second, third = b.get(), b.get()  # arrive while the first is in flight
        assert len(sent) == 1 and second is not third and second is not first
        sent[0].set_result(b"1")
        await asyncio.sleep(0)
        assert first.result() == b"1"
        assert len(sent) == 2 and not second.done()  # a new request went out for them
        sent[1].set_result(b"2")
        await asyncio.sleep(0)
        assert second.result() == b"2" and third.result() == b"2"
        fourth = b.get()                # nothing in flight: sent at once
        assert len(sent) == 3
        sent[2].set_exception(RuntimeError("no leader"))
        await asyncio.sleep(0)
        assert isinstance(fourth.exception(), RuntimeError)

    asyncio.run(main())
