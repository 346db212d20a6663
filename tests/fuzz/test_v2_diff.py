"""Differential fuzzing of the v2 API (--enable-v2): seeded sequences of v2 requests
(tests/fuzz/v2gen.py: writes with every parameter etcd's parseKeyRequest reads, good
and bad; reads; waits woken by a write; compare-and-swap chains; TTLs; the stats,
members, machines and version pages; malformed methods, queries and bodies) go to a
fresh kvcore and a fresh etcd 3.4.23, and after every request the status, the client
headers and the JSON body must match (tests/fuzz/v2diff.py normalises what differs
by construction). After each sequence the whole tree and the store stats match and
kvcore is alive. One pair of servers per module; sequences run one after another on
the same tree. A failure names its seed: `V2FUZZ_SEEDS=1234 pytest ... -k long`
replays it.

The regressions found are plain cases at the end (docs/decisions.md, "Differential
fuzzing of the v2 API")."""
from __future__ import annotations

import os
import random
import re
import subprocess
import time

import pytest

from tests import servers
from tests.fuzz import v2diff, v2gen
from tests.httpraw import call as http_call

ETCD34 = "/usr/bin/etcd"


def _settled(port: int) -> None:
    """Until the cluster version is decided and the store index stands still (etcd 3.4
    writes its membership and version into the v2 store after it starts)."""
    deadline, last = time.monotonic() + 30, None
    while time.monotonic() < deadline:
        _, _, body = http_call(port, "/version", method="GET")
        _, hs, _ = http_call(port, "/v2/keys/", method="GET")
        now = hs.get("x-etcd-index")
        if b"not_decided" not in body and now == last:
            return
        last = now
        time.sleep(0.3)
    raise TimeoutError("the v2 store index did not settle")


class V2Pair(tuple):
    def __new__(cls, kv, ks, es):
        return super().__new__(cls, (kv, ks, es))

    def __repr__(self):
        return "v2pair"


@pytest.fixture(scope="module")
def v2pair(tmp_path_factory):
    with servers.kvcore_and_etcd(tmp_path_factory.mktemp("v2fuzz"), kv_extra=("--enable-v2",),
                                 etcd_extra=("--enable-v2",), etcd_binary=ETCD34) as (kv, et):
        for srv in (kv, et):
            _settled(srv.port)
        yield V2Pair(kv, v2diff.Side("kvcore", kv.port), v2diff.Side("etcd", et.port))
        assert kv.proc.poll() is None, kv.log()[-3000:]
        assert "fatal" not in kv.log().lower(), kv.log()[-3000:]


def _alive(kv):
    assert kv.proc.poll() is None, "kvcore exited:\n" + kv.log()[-3000:]


COLLECT = os.environ.get("V2FUZZ_COLLECT")   # print every difference, do not stop
STATS_EACH = os.environ.get("V2FUZZ_STATS_EACH")   # /v2/stats/store after every step


def _same(a, b, what):
    if COLLECT and a != b:
        import difflib
        import pprint
        print(f"DIFF {what[:300]}")
        print("\n".join(list(difflib.unified_diff(pprint.pformat(a, width=150).splitlines(),
                                                  pprint.pformat(b, width=150).splitlines(),
                                                  "kvcore", "etcd", lineterm="", n=1))[:40]))
        return
    assert a == b, f"{what}\nkvcore: {str(a)[:3000]}\netcd:   {str(b)[:3000]}"


def run_req(pair, req: v2gen.Req, what: str = ""):
    kv, ks, es = pair
    a, kraw = v2diff.call(ks, req)
    b, eraw = v2diff.call(es, req)
    _alive(kv)
    _same(a, b, f"{what} {req}")
    if req.short_ttl and v2diff.node_of(eraw) is not None:
        _same(v2diff.settle(ks, kraw), v2diff.settle(es, eraw), f"{what} expiry after {req}")
    return a


def run_step(pair, step, what=""):
    kv, ks, es = pair
    if isinstance(step, v2gen.Wait):
        a, b = v2diff.wait([ks, es], step, lambda req: run_req(pair, req, what + " wake"))
        _alive(kv)
        _same(a, b, f"{what} {step}")
        return a
    return run_req(pair, step, what)


def check_tree(pair, what=""):
    kv, ks, es = pair
    for req in (v2gen.Req("GET", "/v2/keys/?recursive=true&sorted=true", ctype=None),
                v2gen.Req("GET", "/v2/keys/dir/_h?recursive=true", ctype=None)):
        a, _ = v2diff.call(ks, req)
        b, _ = v2diff.call(es, req)
        _same(a, b, f"{what} {req}")
    _same(ks.stats_delta(), es.stats_delta(), f"{what} /v2/stats/store counts")
    _alive(kv)


def run_seed(pair, seed: int, n_steps: int):
    seq = v2gen.sequence(seed, n_steps)
    for i, step in enumerate(seq.steps):
        run_step(pair, step, f"seed {seed} step {i}:")
        if STATS_EACH:
            _same(pair[1].stats_delta(), pair[2].stats_delta(), f"seed {seed} step {i} stats")
    check_tree(pair, f"seed {seed} after:")


@pytest.mark.parametrize("seed", range(6))
def test_v2_requests_match_etcd_34(v2pair, seed):
    run_seed(v2pair, seed, 25)


def _long_seeds():
    env = os.environ.get("V2FUZZ_SEEDS")
    if env:
        return [int(s) for s in env.split(",")]
    first = random.SystemRandom().randrange(1 << 30)
    return list(range(first, first + 60))


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("seed", _long_seeds())
def test_v2_requests_match_etcd_34_long(v2pair, seed):
    print("v2 fuzz seed", seed)
    run_seed(v2pair, seed, 60)


# Differences the fuzzer found, kept as plain cases (each differed before its fix);
# /v2/stats/store's counts are compared after each.
R, W = v2gen.Req, v2gen.Wait
FORM = "application/x-www-form-urlencoded"
FOUND = {
    # etcd's allowMethod: its own list and order, and Go's http.Error nosniff header
    "405 keys": [R("TRACE", "/v2/keys/a", b"value=x"), R("PROPFIND", "/v2/keys/")],
    "405 stats": [R("PUT", "/v2/stats/self", ctype=None),
                  R("HEAD", "/v2/stats/store", ctype=None)],
    "405 version": [R("POST", "/version", ctype=None), R("HEAD", "/version", ctype=None)],
    "405 members": [R("PATCH", "/v2/members", ctype=None), R("HEAD", "/v2/members", ctype=None),
                    R("DELETE", "/v2/members", ctype=None), R("PUT", "/v2/members", ctype=None)],
    "405 machines": [R("POST", "/v2/machines", ctype=None)],
    # the CORS handler answers OPTIONS before any route
    "options": [R("OPTIONS", "/v2/keys/a", ctype=None), R("OPTIONS", "/v2/members", ctype=None)],
    # ServeMux: 301 to the clean path (a body for GET only), no route for /v2/keysx
    "unclean paths": [R("GET", "/v2/keys/dir//x?recursive=true", ctype=None),
                      R("PUT", "/v2/keys/./c", b"value=x"),
                      R("HEAD", "/v2/keys/d/../c", ctype=None),
                      R("DELETE", "/v2/keys/%2e%2e/x", ctype=None),
                      R("GET", "/v2/keys/a%20b/../c%3Fd?x=1&y=%26", ctype=None),
                      R("GET", "/v2/keysx", ctype=None)],
    # Request.ParseForm: url.ParseQuery's and mime.ParseMediaType's errors
    "form errors": [R("PUT", "/v2/keys/f", b"value=1;ttl=2"),
                    R("PUT", "/v2/keys/f?a=1;b=2", b"value=1"),
                    R("PUT", "/v2/keys/f", b"%zz"), R("PUT", "/v2/keys/f?value=%"),
                    R("PUT", "/v2/keys/f?%gg=1&value=x"), R("PUT", "/v2/keys/f", b"value=%E2%8"),
                    R("PUT", "/v2/keys/f", b"value=1", FORM + ";;"),
                    R("PUT", "/v2/keys/f", b"value=1", FORM + "; a"),
                    R("PUT", "/v2/keys/f", b"value=1", "/"),
                    R("PUT", "/v2/keys/f", b"value=1", "text/plain/x")],
    # no Content-Type is application/octet-stream: the body is not read
    "no content type": [R("PUT", "/v2/keys/f", b"value=1", ""), R("GET", "/v2/keys/f", ctype=None)],
    # strconv.ParseUint takes ASCII digits only
    "ttl digits": [R("PUT", "/v2/keys/f?ttl=%D9%A3", b"value=x"),
                   R("PUT", "/v2/keys/f?prevIndex=%EF%BC%91")],
    # member changes refused as etcd 3.4 refuses them (Go's JSON and url.Parse errors,
    # its Content-Type check, getID's 405 and 404s, a peer URL in use)
    "member refusals": [R("POST", "/v2/members", b"", "application/json"),
                        R("POST", "/v2/members", b'{"peerURLs":[1]}', "application/json"),
                        R("POST", "/v2/members", b'[]', "application/json"),
                        R("POST", "/v2/members/x", b'{"peerURLs":["http://a:b"]}',
                          "application/json"),
                        R("POST", "/v2/members", b'{"peerurls":["{peer}"]}',
                          "application/json; charset=utf-8"),
                        R("POST", "/v2/members", b'{"peerURLs":["{peer}"]}', "Application/JSON"),
                        R("DELETE", "/v2/members/zz", ctype=None),
                        R("DELETE", "/v2/members/12345", ctype=None),
                        R("PUT", "/v2/members/12345", b'{"peerURLs":["http://a:1"]}',
                          "application/json"),
                        R("PUT", "/v2/members/", b'{"peerURLs":["http://a:1"]}',
                          "application/json"),
                        # Go decodes the second array into the first's backing array
                        # (null keeps "http://a:1": 404, not a scheme error), and
                        # slices bytes for an escape error (a cut rune is \xc3)
                        R("PUT", "/v2/members/12345",
                          '{"peerURLs":["http://a:1"],"peerURL\u017f":[null]}'.encode(),
                          "application/json"),
                        R("PUT", "/v2/members/12345", '{"peerURLs":["https://%2\u00e9"]}'.encode(),
                          "application/json")],
    # Go's server takes any token as a method; etcd's handlers answer 405 (kvcore's
    # port sniffer took only upper-case ones for HTTP/1.x and answered 400)
    "lower-case methods": [R("get", "/v2/keys/a", ctype=None), R("put", "/v2/keys/a", b"value=x"),
                           R("get", "/v2/members", ctype=None),
                           R("options", "/v2/members", ctype=None),
                           R("Get", "/v2/stats/store", ctype=None), R("get", "/version", ctype=None),
                           R("M-SEARCH", "/v2/keys/a", ctype=None)],
    "members reads": [R("GET", "/v2/members/leader", ctype=None),
                      R("GET", "/v2/members/", ctype=None), R("GET", "/v2/members/zz", ctype=None)],
    # etcd's store counts these failures as successes (its deferred counter reads an
    # err the early returns do not set)
    "stats quirks": [R("PUT", "/v2/keys/q", b"value=1"), R("DELETE", "/v2/keys/q?prevValue=nope"),
                     R("PUT", "/v2/keys/qd", b"dir=true"), R("DELETE", "/v2/keys/qd?prevIndex=1"),
                     R("DELETE", "/v2/keys/", ctype=None),
                     R("PUT", "/v2/keys/?prevExist=true", b"value=x"),
                     R("PUT", "/v2/keys/qd?prevExist=true", b"value=x"),
                     R("PUT", "/v2/keys/?prevValue=x", b"value=y")],
    # updating a directory leaves its modifiedIndex (node.Write refuses a directory)
    "dir update": [R("PUT", "/v2/keys/ud", b"dir=true"),
                   R("PUT", "/v2/keys/ud?prevExist=true", b"ttl=3600"),
                   R("GET", "/v2/keys/ud", ctype=None)],
    # a TTL refresh takes an index but wakes no watcher, live or from the history
    "refresh unseen": [R("PUT", "/v2/keys/rk", b"value=1&ttl=3600"),
                       R("PUT", "/v2/keys/rk?refresh=true&prevExist=true", b"ttl=3600"),
                       W("/v2/keys/rk?wait=true&waitIndex={mod}", "/v2/keys/rk"),
                       R("PUT", "/v2/keys/rk?refresh=true", b"ttl=3600"),
                       W("/v2/keys/rk?wait=true&waitIndex={mod}", "/v2/keys/rk")],
    # CONNECT's path is not cleaned; compareAndDelete of the root has no cause (etcd
    # trims its store prefix "/1" from the cause, leaving nothing)
    "connect, root": [R("CONNECT", "/v2/keys/./c", b"value=x"),
                      R("DELETE", "/v2/keys/?prevIndex=7", ctype="application/json"),
                      R("DELETE", "/v2/keys/?prevValue=v")],
    # a create under a file fails in etcd's internalCreate, which counts a failed set
    # too; a set fails earlier, in its own lookup, once
    "create under a file": [R("PUT", "/v2/keys/cf", b"value=x"),
                            R("POST", "/v2/keys/cf", b"value=y"),
                            R("PUT", "/v2/keys/cf/k?prevExist=false", b"value=y"),
                            R("PUT", "/v2/keys/cf/k", b"value=y")],
    # Go's omitempty: a node due now shows its expiration and no "ttl"
    "ttl 0": [R("PUT", "/v2/keys/t0", b"value=x&ttl=0", short_ttl=True)],
    # a stream's next wait is no new request: no second read of /2/enabled is counted
    "stream stats": [R("PUT", "/v2/keys/sw", b"value=1"), R("PUT", "/v2/keys/sw", b"value=2"),
                     W("/v2/keys/sw?wait=true&stream=true&waitIndex={mod-1}", None, True)],
}


@pytest.mark.parametrize("name", list(FOUND))
def test_v2_found_cases_match_etcd_34(v2pair, name):
    for i, step in enumerate(FOUND[name]):
        run_step(v2pair, step, f"{name} {i}:")
        _same(v2pair[1].stats_delta(), v2pair[2].stats_delta(), f"{name} {i}: store stats")


# ETCDCTL_API=2 etcdctl 3.4 against both: the same exit code, stdout and stderr, once
# member IDs, ports and the store indexes in error messages ("[N]", an offset from
# the index before the first command) are normalised. Auth is switched on and off
# again at the end.
V2CTL = [
    ("set", "/ctl/a", "v1"), ("get", "/ctl/a"), ("mk", "/ctl/a", "v2"), ("mk", "/ctl/b", "v2"),
    ("mkdir", "/ctl/d"), ("mkdir", "/ctl/d"), ("setdir", "/ctl/d2"),
    ("setdir", "--ttl", "3600", "/ctl/d2"), ("update", "/ctl/a", "v3"), ("update", "/ctl/zz", "v3"),
    ("updatedir", "--ttl", "3600", "/ctl/d"), ("updatedir", "/ctl/nodir"),
    ("set", "--swap-with-value", "v3", "/ctl/a", "v4"),
    ("set", "--swap-with-index", "1", "/ctl/a", "v5"), ("set", "/ctl/d/x", "y"),
    ("set", "/ctl/d/_h", "hidden"), ("ls", "/ctl"), ("ls", "-r", "-p", "--sort", "/ctl"),
    ("ls", "--sort", "-p", "/"), ("get", "/ctl/d"), ("get", "/ctl/d/_h"), ("rm", "/ctl/d"),
    ("rmdir", "/ctl/d"), ("rmdir", "/ctl/d2"), ("rm", "--with-value", "v9", "/ctl/a"),
    ("rm", "--with-value", "v4", "/ctl/a"), ("rm", "-r", "/ctl/d"), ("rm", "/nothere"),
    ("rmdir", "/nothere"), ("watch", "--after-index", "{base}", "/ctl/a"),
    ("member", "list"), ("cluster-health"),
    ("user", "add", "root:pw"), ("user", "add", "u1:p1"), ("user", "list"),
    ("role", "add", "r1"), ("role", "grant", "r1", "-path", "/ctl/*", "-readwrite"),
    ("role", "get", "r1"), ("role", "revoke", "r1", "-path", "/x/*", "-read"),
    ("user", "grant", "u1", "-roles", "r1"), ("user", "get", "u1"), ("role", "list"),
    ("auth", "enable"), ("get", "/ctl/b"), ("--username", "u1:p1", "get", "/ctl/b"),
    ("--username", "u1:bad", "get", "/ctl/b"), ("--username", "u1:p1", "set", "/other", "x"),
    ("--username", "root:pw", "user", "list"), ("--username", "root:pw", "auth", "disable"),
    ("user", "remove", "u1"), ("role", "remove", "r1"), ("user", "remove", "root"),
]


def _ctl2(side: v2diff.Side, base: int, args) -> tuple:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL")}
    env["ETCDCTL_API"] = "2"
    args = [a.replace("{base}", str(base)) for a in args]
    p = subprocess.run([servers.ETCDCTL, "--endpoints", f"http://127.0.0.1:{side.port}", *args],
                       capture_output=True, text=True, timeout=20, env=env)

    def idx(n: str) -> str:
        return str(int(n) - base) if int(n) >= base else n

    def norm(t: str) -> str:
        t = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:<port>", t)
        t = re.sub(r"\b[0-9a-f]{12,16}\b", "<id>", t)
        t = re.sub(r"\[(\d+) != (\d+)\]", lambda m: f"[{m.group(1)} != {idx(m.group(2))}]", t)
        return re.sub(r"\[(\d+)\]", lambda m: f"[{idx(m.group(1))}]", t)
    out = norm(p.stdout)
    if args[0] == "ls" and "--sort" not in args:    # Go map order on etcd
        out = "".join(sorted(out.splitlines(keepends=True)))
    return p.returncode, out, norm(p.stderr)


def test_etcdctl_v2_commands_match_etcd_34(v2pair):
    kv, ks, es = v2pair
    for side in (ks, es):    # so that "watch --after-index <base>" names an index > 0
        _ctl2(side, 0, ("set", "/ctl/start", "0"))
    bases = [s.index_now() for s in (ks, es)]
    for args in V2CTL:
        a = _ctl2(ks, bases[0], args if isinstance(args, tuple) else (args,))
        b = _ctl2(es, bases[1], args if isinstance(args, tuple) else (args,))
        _alive(kv)
        _same(a, b, f"etcdctl {args}")
