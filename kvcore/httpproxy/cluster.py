"""The cluster behind the v2 proxy, learned from its peer URLs as etcd's proxy does
(GetClusterFromRemotePeers): the peers of etcd answer ``GET /members`` on their
peer URL, kvcore's answer the members request of their peer transport. The peer
URLs last seen are kept in ``<data-dir>/proxy/cluster`` (etcd's file and format)
and used instead of --initial-cluster on the next start."""
from __future__ import annotations

import asyncio
import json
import logging
import os
import ssl
import urllib.request
from typing import Optional

from kvcore.server.peer import fetch_members
from kvcore.tls import TLSInfo

log = logging.getLogger("kvcore.httpproxy")


def initial_peer_urls(cluster_file: str, initial_cluster: str) -> list:
    try:
        with open(cluster_file) as f:
            urls = json.load(f)["PeerURLs"]
        log.info("proxy using peer URLS from cluster file",
                 extra={"fields": {"peer-urls": urls, "cluster-file": cluster_file}})
        return urls
    except FileNotFoundError:
        pass
    urls = sorted(u for part in initial_cluster.split(",") if "=" in part
                  for u in [part.split("=", 1)[1]])
    log.info("proxy using peer URLS", extra={"fields": {"peer-urls": urls}})
    return urls


def _http_members(url: str, timeout: float, ctx: Optional[ssl.SSLContext]) -> list:
    with urllib.request.urlopen(url.rstrip("/") + "/members", timeout=timeout,
                                context=ctx) as r:
        return json.loads(r.read())


async def members(peer_urls: list, timeout: float, tls: Optional[TLSInfo]) -> Optional[list]:
    """[{"peerURLs": [...], "clientURLs": [...]}, ...] from the first peer that answers."""
    info = await fetch_members(peer_urls, timeout, tls)     # kvcore peers
    if info is not None:
        return info["members"]
    ctx = tls.client_context() if tls is not None and not tls.empty() else None
    for url in peer_urls:                                   # etcd peers
        try:
            return await asyncio.to_thread(_http_members, url, timeout, ctx)
        except (OSError, ValueError) as e:
            log.warning("failed to get cluster response",
                        extra={"fields": {"address": url + "/members", "error": str(e)}})
    return None


class Cluster:
    """``await client_urls()``: the cluster's client URLs now ([] if no peer answers);
    keeps the peer URLs and the cluster file up to date."""

    def __init__(self, data_dir: str, initial_cluster: str, timeout: float,
                 tls: Optional[TLSInfo]):
        os.makedirs(data_dir, exist_ok=True)
        self.file = os.path.join(data_dir, "cluster")
        self.peer_urls = initial_peer_urls(self.file, initial_cluster)
        self._timeout = timeout
        self._tls = tls

    async def client_urls(self) -> list:
        ms = await members(self.peer_urls, self._timeout, self._tls)
        if ms is None:
            log.warning("failed to get cluster from remote peers",
                        extra={"fields": {"peer-urls": self.peer_urls}})
            return []
        peers = sorted(u for m in ms for u in m.get("peerURLs") or ())
        clients = sorted(u for m in ms for u in m.get("clientURLs") or ())
        tmp = self.file + ".bak"
        with open(tmp, "w") as f:
            json.dump({"PeerURLs": peers}, f, separators=(",", ":"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.file)
        if peers != self.peer_urls:
            log.info("proxy updated peer URLs",
                     extra={"fields": {"from": self.peer_urls, "to": peers}})
        self.peer_urls = peers
        return clients
