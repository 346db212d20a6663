"""Send v2 requests (tests/fuzz/v2gen.py) to kvcore and to etcd 3.4.23 and make the
answers comparable: (status, client headers, body) with store indexes as offsets
from each server's index before the first request (etcd's own writes of its
membership take its first few), expiry times and TTLs as placeholders, raft figures
as presence (each server's raft log holds other entries), member IDs and ports as
placeholders. A listing that is not sorted comes in Go map order on etcd: sorted
here at every level."""
from __future__ import annotations

import json
import re
import threading
import time
from typing import Optional

from tests.compat import v2session
from tests.fuzz import v2gen
from tests.httpraw import request

TIMEOUT = 20
WAIT_TIMEOUT = 2.0          # a wait nothing wakes: both must not answer by then
SETTLE_TIMEOUT = 6.0        # a key with a TTL of 0 or 1 s expires well within this
HEADERS = ("content-type", "x-etcd-index", "x-raft-index", "x-raft-term",
           "x-etcd-cluster-id", "allow", "location", "x-content-type-options")
_TOKEN = re.compile(r"\{(mod|cur)([+-]\d+)?\}")


class Side:
    """One server, with the store index before the first request (``base``), after
    the last answer (``cur``) and the last modifiedIndex an answer showed (``mod``);
    ``stats0`` is /v2/stats/store then."""

    def __init__(self, name: str, port: int):
        self.name, self.port = name, port
        self.base = self.cur = self.mod = self.index_now()
        self.stats0 = self.store_stats()     # etcd's own membership writes count too
        r = request(port, "GET", "/v2/members", timeout=TIMEOUT)
        try:       # its peer URL: a member add naming it is refused (409)
            self.peer = json.loads(r.body())["members"][0]["peerURLs"][0]
        finally:
            r.close()

    def index_now(self) -> int:
        r = request(self.port, "GET", "/v2/keys/", timeout=TIMEOUT)
        try:
            r.body()
            return int(r.headers["x-etcd-index"])
        finally:
            r.close()

    def resolve(self, text: str, sent: dict) -> str:
        """Tokens -> this server's indexes; ``sent`` maps each resolved number back to
        its token (a compare failure's cause quotes the prevIndex sent)."""
        def one(m):
            v = (self.mod if m.group(1) == "mod" else self.cur) + int(m.group(2) or 0)
            v = max(v, self.base + 1)
            sent[str(v)] = m.group(0)
            return str(v)
        return _TOKEN.sub(one, text)

    def idx(self, v: int) -> int:
        """An index as an offset from ``base`` (0 stays 0: a parse error's index)."""
        return v - self.base if v >= self.base > 0 or v > self.base else v

    def store_stats(self) -> dict:
        r = request(self.port, "GET", "/v2/stats/store", timeout=TIMEOUT)
        try:
            return json.loads(r.body())
        finally:
            r.close()

    def watchers(self) -> int:
        return self.store_stats()["watchers"]

    def stats_delta(self) -> dict:
        """/v2/stats/store's counts since the start. "watchers" is left out: a wait
        whose client closed stays registered on kvcore until its key changes
        (docs/decisions.md, "Differential fuzzing of the v2 API")."""
        now = self.store_stats()
        return {k: v - self.stats0[k] for k, v in now.items() if k != "watchers"}


def send(side: Side, method: str, path: str, body: bytes = b"", ctype: Optional[str] = None,
         timeout: float = TIMEOUT, stream: bool = False):
    """-> (status, headers, body) or ("timeout",) when no whole answer came in time
    (a stream: its first event)."""
    headers = {"Content-Type": ctype if ctype is not None else ""}
    try:
        r = request(side.port, method, path, body, headers, timeout=timeout)
    except (TimeoutError, OSError) as e:
        return ("timeout",) if isinstance(e, TimeoutError) else ("closed", type(e).__name__)
    try:
        if method == "HEAD":
            data = b""
        elif stream and r.status == 200 and r.chunked:
            data = b""
            while not data.strip():
                c = r.chunk()
                if c is None:
                    break
                data += c
        else:
            data = r.body()
        return r.status, r.headers, data
    except TimeoutError:
        return ("timeout",)
    except ConnectionError as e:
        return ("closed", str(e))
    finally:
        r.close()


def _sort_nodes(doc):
    if isinstance(doc, dict):
        for v in doc.values():
            _sort_nodes(v)
        if isinstance(doc.get("nodes"), list):
            doc["nodes"].sort(key=lambda n: n.get("key", "") if isinstance(n, dict) else "")
    elif isinstance(doc, list):
        for v in doc:
            _sort_nodes(v)


def _strip_member_specific(doc):
    if isinstance(doc, dict):
        return {k: ("<id>" if k in ("id", "leader") and isinstance(v, str) else
                    _strip_member_specific(v)) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_strip_member_specific(v) for v in doc]
    if isinstance(doc, str):
        return re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:<port>", doc)
    return doc


def _shape(doc):
    """Field names only, nested (values that are the member's own: times, names)."""
    if isinstance(doc, dict):
        return {k: _shape(v) for k, v in doc.items()}
    return type(doc).__name__


def _unsend(text: str, sent: dict) -> str:
    """The numbers tokens were resolved to, back as their tokens."""
    for v, token in sent.items():
        text = re.sub(rf"=({v})\b", "=" + token, text)
    return text


def answer(side: Side, ans: tuple, path: str, sent: dict, keys_sorted: bool = False):
    """One answer, comparable across servers; follows the server's index (cur, mod).
    X-Raft-Index is etcd's committed index read apart from the answer: it may even
    go back by one between answers, so only its presence is compared."""
    if len(ans) < 3:
        return ans
    status, hs, body = ans
    h = {k: hs[k] for k in HEADERS if k in hs}
    if "x-etcd-index" in h:
        side.cur = max(side.cur, int(h["x-etcd-index"]))
    if "location" in h:      # a redirect repeats the query: each server's own indexes
        h["location"] = _unsend(h["location"], sent)
        body = _unsend(body.decode("latin-1"), sent).encode("latin-1")
    h = v2session.normalise_headers(h, side.idx)
    try:
        doc = json.loads(body)
    except ValueError:
        return status, h, re.sub(rb"127\.0\.0\.1:\d+", b"127.0.0.1:<port>", body)
    if isinstance(doc, dict) and isinstance(doc.get("node"), dict) and \
            isinstance(doc["node"].get("modifiedIndex"), int):
        side.mod = doc["node"]["modifiedIndex"]
    p = path.split("?")[0]
    if p == "/v2/stats/store" and status == 200:
        return status, h, {k: v - side.stats0[k] for k, v in doc.items() if k != "watchers"}
    if p.startswith("/v2/stats/self") or p == "/version":
        return status, h, _shape(doc)
    doc = v2session.normalise_doc(doc, side.idx)   # the node's index after "!=" too
    if isinstance(doc, dict) and isinstance(doc.get("cause"), str):
        # the prevIndex or waitIndex sent, as its token: each server got its own number
        doc["cause"] = re.sub(r"\[(\d+) != ", lambda m: f"[{sent.get(m.group(1), m.group(1))} != ",
                              doc["cause"])
        doc["cause"] = re.sub(r"\[(\d+)/(\d+)\]", lambda m: f"[{side.idx(int(m.group(1)))}/"
                                                            f"{sent.get(m.group(2), m.group(2))}]",
                              doc["cause"])
    if not keys_sorted:
        _sort_nodes(doc)
    return status, h, _strip_member_specific(doc)


def call(side: Side, req: v2gen.Req):
    """One Req on one server -> (comparable answer, the raw answer)."""
    sent: dict = {}
    path = side.resolve(req.path, sent)
    body = side.resolve(req.body.decode("latin-1"), sent).replace(
        "{peer}", side.peer).encode("latin-1")
    raw = send(side, req.method, path, body, req.ctype)
    sorted_ = "sorted=true" in req.path
    return answer(side, raw, req.path, sent, sorted_), raw


def node_of(raw) -> Optional[dict]:
    if len(raw) < 3 or raw[0] not in (200, 201):
        return None
    try:
        doc = json.loads(raw[2])
    except ValueError:
        return None
    return doc.get("node") if isinstance(doc, dict) else None


def settle(side: Side, raw) -> tuple:
    """After a write that gave its node a TTL of 0 or 1 s: the next event on that key
    (its expiry), so that the index moves the same way on both servers before the
    next request."""
    node = node_of(raw)
    if node is None or "key" not in node:
        return ("no node",)
    path = v2gen.quote_key(node["key"]) + f"?wait=true&waitIndex={node['modifiedIndex'] + 1}"
    ans = answer(side, send(side, "GET", path, timeout=SETTLE_TIMEOUT), path, {})
    if len(ans) == 3:     # the index when the watcher came: before or after the expiry
        ans[1].pop("x-etcd-index", None)
    return ans


def wait(sides: list, w: v2gen.Wait, write) -> list:
    """A wait=true GET on each server at once, then the write that wakes it (on
    both; ``write`` compares its answers), then each wait's answer or "timeout"."""
    results: list = [None] * len(sides)
    threads, paths = [], []
    before = [s.watchers() for s in sides]
    for i, side in enumerate(sides):
        sent: dict = {}
        path = side.resolve(w.path, sent)
        paths.append((path, sent))

        def run(i=i, side=side, path=path, sent=sent):
            raw = send(side, "GET", path, timeout=WAIT_TIMEOUT, stream=w.stream)
            results[i] = (side, raw)
        t = threading.Thread(target=run, daemon=True)
        t.start()
        threads.append(t)
    # The watcher must be there before the write (or have answered already): one
    # without a waitIndex starts at the index it sees, and X-Etcd-Index is the index
    # when it was registered.
    for i, side in enumerate(sides):
        deadline = time.monotonic() + 10
        while threads[i].is_alive() and side.watchers() <= before[i] and \
                time.monotonic() < deadline:
            time.sleep(0.05)
    if w.wake:
        write(v2gen.Req("PUT", w.wake, b"value=wake"))
    for t in threads:
        t.join(WAIT_TIMEOUT + 10)
    out = []
    for (side, raw), (path, sent) in zip(results, paths):
        out.append(answer(side, raw, w.path, sent))
    return out
