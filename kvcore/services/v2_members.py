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


async def serve(ctx, cluster, method: str, path: str, body: bytes, ct: str) -> tuple:
    """-> (status, headers, body) as etcd's membersHandler answers."""
    cid = f"{ctx.cluster_id:x}"
    mid = 0
    try:
        if method == "POST":
            urls = mh.peer_urls(body, ct)
            try:
                m, applied = cluster.add(urls)
                await applied
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
                await cluster.remove(mid)
            except GrpcError as e:
                if e.message == EtcdError.MEMBER_NOT_FOUND[1] and mid in ctx.membership.removed:
                    raise mh.HTTPError(410, f"Member permanently removed: {mid:x}") from None
                raise mh.answer_error(e, mid) from None
        else:
            urls = mh.peer_urls(body, ct)
            try:
                await cluster.update(mid, urls)
            except GrpcError as e:
                if e.message == EtcdError.MEMBER_NOT_FOUND[1] and mid in ctx.membership.removed:
                    raise mh.HTTPError(500, "Internal Server Error") from None
                raise mh.answer_error(e, mid) from None
    except mh.HTTPError as err:
        return mh.error_answer(err, cid)
    except Exception as e:       # a proposal that failed or timed out: etcd's 500
        log.warning("v2 member change failed: %s", e)
        return mh.error_answer(mh.HTTPError(500, "Internal Server Error"), cid)
    return 204, [("X-Etcd-Cluster-Id", cid)], b""
