"""Seeded random sequences of v2 API requests (random.Random: a failure names its seed).

A step is a Req (one HTTP request, sent as it is to both servers) or a Wait (a
wait=true GET, woken by a write when it waits on the future). Indexes in a request
are tokens resolved against each server's own index when it is sent
(tests/fuzz/v2diff.py): "{mod}" is the modifiedIndex of the last node an answer
showed, "{cur}" the store index after the last answer, each with an offset
("{mod+1}", "{cur-2}"); an offset below the first write is clamped to it.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Optional
from urllib.parse import quote

# Key names as they go in the URL (already escaped where they are): nested dirs,
# hidden "_" names, odd characters, and paths Go's ServeMux cleans first.
NAMES = ["a", "b", "c", "dir", "dir/x", "dir/y", "dir/sub", "dir/sub/z", "dir/sub/deep/k",
         "_hid", "dir/_h", "dir/_h/k", "odd%20sp", "%C3%A9t%C3%A9", "a+b", "k%3Fq",
         "x%2Fy", "colon:at@", "tilde~", "dot.d", "in", "in/q", "%25", "dir/", "",
         "dir//x", "dir/../b", "./c", "dir/sub/"]
VALUES = ["v", "", "1", "h%C3%A9llo", "a+b", "a%20b", "%00", "x" * 40, "two%0Alines",
          "%7B%22j%22%3A1%7D", "&", "="]
BOOLS = ["true", "false", "1", "0", "t", "F", "TRUE", "yes", "", "2"]
# 2^62 s and 2^33 s wrap etcd's int64 nanoseconds (gone at once; before 1970, which
# a create takes as no expiry)
TTLS = ["3600", "3600", "1", "0", "", "-1", "abc", "1.5", " 5", "+5", "0x10",
        "4294967296", "18446744073709551616", "007200", "4611686018427387904", "8589934592"]
INDEXES = ["{mod}", "{mod}", "{mod+1}", "{mod-1}", "{cur}", "{cur+5}", "0", "abc", "-1",
           "99999999", "1e3", "18446744073709551616", ""]
PREV_VALUES = ["v", "1", "", "nope", "a%20b", "x" * 40]

# the parameters etcd's parseKeyRequest reads, by the request kinds that use them
WRITE_PARAMS = ["value", "value", "ttl", "dir", "prevExist", "prevValue", "prevIndex",
                "refresh", "noValueOnSuccess", "recursive"]
READ_PARAMS = ["recursive", "recursive", "sorted", "sorted", "quorum", "dir", "wait_bad",
               "waitIndex_bad", "stream"]
DELETE_PARAMS = ["recursive", "dir", "prevValue", "prevIndex", "prevExist", "value"]

SHORT_TTL = ("1", "0", "4611686018427387904")   # expires within the sequence: waited for
CONTENT_TYPES = ["application/x-www-form-urlencoded", "application/x-www-form-urlencoded",
                 "application/x-www-form-urlencoded; charset=utf-8", "", "application/json",
                 "text/plain", "multipart/form-data", "application/x-www-form-urlencoded;;",
                 "/", "application/x-www-form-urlencoded; a"]


@dataclass
class Req:
    method: str
    path: str                      # with the query, tokens unresolved
    body: bytes = b""
    ctype: Optional[str] = "application/x-www-form-urlencoded"
    short_ttl: bool = False        # a successful answer's node expires soon: wait for it

    def __str__(self):
        return f"{self.method} {self.path} body={self.body[:200]!r} ct={self.ctype!r}"


@dataclass
class Wait:
    path: str                      # /v2/keys/...?wait=true... with tokens
    wake: Optional[str] = None     # the key path a write to wakes it (None: no write)
    stream: bool = False

    def __str__(self):
        return f"WAIT {self.path} wake={self.wake} stream={self.stream}"


@dataclass
class Seq:
    seed: int
    steps: list = field(default_factory=list)


def _params(rng: random.Random, names: list, n_max: int) -> list:
    out = []
    for name in rng.sample(names, rng.randint(0, min(n_max, len(names)))):
        if name == "value":
            out.append(("value", rng.choice(VALUES)))
        elif name == "ttl":
            out.append(("ttl", rng.choice(TTLS)))
        elif name in ("prevIndex", "waitIndex_bad"):
            out.append((name.replace("_bad", ""), rng.choice(INDEXES)))
        elif name == "prevValue":
            out.append(("prevValue", rng.choice(PREV_VALUES)))
        elif name == "wait_bad":
            out.append(("wait", rng.choice(["false", "0", "maybe", ""])))
        else:
            weights = [6, 3] + [1] * (len(BOOLS) - 2)
            out.append((name, rng.choices(BOOLS, weights)[0]))
    if rng.random() < 0.05 and out:     # the same name twice: the first one counts
        out.append((out[0][0], rng.choice(BOOLS + VALUES)))
    return out


def _encode(params: list) -> str:
    # a space would end the request line: sent escaped (a form value decodes it back)
    return "&".join(f"{k}={v}".replace(" ", "%20") for k, v in params)


def _key_path(rng: random.Random) -> str:
    return "/v2/keys/" + rng.choice(NAMES)


def write(rng: random.Random) -> Req:
    method = rng.choices(["PUT", "POST", "DELETE"], [6, 1.5, 2.5])[0]
    names = DELETE_PARAMS if method == "DELETE" else WRITE_PARAMS
    params = _params(rng, names, 4)
    if method == "PUT" and rng.random() < 0.7 and not any(k == "value" for k, _ in params):
        params.append(("value", rng.choice(VALUES)))
    in_body = [p for p in params if rng.random() < 0.6]
    in_query = [p for p in params if p not in in_body]
    path = _key_path(rng)
    if in_query:
        path += "?" + _encode(in_query)
    short = any(k == "ttl" and v in SHORT_TTL for k, v in params) or \
        any(k == "ttl" and v == "18446744073709551616" for k, v in params)
    ctype = "application/x-www-form-urlencoded"
    if rng.random() < 0.1:
        ctype = rng.choice(CONTENT_TYPES)
    return Req(method, path, _encode(in_body).encode(), ctype, short)


def read(rng: random.Random) -> Req:
    method = rng.choices(["GET", "HEAD"], [8, 1])[0]
    params = _params(rng, READ_PARAMS, 3)
    path = _key_path(rng)
    if params:
        path += "?" + _encode(params)
    return Req(method, path, b"", None)


def wait(rng: random.Random) -> Wait:
    name = rng.choice(NAMES[:12])
    recursive = rng.random() < 0.4
    q = ["wait=true"]
    if recursive:
        q.append("recursive=true")
    kind = rng.choices(["past", "future", "none"], [5, 3, 2])[0]
    if kind == "past":
        q.append("waitIndex=" + rng.choice(["{mod}", "{mod-1}", "{cur}", "{cur-3}", "1"]))
    elif kind == "future":
        q.append("waitIndex={cur+1}")
    stream = rng.random() < 0.2
    if stream:
        q.append("stream=true")
    wake = "/v2/keys/" + name + ("/wk" if recursive and rng.random() < 0.5 else "")
    return Wait("/v2/keys/" + name + "?" + "&".join(q), None if kind == "past" else wake,
                stream)


# Requests on the other v2 endpoints (member changes: member_refusal below).
OTHER = [
    ("GET", "/v2/stats/store"), ("GET", "/v2/stats/self"), ("GET", "/v2/stats/leader"),
    ("POST", "/v2/stats/store"), ("PUT", "/v2/stats/self"), ("HEAD", "/v2/stats/leader"),
    ("GET", "/v2/members"), ("HEAD", "/v2/members"), ("GET", "/v2/members/"),
    ("PATCH", "/v2/members"), ("GET", "/v2/members/leader"), ("GET", "/v2/members/zz"),
    ("DELETE", "/v2/members"), ("PUT", "/v2/members"),
    ("GET", "/version"), ("POST", "/version"), ("GET", "/v2/machines"),
    ("HEAD", "/v2/machines"), ("POST", "/v2/machines"), ("GET", "/v2/machines/x"),
    ("GET", "/v2/stats"), ("GET", "/v2/stats/nothing"), ("GET", "/v2"), ("GET", "/v2/"),
    ("GET", "/v2/keys"), ("GET", "/v2/keysx"), ("GET", "/v2/keys?recursive=true&sorted=true"),
    ("get", "/v2/members"), ("post", "/v2/members"), ("Get", "/v2/stats/self"),
    ("get", "/version"), ("get", "/v2/machines"), ("options", "/v2/keys/a"),
]
def other(rng: random.Random) -> Req:
    method, path = rng.choice(OTHER)
    return Req(method, path, b"", None)


BAD_METHODS = ["PATCH", "OPTIONS", "FOO", "CONNECT", "TRACE", "PROPFIND", "get", "put",
               "Post", "delete", "M-SEARCH"]
BAD_QUERIES = ["value=%zz", "value=%", "a=1;b=2", "value=x&%gg=1", "ttl=5%", "=&=&",
               "value=%E2%82", "prevExist", "dir", "recursive&sorted", "value"]
BAD_BODIES = [b"%zz", b"value=%", b"value=1;ttl=2", b"value=\xff\xfe", b"\x00=\x00",
              b"value=" + b"y" * 70000, b"&&&", b"value=a&value=b", b"ttl=1e2&value=x"]


def malformed(rng: random.Random) -> Req:
    kind = rng.choice(["method", "query", "body", "big"])
    path = _key_path(rng)
    if kind == "method":
        return Req(rng.choice(BAD_METHODS), path, b"value=x")
    if kind == "query":
        return Req(rng.choice(["PUT", "GET", "DELETE", "POST"]),
                   path + "?" + rng.choice(BAD_QUERIES))
    if kind == "body":
        return Req(rng.choice(["PUT", "POST", "DELETE"]), path, rng.choice(BAD_BODIES),
                   rng.choice(CONTENT_TYPES[:3]))
    size = rng.choice([1 << 10, 64 << 10, 256 << 10, 1 << 20])
    return Req("PUT", "/v2/keys/big", b"value=" + b"B" * size)


# Member changes a one-member cluster refuses, so that the cluster stays as it is
# (an added member that never starts would take the quorum away): bad bodies, URLs
# and Content-Types, unknown or malformed IDs, the member's own peer URL ({peer}).
MEMBER_BODIES = [b"", b"{", b"[]", b"{}", b"null", b'{"peerURLs":null}', b'{"peerURLs":"x"}',
                 b'{"peerURLs":[1]}', b'{"peerURLs":[{}]}', b'{"peerURLs":["foo"]}',
                 b'{"peerURLs":["://x"]}', b'{"peerURLs":["http://1.2.3.4"]}',
                 b'{"peerURLs":["http://1.2.3.4:1/p"]}', b'{"peerURLs":["http://a b:1"]}',
                 b'{"peerURLs":["http://a:b"]}', b'{"peerURLs":["http://a%zz:1"]}',
                 b'{"peerURLs":["http://a:1#%z"]}', b'{"peerURLs":["http:x"]}',
                 b'{"peerURLs":["http://[::1]"]}', b'{"peerURLs":["ftp://a:1"]}',
                 b'{"peerURLs":["http://u^x@a:1"]}', b'{"peerURLs":["http://a:1\\u0001"]}',
                 b'{"PeerUrls":["{peer}"]}', b'{"peerURLs":[" {peer} "]}',
                 b'{"peerURLs":["http://a:1"],"peerURLs":"x"}', b'{"peerURLs":["x"]} 1']
MEMBER_IDS = ["", "/", "/zz", "/0x12", "/12345", "/12/34", "/10000000000000000", "/%7A",
              "/FFFFFFFFFFFFFFFF", "/+1"]
MEMBER_TYPES = ["application/json", None, "text/plain", "Application/JSON",
                "application/json; charset=utf-8", "APPLICATION/JSON;x"]


def member_refusal(rng: random.Random) -> Req:
    method = rng.choice(["POST", "POST", "DELETE", "PUT"])
    path = "/v2/members" + ("" if method == "POST" and rng.random() < 0.7
                            else rng.choice(MEMBER_IDS))
    body = b"" if method == "DELETE" else rng.choice(MEMBER_BODIES)
    return Req(method, path, body, rng.choice(MEMBER_TYPES) if body else None)


def cas_chain(rng: random.Random) -> list:
    """Set a key, then compare-and-swap / compare-and-delete on what came back."""
    key = "/v2/keys/" + rng.choice(["cas", "dir/cas", "_cas", "cas%20k"])
    out = [Req("PUT", key, b"value=c0")]
    for i in range(rng.randint(1, 4)):
        cond = rng.choice([f"prevIndex={{mod}}", "prevIndex={mod-1}", "prevValue=c%d" % i,
                           "prevValue=nope", "prevIndex={mod}&prevValue=c%d" % i,
                           "prevExist=true&prevIndex={mod}", "prevExist=false"])
        method = "DELETE" if rng.random() < 0.2 else "PUT"
        body = b"" if method == "DELETE" else b"value=c%d" % (i + 1)
        out.append(Req(method, key + "?" + cond, body))
    return out


def quote_key(key: str) -> str:
    """A key from an answer as a URL path under /v2/keys."""
    return "/v2/keys" + quote(key, safe="/:@+~")


def sequence(seed: int, n_steps: int) -> Seq:
    rng = random.Random(seed)
    seq = Seq(seed)
    while len(seq.steps) < n_steps:
        kind = rng.choices(["write", "read", "wait", "other", "malformed", "cas", "member"],
                           [45, 22, 9, 8, 8, 4, 4])[0]
        if kind == "cas":
            seq.steps.extend(cas_chain(rng))
        else:
            seq.steps.append({"write": write, "read": read, "wait": wait, "other": other,
                              "malformed": malformed, "member": member_refusal}[kind](rng))
    return seq
