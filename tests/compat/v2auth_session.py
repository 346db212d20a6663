"""A scripted v2 auth session (/v2/auth/... and /v2/keys with Basic auth) for
comparing two servers' answers: status, the headers clients read, and bodies
(JSON parsed; indexes as offsets from the session's first write)."""
from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request

ROOT = ("root", "rootpw")
ALICE = ("alice", "alicepw")


def _j(**kw) -> bytes:
    return json.dumps(kw).encode()


def _form(**kw) -> bytes:
    return urllib.parse.urlencode(kw).encode()


# (method, path, body (bytes: JSON, ("form", bytes): a form) or None, credentials)
SESSION = [
    ("PUT", "/v2/keys/start", ("form", _form(value="s")), None),
    ("GET", "/v2/auth/enable", None, None),
    ("PUT", "/v2/auth/enable", None, None),
    ("GET", "/v2/auth/users", None, None),
    ("GET", "/v2/auth/roles", None, None),
    ("PUT", "/v2/auth/users/root", _j(user="root", password="rootpw"), None),
    ("PUT", "/v2/auth/users/root", _j(user="root", password="rootpw"), None),
    ("PUT", "/v2/auth/users/alice", _j(user="alice", password="alicepw"), None),
    ("PUT", "/v2/auth/users/bob", _j(user="bob"), None),
    ("PUT", "/v2/auth/users/bob", _j(user="x", password="p"), None),
    ("PUT", "/v2/auth/users/bob", b"garbage", None),
    ("PUT", "/v2/auth/users/bob", _j(user="bob", password="b", roles=["r1"], grant=["r2"]),
     None),
    ("PUT", "/v2/auth/users/carol", _j(User="carol", password="c", roles=["nobody"]), None),
    ("PUT", "/v2/auth/users/carol", _j(user="carol", password="c", roles=["nobody"]), None),
    ("PUT", "/v2/auth/roles/reader",
     _j(role="reader", permissions={"kv": {"read": ["/pub/*"], "write": []}}), None),
    ("PUT", "/v2/auth/roles/reader", _j(role="reader"), None),
    ("PUT", "/v2/auth/roles/root", _j(role="root"), None),
    ("PUT", "/v2/auth/roles/reader",
     _j(role="reader", grant={"kv": {"read": ["/data"], "write": ["/pub/*"]}}), None),
    ("PUT", "/v2/auth/roles/reader", _j(role="reader", grant={"kv": {"read": ["/data"]}}), None),
    ("PUT", "/v2/auth/roles/reader", _j(role="reader", revoke={"kv": {"read": ["/data"]}}), None),
    ("PUT", "/v2/auth/roles/reader", _j(role="reader", revoke={"kv": {"read": ["/none"]}}), None),
    ("PUT", "/v2/auth/roles/reader",
     _j(role="reader", permissions={"kv": {"read": ["/x"]}}, grant={"kv": {"read": ["/y"]}}),
     None),
    ("PUT", "/v2/auth/roles/nope", _j(role="nope", grant={"kv": {"read": ["/y"]}}), None),
    ("PUT", "/v2/auth/users/alice", _j(user="alice", grant=["reader"]), None),
    ("PUT", "/v2/auth/users/alice", _j(user="alice", grant=["reader"]), None),
    ("PUT", "/v2/auth/users/alice", _j(user="alice", revoke=["nope"]), None),
    ("PUT", "/v2/auth/users/nobody", _j(user="nobody", grant=["reader"]), None),
    ("GET", "/v2/auth/users/alice", None, None),
    ("GET", "/v2/auth/users/carol", None, None),
    ("GET", "/v2/auth/users/nobody", None, None),
    ("GET", "/v2/auth/users", None, None),
    ("GET", "/v2/auth/users/", None, None),
    ("GET", "/v2/auth/roles", None, None),
    ("GET", "/v2/auth/roles/reader", None, None),
    ("GET", "/v2/auth/roles/nope", None, None),
    ("GET", "/v2/auth/roles/root", None, None),
    ("POST", "/v2/auth/users/alice", None, None),
    ("POST", "/v2/auth/users", None, None),
    ("GET", "/v2/auth/users/a/b", None, None),
    ("GET", "/v2/auth/nothing", None, None),
    ("PUT", "/v2/keys/pub/x", ("form", _form(value="1")), None),
    ("PUT", "/v2/auth/enable", None, None),
    ("GET", "/v2/auth/enable", None, None),
    ("PUT", "/v2/auth/enable", None, None),
    ("PUT", "/v2/auth/enable", None, ROOT),
    ("GET", "/v2/auth/roles/guest", None, None),
    ("GET", "/v2/auth/roles/guest", None, ROOT),
    ("GET", "/v2/keys/pub/x", None, None),
    ("PUT", "/v2/auth/roles/guest",
     _j(role="guest", revoke={"kv": {"read": ["/*"], "write": ["/*"]}}), ROOT),
    ("GET", "/v2/keys/pub/x", None, None),
    ("GET", "/v2/keys/pub/x?wait=true&waitIndex=1", None, None),
    ("GET", "/v2/keys/pub/x?recursive=maybe", None, None),
    ("GET", "/v2/keys/pub/x", None, ALICE),
    ("GET", "/v2/keys/pub/x", None, ("alice", "wrong")),
    ("GET", "/v2/keys/pub/x", None, ("ghost", "x")),
    ("GET", "/v2/keys/pub/x", None, "Basic !!!"),
    ("PUT", "/v2/keys/pub/y", ("form", _form(value="2")), ALICE),
    ("PUT", "/v2/keys/data", ("form", _form(value="3")), ALICE),
    ("PUT", "/v2/keys/data", ("form", _form(value="3")), ROOT),
    ("GET", "/v2/keys/data", None, ALICE),
    ("GET", "/v2/keys/pub?recursive=true&sorted=true", None, ALICE),
    ("GET", "/v2/keys/?recursive=true", None, ALICE),
    ("GET", "/v2/keys/?recursive=true&sorted=true", None, ROOT),
    ("GET", "/v2/auth/users", None, ALICE),
    ("GET", "/v2/auth/users", None, ROOT),
    ("DELETE", "/v2/auth/users/root", None, ROOT),
    ("DELETE", "/v2/auth/roles/root", None, ROOT),
    ("PUT", "/v2/auth/users/alice", _j(user="alice", password="newpw"), ROOT),
    ("GET", "/v2/keys/pub/x", None, ALICE),
    ("GET", "/v2/keys/pub/x", None, ("alice", "newpw")),
    ("GET", "/v2/members", None, None),
    ("DELETE", "/v2/auth/enable", None, ("alice", "newpw")),
    ("DELETE", "/v2/auth/enable", None, ROOT),
    ("DELETE", "/v2/auth/enable", None, None),
    ("GET", "/v2/keys/data", None, None),
    ("DELETE", "/v2/auth/users/alice", None, None),
    ("DELETE", "/v2/auth/users/alice", None, None),
    ("DELETE", "/v2/auth/roles/reader", None, None),
    ("DELETE", "/v2/auth/roles/reader", None, None),
    ("GET", "/v2/auth/roles", None, None),
    ("PUT", "/v2/keys/end", ("form", _form(value="e")), None),
]

_CLIENT_HEADERS = ("content-type", "x-etcd-index", "x-etcd-cluster-id", "allow",
                   "x-content-type-options")


def run(port: int, steps=SESSION, scheme: str = "http", context=None) -> list:
    out = []
    for method, path, body, cred in steps:
        headers = {}
        if isinstance(body, tuple):
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            body = body[1]
        if isinstance(cred, tuple):
            headers["Authorization"] = "Basic " + base64.b64encode(
                ":".join(cred).encode()).decode()
        elif cred:
            headers["Authorization"] = cred
        req = urllib.request.Request(f"{scheme}://127.0.0.1:{port}{path}", data=body,
                                     method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=15, context=context) as r:
                status, hs, raw = r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            status, hs, raw = e.code, e.headers, e.read()
        got = {k: hs.get(k) for k in _CLIENT_HEADERS if hs.get(k) is not None}
        out.append((method, path, cred if not isinstance(cred, tuple) else cred[0],
                    status, got, raw))
    return out


def normalise(answers: list) -> list:
    """Indexes as offsets from the first answer's X-Etcd-Index; the cluster id
    as its presence; JSON bodies parsed (members' ids and URLs dropped)."""
    base = int(answers[0][4]["x-etcd-index"]) - 1

    def fix(o):
        if isinstance(o, dict):
            return {k: (v - base if k in ("modifiedIndex", "createdIndex") and
                        isinstance(v, int) else
                        "<urls>" if k in ("id", "peerURLs", "clientURLs", "name") else fix(v))
                    for k, v in o.items()}
        if isinstance(o, list):
            return [fix(x) for x in o]
        return o

    out = []
    for method, path, who, status, hs, raw in answers:
        h = dict(hs)
        if "x-etcd-index" in h and int(h["x-etcd-index"]) > 0:
            h["x-etcd-index"] = int(h["x-etcd-index"]) - base
        if "x-etcd-cluster-id" in h:
            h["x-etcd-cluster-id"] = "<present>"
        try:
            doc = fix(json.loads(raw)) if raw.strip() else raw
        except ValueError:
            doc = raw
        out.append((method, path, who, status, h, doc, raw.endswith(b"\n")))
    return out
