"""Corruption checks between members, as etcd 3.5's.

--experimental-initial-corrupt-check: before serving clients, compare this member's
HashKV with its peers' at the same revision (etcd's CheckInitialHashKV): a different
hash at the same compact revision is corruption and the member does not start
("... found data inconsistency with peers"); a peer that is behind, compacted
further or unreachable is only reported.

--experimental-corrupt-check-time T: every T the leader does the same with its
followers (etcd's checkHashKV); a follower ahead of the leader, compacted further,
or with another hash at the leader's compact revision gets a CORRUPT alarm, which
then refuses writes cluster-wide ("etcdserver: corrupt cluster").

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
            "revision": ctx.store.current_rev, "member_id": ctx.member_id}


async def _peer_hashes(core, peers, rev: int, timeout: float) -> list:
    async def ask(m):
        err = None
        for url in m.peer_urls:
            try:
                return m, await fetch_hash_kv(url, rev, timeout, core.cfg.peer_tls)
            except (OSError, asyncio.TimeoutError, ValueError) as e:
                err = e
        return m, {"error": str(err)}
    return await asyncio.gather(*(ask(m) for m in peers))


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

    mismatch = 0
    for m, resp in await _peer_hashes(core, peers, rev, timeout):
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


async def check_peers(core, propose_alarm, timeout: float = 5.0) -> list[int]:
    """The leader's periodic check (etcd's checkHashKV) -> member IDs alarmed."""
    me = local_hash_kv(core, 0)
    h, rev, crev = me["hash"], me["hash_revision"], me["compact_revision"]
    peers = [m for m in core.membership.sorted()
             if m.id != core.member_id and m.peer_urls and not m.is_learner]
    answers = await _peer_hashes(core, peers, rev, timeout)
    me2 = local_hash_kv(core, 0)
    alarmed: list[int] = []

    def mismatch(member_id: int, why: str, **kw) -> None:
        log.warning(why, extra=fields(**kw))
        if not alarmed:   # etcd raises one alarm per pass
            alarmed.append(member_id)

    if me2["hash"] != h and me2["hash_revision"] == rev and me2["compact_revision"] == crev:
        mismatch(core.member_id, "found hash mismatch", revision_1=rev,
                 compact_revision_1=crev, hash_1=h, revision_2=me2["hash_revision"],
                 compact_revision_2=me2["compact_revision"], hash_2=me2["hash"])
    checked = 0
    for m, resp in answers:
        if "error" in resp:
            continue
        checked += 1
        peer = f"{m.id:x}"
        if resp["revision"] > me2["hash_revision"]:
            mismatch(m.id, "revision from follower must be less than or equal to leader's",
                     leader_revision=me2["hash_revision"], follower_revision=resp["revision"],
                     follower_peer_id=peer)
        if resp["compact_revision"] > me2["compact_revision"]:
            mismatch(m.id, "compact revision from follower must be less than or equal to "
                     "leader's", leader_compact_revision=me2["compact_revision"],
                     follower_compact_revision=resp["compact_revision"], follower_peer_id=peer)
        if resp["compact_revision"] == crev and resp["hash"] != h:
            mismatch(m.id, "same compact revision then hashes must match",
                     leader_compact_revision=crev, leader_hash=h,
                     follower_compact_revision=resp["compact_revision"],
                     follower_hash=resp["hash"], follower_peer_id=peer)
    for member_id in alarmed:
        await propose_alarm(member_id)
    log.info("finished peer corruption check", extra=fields(number_of_peers_checked=checked))
    return alarmed


def start_periodic(core, interval: float, propose_alarm) -> asyncio.Task:
    """Every ``interval`` while this member leads, check the followers."""
    async def run():
        log.info("enabled corruption checking", extra=fields(
            local_member_id=f"{core.member_id:x}", interval=f"{interval:g}s"))
        while True:
            await asyncio.sleep(interval)
            if not core.raft.is_leader:
                continue
            try:
                await check_peers(core, propose_alarm)
            except Exception as e:   # noqa: BLE001 - a failed pass is retried next time
                log.warning("failed to check hash KV", extra=fields(error=str(e)))
    return asyncio.get_running_loop().create_task(run())
