"""The gateway's TCP proxy (etcd's proxy/tcpproxy): each accepted connection goes to
the next active endpoint, round robin (SRV records: the lowest priority first); an
endpoint that refuses a dial is set aside for --retry-delay, then dialled again by
the monitor and taken back when it answers. Bytes are copied both ways until either
side closes, as io.Copy does."""
from __future__ import annotations

import asyncio
import logging
import random

from kvcore import logs

log = logging.getLogger(__name__)


class Remote:
    def __init__(self, host: str, port: int, priority: int = 0, weight: int = 0):
        self.host, self.port = host, port
        self.priority, self.weight = priority, weight
        self.addr = f"{host}:{port}"
        self.active = True


class TCPProxy:
    def __init__(self, remotes: list, retry_delay: float):
        self.remotes = remotes
        self.retry_delay = retry_delay
        self._picks = 0

    def pick(self):
        active = [r for r in self.remotes if r.active]
        if not active:
            return None
        best = min(r.priority for r in active)
        weighted = [r for r in active if r.priority == best and r.weight > 0]
        if weighted:
            return random.choices(weighted, [r.weight for r in weighted])[0]
        for _ in range(len(self.remotes)):
            r = self.remotes[self._picks % len(self.remotes)]
            self._picks += 1
            if r.active:
                return r
        return None

    async def serve(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        up = None
        while up is None:
            remote = self.pick()
            if remote is None:
                break
            try:
                up = await asyncio.open_connection(remote.host, remote.port)
            except OSError as e:
                remote.active = False
                log.warning("deactivated endpoint", extra=logs.fields(
                    address=remote.addr, interval=_seconds(self.retry_delay),
                    error=_dial_error(remote, e)))
        if up is None:
            cw.close()
            return
        ur, uw = up
        await asyncio.gather(_copy(cr, uw), _copy(ur, cw))

    async def monitor(self) -> None:
        while True:
            await asyncio.sleep(self.retry_delay)
            for r in self.remotes:
                if not r.active:
                    asyncio.ensure_future(self._try_reactivate(r))

    async def _try_reactivate(self, r: Remote) -> None:
        try:
            _, w = await asyncio.open_connection(r.host, r.port)
            w.close()
        except OSError as e:
            log.warning("failed to activate endpoint (stay inactive for another interval)",
                        extra=logs.fields(address=r.addr,
                                          interval=_seconds(self.retry_delay),
                                          error=_dial_error(r, e)))
            return
        r.active = True
        log.info("activated", extra=logs.fields(address=r.addr))


async def _copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    """One direction; at its end both sides close (as etcd's serve does)."""
    try:
        while True:
            data = await src.read(65536)
            if not data:
                break
            dst.write(data)
            await dst.drain()
    except (OSError, asyncio.IncompleteReadError):
        pass
    finally:
        dst.close()


def _dial_error(r: Remote, e: OSError) -> str:
    """Go's net.Dial error text."""
    why = (e.strerror or str(e)).lower()
    return f"dial tcp {r.addr}: connect: {why}"


def _seconds(d: float):
    """A duration as etcd's gateway logs it (zap's production encoder: seconds)."""
    return int(d) if d == int(d) else d
