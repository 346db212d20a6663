"""--experimental-initial-corrupt-check: before serving clients, compare this
member's HashKV with its peers' at the same revision, as etcd's CheckInitialHashKV:
a different hash at the same compact revision is corruption and the member does not
start ("... found data inconsistency with peers"); a peer that is behind, compacted
further or unreachable is only reported.

Peers answer over the peer transport (LANE_HASHKV, etcd's /members/hashkv).
"""
from __future__ import annotations

import asyncio
import logging

from kvcore.logs import fields
from kvcore.mvcc.store import CompactedError, FutureRevError
from kvcore.server.peer import fetch_hash_kv

log = logging.getLogger("kvcore.corruption")


class DataInconsistency(Exception):
    pass


def local_hash_kv(ctx, revision: int) -> dict:
    """This member's HashKV at ``revision`` (0 = current), for a peer's check."""
    try:
        h, compact_rev, hash_rev = ctx.read(lambda view: ctx.store.hash_kv(view.txn, revision))
    except FutureRevError:
        return {"error": "future", "member_id": ctx.member_id}
    except CompactedError:
        return {"error": "compacted", "member_id": ctx.member_id}
    return {"hash": h, "compact_revision": compact_rev, "hash_revision": hash_rev,
            "member_id": ctx.member_id}


def serve_peers(core) -> None:
    core.transport.hash_kv = lambda rev: local_hash_kv(core, rev)


async def check_initial(core, timeout: float = 5.0) -> None:
    """Raises DataInconsistency when a peer holds different data at our revision."""
    me = local_hash_kv(core, 0)
    rev, crev = me["hash_revision"], me["compact_revision"]
    local = f"{core.member_id:x}"
    log.info("starting initial corruption check", extra=fields(
        local_member_id=local, timeout=f"{timeout:g}s"))
    members = core.membership.sorted() or core.initial
    peers = [m for m in members if m.id != core.member_id and m.peer_urls]

    async def ask(m):
        for url in m.peer_urls:
            try:
                return m, await fetch_hash_kv(url, rev, timeout, core.cfg.peer_tls)
            except (OSError, asyncio.TimeoutError, ValueError) as e:
                err = e
        return m, {"error": str(err)}

    mismatch = 0
    for m, resp in await asyncio.gather(*(ask(m) for m in peers)):
        peer = {"local_member_id": local, "remote_peer_id": f"{m.id:x}",
                "remote_peer_endpoints": list(m.peer_urls)}
        if "error" in resp:
            why = {"future": "cannot fetch hash from slow remote peer",
                   "compacted": "cannot fetch hash from remote peer; local member is behind"
                   }.get(resp["error"], "failed to get hashKV from remote peer")
            log.warning(why, extra=fields(**peer, error=resp["error"]))
            continue
        if resp["hash"] != me["hash"]:
            if resp["compact_revision"] == crev:
                log.warning("found different hash values from remote peer", extra=fields(
                    **peer, local_member_revision=rev, local_member_compact_revision=crev,
                    local_member_hash=me["hash"], remote_peer_revision=resp["hash_revision"],
                    remote_peer_compact_revision=resp["compact_revision"],
                    remote_peer_hash=resp["hash"]))
                mismatch += 1
            else:
                log.warning("found different compact revision values from remote peer",
                            extra=fields(**peer, local_member_compact_revision=crev,
                                         remote_peer_compact_revision=resp["compact_revision"]))
    if mismatch:
        raise DataInconsistency(f"{local} found data inconsistency with peers")
    log.info("initial corruption checking passed; no corruption",
             extra=fields(local_member_id=local))
