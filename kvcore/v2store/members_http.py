"""etcd 3.4's v2 member changes (v2http membersHandler: POST /v2/members adds,
DELETE /v2/members/<id> removes, PUT /v2/members/<id> updates the peer URLs): the
request read as etcd reads it, with its status codes and messages for every refusal.
The change itself goes through the same conf-change path as the v3 Cluster service
(``cluster``: kvcore/services/cluster.py); this module only speaks HTTP.

Order, as etcd's: root access (checked by the caller), the ID from the path (DELETE,
PUT), the Content-Type, the JSON body, the URLs (types.NewURLs), then the change."""
from __future__ import annotations

import json
from typing import Optional

from kvcore.api.errors import EtcdError
from kvcore.engine.base import GrpcError
from kvcore.gateway.codec import dumps
from kvcore.gateway.goscan import check_valid
from kvcore.v2store import goform, gourl

_JSON = "application/json"
_STRUCT = 'struct { PeerURLs []string "json:\\"peerURLs\\"" }'
_HEX = set("0123456789abcdefABCDEF")


class HTTPError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class _Object(list):
    """A JSON object as its (key, value) pairs in order: Go matches each key to the
    field in turn, the last match wins."""


def _kind(v) -> str:
    """Go's name for a JSON value's kind in an UnmarshalTypeError."""
    if isinstance(v, _Object):
        return "object"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    return {str: "string", list: "array", dict: "object"}[type(v)]


def _fold(key: str) -> str:
    """The key as Go's case-insensitive field match sees it (ASCII case, and the
    long s and Kelvin sign its fold maps to s and k)."""
    return "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c
                   for c in key.replace("\u017f", "s").replace("\u212a", "k"))


def _fix_surrogates(s: str) -> str:
    # Go decodes a lone \ud800 escape as U+FFFD
    return "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in s)


def peer_urls(body: bytes, content_type: str) -> list:
    """unmarshalRequest into MemberCreateRequest: the URLs in their String() form,
    sorted (types.URLs.Sort); HTTPError as etcd answers a refusal."""
    ctype = content_type
    if ";" in ctype:
        ctype = ctype[:ctype.index(";")].lower().strip()
    if ctype != _JSON:
        raise HTTPError(415, f"Bad Content-Type {ctype}, accept application/json")
    err = check_valid(body)
    if err is not None:
        raise HTTPError(400, err)
    doc = json.loads(goform.go_string(body), object_pairs_hook=_Object)
    if doc is None:
        doc = _Object()
    elif not isinstance(doc, _Object):
        raise HTTPError(400, f"json: cannot unmarshal {_kind(doc)} into Go value of type "
                             + _STRUCT)
    urls: Optional[list] = None
    # Go decodes a second array into the first one's backing array: an element it
    # does not set (null, a wrong type) keeps what was there, up to the capacity
    backing: list = []
    first_err = None
    for key, v in doc:
        if _fold(key) != "peerurls":
            continue
        if v is None:
            urls, backing = None, []
        elif isinstance(v, list) and not isinstance(v, _Object):
            if not v:
                backing = []
            for j, x in enumerate(v):
                if j >= len(backing):      # reflect's growth: cap + cap/2, at least 4
                    backing += [""] * (max(4, len(backing) + len(backing) // 2) - len(backing))
                if isinstance(x, str):
                    backing[j] = _fix_surrogates(x)
                elif x is not None:
                    first_err = first_err or (
                        f"json: cannot unmarshal {_kind(x)} into Go struct field "
                        ".peerURLs of type string")
            urls = backing[:len(v)]
        else:
            first_err = first_err or (f"json: cannot unmarshal {_kind(v)} into Go struct "
                                      "field .peerURLs of type []string")
    if first_err:
        raise HTTPError(400, first_err)
    if not urls:
        raise HTTPError(400, "no valid URLs given")
    out = []
    for raw in urls:
        raw = raw.strip(" \t\n\v\f\r\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005"
                        "\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")
        try:
            u = gourl.parse(raw)
        except gourl.URLError as e:
            raise HTTPError(400, str(e)) from None
        if u.scheme not in ("http", "https", "unix", "unixs"):
            raise HTTPError(400, f"URL scheme must be http, https, unix, or unixs: {raw}")
        if not gourl.split_host_port_ok(u.host):
            raise HTTPError(400, f'URL address does not have the form "host:port": {raw}')
        if u.path:
            raise HTTPError(400, f"URL must not contain a path: {raw}")
        out.append(u.string())
    return sorted(out)


def member_id(path: str) -> int:
    """getID: the hex ID after /v2/members/ (the unescaped path, as Go's r.URL.Path)."""
    sub = goform.unescape_path(path)[len("/v2/members"):]
    sub = sub[1:] if sub.startswith("/") else sub
    if sub == "":
        raise HTTPError(405, "")
    if not sub or any(c not in _HEX for c in sub) or int(sub, 16) >= 1 << 64:
        raise HTTPError(404, f"No such member: {sub}")
    return int(sub, 16)


def member_json(m) -> bytes:
    """httptypes.Member, as json.NewEncoder writes it."""
    return dumps({"id": f"{m.id:x}", "name": m.name, "peerURLs": list(m.peer_urls),
                  "clientURLs": list(m.client_urls)}) + b"\n"


def answer_error(exc: BaseException, mid: int) -> HTTPError:
    """An error of the change (a GrpcError from the Cluster service's checks or the
    proposal) as membersHandler writes it."""
    msg = getattr(exc, "message", None) if isinstance(exc, GrpcError) else None
    if msg == EtcdError.PEER_URL_EXIST[1]:
        return HTTPError(409, "membership: peerURL exists")
    if msg == EtcdError.MEMBER_EXIST[1]:
        return HTTPError(409, "membership: ID exists")
    if msg == EtcdError.MEMBER_NOT_FOUND[1]:
        return HTTPError(404, f"No such member: {mid:x}")
    if msg == MEMBER_REMOVED:
        return HTTPError(410, f"Member permanently removed: {mid:x}")
    # etcdhttp.WriteError: anything else (not enough started members, a timeout)
    return HTTPError(500, "Internal Server Error")


# the removed-ID refusal of a v2 remove (etcd's membership.ErrIDRemoved)
MEMBER_REMOVED = "membership: ID removed"


def error_answer(err: HTTPError, cluster_id: str) -> tuple:
    """Headers in Go's order (it writes them sorted by name)."""
    if err.status == 405:           # getID's http.Error, no Allow
        return 405, [("Content-Type", "text/plain; charset=utf-8"),
                     ("X-Content-Type-Options", "nosniff"),
                     ("X-Etcd-Cluster-Id", cluster_id)], b"Method Not Allowed\n"
    return err.status, [("Content-Type", _JSON), ("X-Etcd-Cluster-Id", cluster_id)], \
        dumps({"message": err.message})
