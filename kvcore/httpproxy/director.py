"""Which client URLs the v2 proxy sends to (etcd's httpproxy director): the list
``urls()`` returns, fetched at start and every ``refresh`` seconds (sooner while
it is empty); an endpoint that failed is left out for ``failure_wait`` seconds."""
from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

log = logging.getLogger("kvcore.httpproxy")


class Endpoint:
    def __init__(self, url: str, director: "Director"):
        self.url = url
        self.available = True
        self._director = director

    def failed(self) -> None:
        if not self.available:
            return
        self.available = False
        log.info("marked endpoint %s unavailable", self.url)
        asyncio.get_running_loop().call_later(self._director.failure_wait, self._back)

    def _back(self) -> None:
        self.available = True
        log.info("marked endpoint %s available", self.url)


class Director:
    def __init__(self, urls: Callable[[], Awaitable[list]], failure_wait: float,
                 refresh: float):
        self._urls = urls
        self.failure_wait = failure_wait
        self.refresh = refresh
        self._eps: list[Endpoint] = []
        self._task = None

    async def start(self) -> None:
        await self._refresh()
        self._task = asyncio.get_running_loop().create_task(self._loop())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def endpoints(self) -> list[Endpoint]:
        return [e for e in self._eps if e.available]

    def all(self) -> list[Endpoint]:
        return list(self._eps)

    async def _refresh(self) -> None:
        urls = await self._urls()
        if not urls:
            log.info("no available endpoints")
            return
        old = {e.url: e for e in self._eps}
        self._eps = [old.get(u) or Endpoint(u, self) for u in urls]

    async def _loop(self) -> None:
        while True:
            # etcd retries every second while it knows no endpoint
            await asyncio.sleep(self.refresh if self._eps else 1.0)
            try:
                await self._refresh()
            except Exception as e:     # keep the last list; try again next round
                log.warning("failed to refresh the proxy endpoints: %s", e)
