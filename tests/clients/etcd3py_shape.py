"""What etcd3-py hands back, as plain data comparable across two servers.

etcd3-py models each JSON gateway response on a swagger spec (etcd 3.3's) and keeps
the decoded body; ``shape`` walks the fields the server actually sent (so a field one
server sends and the other leaves out is a difference) and replaces only what must
differ between two clusters: member/cluster ids, raft terms and indexes, absolute
revisions (relative to the scenario's start), database sizes, lease ids, ports,
auth tokens, and the order of a lease's keys. Errors keep what the gateway sent:
HTTP status and the JSON body.
"""
from __future__ import annotations

import enum
import re

from etcd3.swagger_helper import EtcdModel

from tests.clients.harness import plain

REVISIONS = {"revision", "create_revision", "mod_revision", "compact_revision"}
MEMBER_IDS = {"member_id", "leader", "memberID"}
# Differ between any two members: raft's bookkeeping and the storage engine's file size.
PRESENT = {"raft_term", "raftTerm", "raftIndex", "raftAppliedIndex", "hash"}
SIZES = {"dbSize", "dbSizeInUse"}
PORT = re.compile(r"127\.0\.0\.1:\d+")


def shape(n, m, ids: str = "lease"):
    """``m`` (a model, list or value) as plain data; ``ids`` names what an "ID" field is
    in this response (a lease's or a member's)."""
    if isinstance(m, enum.Enum):              # etcd3-py's enums are models too
        return m.value
    if isinstance(m, EtcdModel):
        out = {}
        for k in m._data:                     # only what the server sent
            v = getattr(m, k, m._data[k])     # decoded (base64, int64) where the spec knows k
            out[k] = _field(n, k, v, ids)
        return out
    if isinstance(m, list):
        return [shape(n, v, ids) for v in m]
    return plain(m)


def _field(n, k, v, ids):
    if k == "header":
        h = v._data
        return {"rev": n.rev(h["revision"]) if "revision" in h else None, "fields": sorted(h)}
    if k in REVISIONS:
        return n.rev(v)
    if k in MEMBER_IDS or (k == "ID" and ids == "member"):
        return n.id("member", v)
    if k in ("ID", "lease"):
        return n.id("lease", v) if int(v) else 0
    if k in PRESENT:
        return "<set>" if v else v
    if k in SIZES:
        return int(v) > 0
    if k in ("peerURLs", "clientURLs"):
        return [PORT.sub("127.0.0.1:<port>", u) for u in v]
    if k == "keys":                 # a lease's keys: etcd lists them from a Go map
        return sorted(plain(v))
    if k == "token":
        return "<token>" if v else v
    return shape(n, v, ids)


def error(exc: BaseException) -> dict:
    """The library's exception: its class (etcd3-py maps etcd's error strings to
    classes), the gRPC code and HTTP status it read, and the body the gateway sent."""
    out = {"raised": type(exc).__name__}
    for attr in ("error", "code", "status"):
        if hasattr(exc, attr):
            out[attr] = plain(getattr(exc, attr))
    resp = getattr(exc, "response", None)
    body = getattr(resp, "content", None)            # requests
    if not isinstance(body, bytes):
        body = getattr(resp, "_body", None)          # aiohttp, once read
    if isinstance(body, bytes):
        out["body"] = body.decode("utf-8", "replace")
    return out


def outcome(fn, *args, **kw):
    """``fn``'s result, or its error, as comparable data."""
    try:
        return fn(*args, **kw)
    except Exception as exc:      # the library's error, compared across servers
        return error(exc)
