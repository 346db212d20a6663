"""Member changes through the v2 API (POST, DELETE and PUT of /v2/members), after
the V2 service checked root access: the request is read as etcd 3.4 reads it
(kvcore/v2store/members_http.py) and the change made with the Cluster service's own
checks and conf change, the one path v3's MemberAdd/Remove/Update take."""
from __future__ import annotations

import logging

from kvcore.api.errors import EtcdError
from kvcore.engine.base import GrpcError
from kvcore.v2store import members_http as mh

log = logging.getLogger("kvcore.v2")


_VALIDATED = (EtcdError.MEMBER_EXIST[1], EtcdError.PEER_URL_EXIST[1],
              EtcdError.MEMBER_NOT_FOUND[1])


def _count_validation(ctx, store, exc) -> None:
    """etcd 3.4 validates a conf change when applying it, reading its members and its
    removed members from the v2 store: /v2/stats/store counts a get of each (the
    second fails while none was ever removed). kvcore validates before proposing;
    the same counts here keep the store statistics etcd's."""
    if exc is not None and not (isinstance(exc, GrpcError) and exc.message in _VALIDATED):
        return
    store.stats["getsSuccess"] += 1
    store.stats["getsSuccess" if ctx.membership.removed else "getsFail"] += 1


async def serve(ctx, cluster, method: str, path: str, body: bytes, ct: str,
                store=None) -> tuple:
    """-> (status, headers, body) as etcd's membersHandler answers (``store``: the
    v2 store, whose statistics count etcd's validation reads)."""
    cid = f"{ctx.cluster_id:x}"
    try:
        return await _serve(ctx, cluster, method, path, body, ct, cid, store)
    except mh.HTTPError as err:
        return mh.error_answer(err, cid)
    except Exception as e:       # a proposal that failed or timed out: etcd's 500
        log.warning("v2 member change failed: %s", e)
        return mh.error_answer(mh.HTTPError(500, "Internal Server Error"), cid)


async def _change(ctx, store, start, *args):
    """``start(*args)`` -> a proposal, awaited; counting etcd's validation reads.
    With v3 auth on, etcd's checkMembershipOperationPermission finds no user on a v2
    request (ErrUserEmpty) and the change is refused with a 500, as here."""
    if ctx.auth.enabled:
        raise mh.HTTPError(500, "Internal Server Error")
    try:
        out = start(*args)
        await (out[1] if isinstance(out, tuple) else out)
    except GrpcError as e:
        if store is not None:
            _count_validation(ctx, store, e)
        raise
    if store is not None:
        _count_validation(ctx, store, None)
    return out


async def _serve(ctx, cluster, method, path, body, ct, cid, store) -> tuple:
    if method == "POST":
        urls = mh.peer_urls(body, ct)
        try:
            m, _ = await _change(ctx, store, cluster.add, urls)
        except GrpcError as e:
            # an ID already removed: etcd's add does not name that error (500)
            raise (mh.HTTPError(500, "Internal Server Error")
                   if e.message == EtcdError.MEMBER_NOT_FOUND[1]
                   else mh.answer_error(e, 0)) from None
        return 201, [("Content-Type", "application/json"), ("X-Etcd-Cluster-Id", cid)], \
            mh.member_json(m)
    mid = mh.member_id(path)
    if method == "DELETE":
        try:
            await _change(ctx, store, cluster.remove, mid)
        except GrpcError as e:
            if e.message == EtcdError.MEMBER_NOT_FOUND[1] and mid in ctx.membership.removed:
                raise mh.HTTPError(410, f"Member permanently removed: {mid:x}") from None
            raise mh.answer_error(e, mid) from None
    else:
        urls = mh.peer_urls(body, ct)
        try:
            await _change(ctx, store, cluster.update, mid, urls)
        except GrpcError as e:
            if e.message == EtcdError.MEMBER_NOT_FOUND[1] and mid in ctx.membership.removed:
                raise mh.HTTPError(500, "Internal Server Error") from None
            raise mh.answer_error(e, mid) from None
    return 204, [("X-Etcd-Cluster-Id", cid)], b""
