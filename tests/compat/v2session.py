"""A scripted v2 keys session (the tutorials' curl examples and more) and the
normalisation that makes two servers' answers comparable: indexes become
offsets from the session's first index, in-order key names likewise, expiry
times and raft headers are reduced to their presence."""
from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request

# (method, path with query, form fields or None); "{idx:N}" in a path is the
# session's Nth index on that server (its first write is 1).
SESSION = [
    ("PUT", "/v2/keys/message", {"value": "Hello etcd"}),
    ("GET", "/v2/keys/message", None),
    ("PUT", "/v2/keys/message", {"value": "Hello world"}),
    ("PUT", "/v2/keys/message?prevValue=nope", {"value": "x"}),
    ("PUT", "/v2/keys/message?prevValue=Hello%20world", {"value": "y"}),
    ("PUT", "/v2/keys/message?prevIndex=1", {"value": "z"}),
    ("PUT", "/v2/keys/message?prevExist=false", {"value": "z"}),
    ("PUT", "/v2/keys/message?prevExist=true", {"value": "upd"}),
    ("PUT", "/v2/keys/fresh?prevExist=true", {"value": "no"}),
    ("PUT", "/v2/keys/fresh?prevExist=false", {"value": "new"}),
    ("GET", "/v2/keys/nothere", None),
    ("PUT", "/v2/keys/dir", {"dir": "true"}),
    ("POST", "/v2/keys/dir", {"value": "one"}),
    ("POST", "/v2/keys/dir", {"value": "two"}),
    ("PUT", "/v2/keys/dir/b", {"value": "2"}),
    ("PUT", "/v2/keys/dir/sub/c", {"value": "3"}),
    ("GET", "/v2/keys/dir?recursive=true&sorted=true", None),
    ("GET", "/v2/keys/dir?sorted=true", None),
    ("PUT", "/v2/keys/dir", {"value": "x"}),
    ("PUT", "/v2/keys/dir/b/c", {"value": "x"}),
    ("DELETE", "/v2/keys/dir", None),
    ("DELETE", "/v2/keys/dir?dir=true", None),
    ("DELETE", "/v2/keys/dir/b?prevValue=9", None),
    ("DELETE", "/v2/keys/dir/b?prevValue=2", None),
    ("DELETE", "/v2/keys/dir?recursive=true", None),
    ("GET", "/v2/keys/message?wait=true&waitIndex={idx:1}", None),
    ("GET", "/v2/keys/message?wait=true&waitIndex={idx:3}", None),
    ("GET", "/v2/keys/dir?wait=true&recursive=true&waitIndex={idx:7}", None),
    ("PUT", "/v2/keys/message?ttl=abc", {"value": "v"}),
    ("PUT", "/v2/keys/message?prevIndex=x", {"value": "v"}),
    ("PUT", "/v2/keys/message?prevValue=", {"value": "v"}),
    ("PUT", "/v2/keys/message?refresh=true", {"value": "v"}),
    ("PUT", "/v2/keys/message?refresh=true", None),
    ("GET", "/v2/keys/message?recursive=maybe", None),
    ("DELETE", "/v2/keys/", None),
    ("PUT", "/v2/keys/short", {"value": "gone soon", "ttl": "1"}),
    ("GET", "/v2/keys/short", None),
    ("PUT", "/v2/keys/short?refresh=true&prevExist=true", {"ttl": "1"}),
    ("SLEEP", "3", None),
    ("GET", "/v2/keys/short", None),
    ("GET", "/v2/keys/?recursive=true&sorted=true", None),
    ("GET", "/v2/keys/message?quorum=true", None),
    ("PATCH", "/v2/keys/message", None),
    # hidden names ("_..."): left out of listings, found when named
    ("PUT", "/v2/keys/reg/tok/_config/size", {"value": "3"}),
    ("GET", "/v2/keys/reg/tok", None),
    ("PUT", "/v2/keys/reg/tok/m1", {"value": "a"}),
    ("GET", "/v2/keys/reg?recursive=true&sorted=true", None),
    ("GET", "/v2/keys/reg/tok/_config/size", None),
    ("GET", "/v2/keys/reg/tok/_config", None),
]

_CLIENT_HEADERS = ("content-type", "x-etcd-index", "x-raft-index", "x-raft-term",
                   "x-etcd-cluster-id")


def run(port: int, steps=SESSION) -> list:
    out = []
    base = None
    for method, path, form in steps:
        if base is not None:
            path = re.sub(r"\{idx:(\d+)\}", lambda m: str(base + int(m.group(1))), path)
        if method == "SLEEP":
            time.sleep(float(path))
            continue
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/x-www-form-urlencoded")
        try:
            # The reason phrase too (clients show it): etcd's are Go's StatusText.
            with urllib.request.urlopen(req, timeout=15) as r:
                status, headers, body = f"{r.status} {r.reason}", r.headers, r.read()
        except urllib.error.HTTPError as e:
            status, headers, body = f"{e.code} {e.reason}", e.headers, e.read()
        hs = {k: headers.get(k) for k in _CLIENT_HEADERS if headers.get(k) is not None}
        if base is None and "x-etcd-index" in hs:
            base = int(hs["x-etcd-index"]) - 1
        out.append((method, path, status, hs, body))
    return out


def index_offset(base: int):
    """A store index as an offset from ``base`` (the index before the session's
    first write); smaller ones as they are."""
    return lambda v: v - base if v > base else v


def normalise_doc(o, idx):
    """A v2 JSON answer with indexes through ``idx``, in-order key names likewise,
    expiry times and TTLs as placeholders."""
    if isinstance(o, dict):
        r = {}
        for k, v in o.items():
            if k in ("modifiedIndex", "createdIndex", "index") and isinstance(v, int):
                r[k] = idx(v)
            elif k == "expiration":
                r[k] = "<time>"
            elif k == "ttl":
                r[k] = "<ttl>"
            elif k == "key" and isinstance(v, str):
                r[k] = re.sub(r"/(\d{20})$", lambda m: "/" + "%020d" % idx(int(m.group(1))), v)
            elif k == "cause" and isinstance(v, str):
                r[k] = re.sub(r"\[(\d+) != (\d+)\]",
                              lambda m: f"[{m.group(1)} != {idx(int(m.group(2)))}]", v)
            else:
                r[k] = normalise_doc(v, idx)
        return r
    if isinstance(o, list):
        return [normalise_doc(x, idx) for x in o]
    return o


def normalise_headers(hs: dict, idx) -> dict:
    h = dict(hs)
    if "x-etcd-index" in h:
        h["x-etcd-index"] = idx(int(h["x-etcd-index"]))
    for k in ("x-raft-index", "x-raft-term", "x-etcd-cluster-id"):
        if k in h:
            h[k] = "<present>"
    return h


def normalise(answers: list) -> list:
    """Indexes as offsets from the session's first index; times and raft
    figures as presence only."""
    base = None
    for _, _, _, hs, body in answers:
        if "x-etcd-index" in hs:
            base = int(hs["x-etcd-index"]) - 1
            break
    idx = index_offset(base)

    out = []
    for method, path, status, hs, body in answers:
        path = re.sub(r"waitIndex=(\d+)", lambda m: f"waitIndex={idx(int(m.group(1)))}", path)
        h = normalise_headers(hs, idx)
        try:
            doc = normalise_doc(json.loads(body), idx)
            if isinstance(doc, dict) and isinstance(doc.get("node"), dict) and \
                    "nodes" in doc["node"] and "sorted" not in path:
                doc["node"]["nodes"].sort(key=lambda n: n.get("key", ""))
        except ValueError:
            doc = body
        out.append((method, path, status, h, doc))
    return out
