"""A follower's lease requests to a leader that does not answer in time: each caller
gets its timeout, and the requests the dropped connection still held end without
asyncio's "Future exception was never retrieved" (an error line per request in the
member's log, seen under etcd's functional tester when the leader was blackholed)."""
import asyncio
import gc

import pytest

from kvcore.server import peer_lease


def test_requests_to_a_silent_leader_time_out_without_unretrieved_errors():
    async def main():
        loop = asyncio.get_running_loop()
        unhandled = []
        loop.set_exception_handler(lambda _loop, ctx: unhandled.append(ctx["message"]))

        async def silent_leader(reader, writer):
            await reader.read()          # takes the requests, never answers

        server = await asyncio.start_server(silent_leader, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        fwd = peer_lease.LeaseForwarder(lambda _lid: asyncio.open_connection("127.0.0.1",
                                                                              port))
        calls = [fwd.call(7, peer_lease.RENEW, b"", 0.2) for _ in range(3)]
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert all(isinstance(r, (asyncio.TimeoutError, ConnectionError)) for r in results)
        server.close()
        await asyncio.sleep(0.05)
        gc.collect()
        await asyncio.sleep(0)
        return unhandled

    assert asyncio.run(main()) == []
