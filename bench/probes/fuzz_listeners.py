"""A million hostile inputs across every listener of two running members, cheaply.

    nice -n 10 python -m bench.probes.fuzz_listeners --inputs 1000000 --max-seconds 3600

The hypothesis-driven test (tests/integration/test_fuzz_listeners.py) shrinks
failures but costs ~20 ms per input here; this probe draws inputs from a seeded
``random.Random`` and keeps many in flight: unary gRPC calls pipelined on one
HTTP/2 connection per engine (grpcio futures), several sockets in parallel for the
byte-level listeners. Member A runs the native engine with the v2 API and a metrics
URL; member B the grpcio engine. Listeners and what an input is there:

- grpc-native / grpc-grpcio: a unary method and a body (random bytes, or a valid
  request of that method with bytes flipped, cut or inserted);
- h2: an HTTP/2 connection with random frames (and gRPC messages whose length
  prefix lies), closed by a PING so the answer is known to be complete;
- gateway: a POST of random bytes or random JSON to a v3 JSON route (HTTP/1.1);
- v2: a random method, /v2 path, query and form body;
- metrics: a random request line, header and path on the metrics URL;
- peer: random bytes, or a hello for another cluster or member, on the peer port.

Every answer is classified; a "dirty" one (a gRPC INTERNAL that is not grpc's
unmarshal error, UNAVAILABLE, DEADLINE_EXCEEDED, a Python traceback, an HTTP 5xx
that is not a mapped JSON error, an HTTP answer that does not parse) is counted and
the first few are printed. At the end: both members' processes (core + workers)
must be the ones started (0 crashes, 0 restarts), RSS before / peak / after, and a
put + get through each member. Exit 0 only if all of that holds.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

import grpc

from bench.servers import free_port, rss_kib
from kvcore.api import rpc_pb2, v3election_pb2, v3lock_pb2
from kvcore.server.peer import MAGIC, _HELLO

# Methods left out: Lock and Campaign wait for a holder by design, Defragment rewrites
# the file, membership changes could take the one-member cluster's quorum away, and
# the streaming ones are not unary.
SKIP = ("/Defragment", ".Lock/Lock", ".Election/Campaign", "/MemberAdd", "/MemberRemove",
        "/MemberUpdate", "/MemberPromote", "/Snapshot", "/Watch", "/LeaseKeepAlive",
        "/Observe")
# Hash and HashKV scan the whole store: kept, but rarer.
RARE = ("/Hash", "/HashKV")

SHARES = {"grpc-native": 0.30, "grpc-grpcio": 0.15, "h2": 0.10, "gateway": 0.15,
          "v2": 0.10, "metrics": 0.10, "peer": 0.10}


def unary_methods():
    """[(path, request class, valid seed bodies)]."""
    out = []
    for mod in (rpc_pb2, v3lock_pb2, v3election_pb2):
        for svc in mod.DESCRIPTOR.services_by_name.values():
            for m in svc.methods:
                path = f"/{svc.full_name}/{m.name}"
                if m.client_streaming or m.server_streaming or path.endswith(SKIP):
                    continue
                cls = _message_class(m.input_type)
                out.append((path, cls, _seeds(cls)))
    return out


def _message_class(desc):
    for mod in (rpc_pb2, v3lock_pb2, v3election_pb2):
        if desc.file.name == mod.DESCRIPTOR.name:
            return getattr(mod, desc.name)
    from google.protobuf import message_factory
    return message_factory.GetMessageClass(desc)


def _seeds(cls) -> list[bytes]:
    """A few valid requests: every scalar field set once, and the empty request."""
    msg = cls()
    for f in cls.DESCRIPTOR.fields:
        try:
            if f.type == f.TYPE_MESSAGE:
                continue
            if getattr(f, "is_repeated", False) or getattr(f, "label", 1) == 3:
                continue
            if f.type in (f.TYPE_BYTES,):
                setattr(msg, f.name, b"fuzz/" + f.name.encode())
            elif f.type == f.TYPE_STRING:
                setattr(msg, f.name, "fuzz-" + f.name)
            elif f.type == f.TYPE_BOOL:
                setattr(msg, f.name, True)
            elif f.type == f.TYPE_ENUM:
                setattr(msg, f.name, f.enum_type.values[-1].number)
            else:
                setattr(msg, f.name, 5)
        except (TypeError, ValueError):
            pass
    return [b"", msg.SerializeToString()]


def mutate(rng: random.Random, seed: bytes) -> bytes:
    b = bytearray(seed)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(4)
        if op == 0 and b:
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        elif op == 1 and b:
            del b[rng.randrange(len(b)):]
        elif op == 2:
            at = rng.randrange(len(b) + 1)
            b[at:at] = rng.randbytes(rng.randint(1, 8))
        else:
            if b:
                b[rng.randrange(len(b))] = rng.choice((0x00, 0x7F, 0x80, 0xFF, 0x0A, 0x12))
    return bytes(b)


class Tally:
    """Outcomes per listener, and the first dirty answers verbatim."""

    def __init__(self):
        self.lock = threading.Lock()
        self.counts = collections.defaultdict(collections.Counter)
        self.dirty = []
        self.messages = collections.Counter()   # gRPC error details, for the report

    def add(self, listener: str, outcome: str, dirty: bool = False, detail: str = ""):
        with self.lock:
            self.counts[listener][outcome] += 1
            if dirty:
                self.counts[listener]["DIRTY"] += 1
                if len(self.dirty) < 20:
                    self.dirty.append((listener, outcome, detail[:300]))
                    print(f"DIRTY {listener} {outcome} {detail[:300]}", flush=True)

    def total(self) -> int:
        with self.lock:
            return sum(c[k] for c in self.counts.values() for k in c if k != "DIRTY")


# ---- unary gRPC, pipelined on one connection -------------------------------

def grpc_driver(name, endpoint, n, rng, tally, stop, window=64):
    methods = unary_methods()
    weights = [0.05 if p.endswith(RARE) else 1.0 for p, _, _ in methods]
    channel = grpc.insecure_channel(endpoint)
    calls = {p: channel.unary_unary(p) for p, _, _ in methods}
    sent = 0
    while sent < n and not stop.is_set():
        batch = []
        for _ in range(min(window, n - sent)):
            path, _, seeds = rng.choices(methods, weights)[0]
            if rng.random() < 0.5:
                body = rng.randbytes(rng.randint(0, 128))
            else:
                body = mutate(rng, rng.choice(seeds))
            batch.append((path, body, calls[path].future(body, timeout=30)))
        for path, body, fut in batch:
            try:
                fut.result()
                tally.add(name, "OK")
            except grpc.RpcError as e:
                code, details = e.code(), e.details() or ""
                dirty = code in (grpc.StatusCode.DEADLINE_EXCEEDED,
                                 grpc.StatusCode.UNAVAILABLE) or "Traceback" in details
                # a decode error must be grpc's INTERNAL unmarshal error, as in etcd
                dirty = dirty or (code != grpc.StatusCode.INTERNAL and "Error parsing" in details)
                if code == grpc.StatusCode.INTERNAL and \
                        not details.startswith("grpc: error unmarshalling request"):
                    dirty = True
                tally.add(name, code.name, dirty, f"{path} {body!r} {details}")
                with tally.lock:
                    tally.messages[f"{code.name}: {details[:70]}"] += 1
        sent += len(batch)
    channel.close()


# ---- raw HTTP/2 ------------------------------------------------------------

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + \
        struct.pack(">I", sid & 0x7FFFFFFF) + payload


def _lit(name: bytes, value: bytes) -> bytes:
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


GRPC_HEADERS = b"".join(_lit(k, v) for k, v in (
    (b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/etcdserverpb.KV/Range"),
    (b":authority", b"localhost"), (b"content-type", b"application/grpc"),
    (b"te", b"trailers")))


def read_until_closed(s, want_ping=None, timeout=5.0):
    """-> (frame types seen, 'ping'|'eof'|'timeout')."""
    s.settimeout(timeout)
    buf, seen = b"", []
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        while len(buf) >= 9:
            n = int.from_bytes(buf[:3], "big")
            if len(buf) < 9 + n:
                break
            ftype, flags, payload = buf[3], buf[4], buf[9:9 + n]
            buf = buf[9 + n:]
            seen.append(ftype)
            if ftype == 6 and flags & 1 and payload == want_ping:
                return seen, "ping"
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            break
        except OSError:
            return seen, "eof"
        if not chunk:
            return seen, "eof"
        buf += chunk
    return seen, "timeout"


def h2_case(port, rng, tally):
    out = PREFACE + frame(4, 0, 0)
    if rng.random() < 0.3:   # a gRPC call whose message length lies
        body = rng.randbytes(rng.randint(0, 32))
        out += frame(1, 4, 1, GRPC_HEADERS)
        out += frame(0, 1, 1, b"\x00" + struct.pack(">I", rng.getrandbits(32)) + body)
    for _ in range(rng.randint(1, 6)):
        out += frame(rng.randint(0, 12), rng.getrandbits(8), rng.randint(0, 9),
                     rng.randbytes(rng.randint(0, 48)))
    ping = rng.randbytes(8)
    out += frame(6, 0, 0, ping)
    with socket.create_connection(("127.0.0.1", port), 5) as s:
        try:
            s.sendall(out)
        except OSError:
            tally.add("h2", "refused-early")
            return
        seen, how = read_until_closed(s, ping)
    if how == "timeout":   # nghttp2 waits for a CONTINUATION or a longer frame: fine
        tally.add("h2", "waiting")
    elif 7 in seen:
        tally.add("h2", "goaway")
    elif how == "eof":
        tally.add("h2", "closed")
    else:
        tally.add("h2", "ping-ack" + ("+rst" if 3 in seen else ""))


# ---- HTTP/1.1 listeners ----------------------------------------------------

def http_exchange(port, request: bytes, timeout=10.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), 5) as s:
        try:
            s.sendall(request)
        except OSError:
            return b""
        s.settimeout(timeout)
        resp = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                resp += chunk
        except (socket.timeout, ConnectionResetError):
            if not resp:
                return b"TIMEOUT"
    return resp


def classify_http(listener, tally, resp: bytes, what: str, json_5xx=True):
    if resp == b"":
        tally.add(listener, "closed")
        return
    if resp == b"TIMEOUT":
        tally.add(listener, "timeout", True, what)
        return
    head, _, payload = resp.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].split()
    if len(status) < 2 or not status[0].startswith(b"HTTP/1.") or not status[1].isdigit():
        tally.add(listener, "unparsable", True, f"{what} -> {resp[:200]!r}")
        return
    code = int(status[1])
    dirty = b"Traceback" in resp
    length = next((int(l.split(b":", 1)[1]) for l in head.split(b"\r\n")[1:]
                   if l.lower().startswith(b"content-length:")), None)
    if length is not None:   # a request with an embedded blank line gets two answers
        payload = payload[:length]
    if code >= 500:
        try:
            body = json.loads(payload)
            dirty = dirty or not isinstance(body, dict) or not (
                "code" in body or "errorCode" in body or "health" in body)
        except ValueError:
            dirty = True
    tally.add(listener, str(code), dirty, f"{what} -> {resp[:300]!r}")


GATEWAY = ["/v3/kv/range", "/v3/kv/put", "/v3/kv/deleterange", "/v3/kv/txn",
           "/v3/kv/compaction", "/v3/lease/grant", "/v3/lease/revoke",
           "/v3/lease/timetolive", "/v3/lease/leases", "/v3/auth/authenticate",
           "/v3/auth/user/add", "/v3/auth/user/get", "/v3/auth/role/add",
           "/v3/maintenance/status", "/v3/maintenance/alarm", "/v3/cluster/member/list",
           "/v3/nope", "/v3beta/kv/range", "/health", "/version"]
JSON_KEYS = ["key", "range_end", "value", "lease", "ID", "TTL", "name", "password",
             "compare", "success", "failure", "request_put", "request_range", "limit",
             "revision", "keys", "x", "target", "result", "action"]


def rand_json(rng, depth=0):
    r = rng.random()
    if depth > 2 or r < 0.4:
        return rng.choice([None, True, False, rng.randint(-2 ** 63, 2 ** 64),
                           rng.random() * 1e10, "", "a2V5", "!!", "x" * rng.randint(0, 20),
                           -1, 0])
    if r < 0.6:
        return [rand_json(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {rng.choice(JSON_KEYS): rand_json(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def gateway_case(port, rng, tally):
    path = rng.choice(GATEWAY)
    if rng.random() < 0.4:
        body = rng.randbytes(rng.randint(0, 96))
    else:
        body = json.dumps(rand_json(rng)).encode()
    req = (f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
           f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body
    classify_http("gateway", tally, http_exchange(port, req), f"{path} {body[:80]!r}")


V2_PATHS = ["/v2/keys/", "/v2/keys/a", "/v2/keys/dir/", "/v2/keys/a/b/c", "/v2/keys/%zz",
            "/v2/keys/_hidden", "/v2/members", "/v2/members/1", "/v2/machines",
            "/v2/stats/self", "/v2/stats/store", "/v2/stats/leader", "/v2/auth/users",
            "/v2/nope", "/v2/keys//x/../y"]
V2_PARAMS = ["value", "ttl", "dir", "prevExist", "prevValue", "prevIndex", "recursive",
             "sorted", "quorum", "refresh", "noValueOnSuccess", "consistent", "stream"]
V2_VALUES = ["", "true", "false", "-1", "5", "x", "%", "99999999999999999999"]


def v2_case(port, rng, tally):
    method = rng.choice(["GET", "PUT", "POST", "DELETE", "HEAD", "PATCH", "GE T", "OPTIONS"])
    path = rng.choice(V2_PATHS)
    if rng.random() < 0.2:
        path += rng.randbytes(rng.randint(1, 6)).hex()
    q = "&".join(f"{rng.choice(V2_PARAMS)}={rng.choice(V2_VALUES)}"
                 for _ in range(rng.randint(0, 3)))
    body = q.encode() if rng.random() < 0.5 else rng.randbytes(rng.randint(0, 40))
    target = path + ("?" + q if rng.random() < 0.5 else "")
    req = (f"{method} {target} HTTP/1.1\r\nHost: localhost\r\n"
           f"Content-Type: application/x-www-form-urlencoded\r\n"
           f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body
    classify_http("v2", tally, http_exchange(port, req), f"{method} {target} {body[:60]!r}")


METRICS_PATHS = ["/metrics", "/health", "/health?serializable=true", "/health?x=%",
                 "/readyz", "/livez", "/version", "/", "/debug/vars", "/metrics/../x"]


def metrics_case(port, rng, tally):
    r = rng.random()
    if r < 0.2:    # raw bytes where a request line belongs
        req = rng.randbytes(rng.randint(0, 80)) + b"\r\n\r\n"
    else:
        method = rng.choice([b"GET", b"POST", b"HEAD", b"PUT", b"\x00", b"GET GET"])
        path = rng.choice(METRICS_PATHS).encode()
        if r < 0.5:
            path += rng.randbytes(rng.randint(1, 10))
        hdrs = b"Host: localhost\r\n"
        if rng.random() < 0.3:
            hdrs += rng.randbytes(rng.randint(0, 30)) + b": " + rng.randbytes(4) + b"\r\n"
        body = b""
        if rng.random() < 0.2:
            length = rng.randint(-5, 99)
            hdrs += b"Content-Length: " + str(length).encode() + b"\r\n"
            body = rng.randbytes(max(0, length - rng.choice((0, 0, 0, 1))))
        req = method + b" " + path + b" HTTP/1.1\r\n" + hdrs + b"Connection: close\r\n\r\n" + body
    resp = http_exchange(port, req, timeout=2.0)
    if resp == b"TIMEOUT":     # a request whose body never comes: a wait, then a close
        tally.add("metrics", "waited")
        return
    classify_http("metrics", tally, resp, repr(req[:100]))


def peer_case(port, cluster_id, member_id, rng, tally):
    if rng.random() < 0.4:
        out = rng.randbytes(rng.randint(0, 64))
    else:
        cid = cluster_id if rng.random() < 0.5 else rng.getrandbits(64)
        to = member_id if rng.random() < 0.5 else rng.getrandbits(64)
        lane = rng.choice([0, 1, 2, 3, rng.getrandbits(8)])
        if cid == cluster_id and to == member_id and lane in (0, 1, 2):
            cid ^= 1   # a correct hello is a member's own traffic (trusted, as etcd's)
        out = MAGIC + _HELLO.pack(cid, rng.getrandbits(64), to, lane) + \
            rng.randbytes(rng.randint(0, 64))
    with socket.create_connection(("127.0.0.1", port), 5) as s:
        try:
            s.sendall(out)
            s.shutdown(socket.SHUT_WR)
            s.settimeout(15)
            got = 0
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += len(chunk)
            tally.add("peer", "answered+closed" if got else "closed")
        except socket.timeout:
            tally.add("peer", "timeout", True, repr(out[:80]))
        except OSError:
            tally.add("peer", "reset")


def socket_driver(case, n, seed, tally, stop, threads):
    per = [n // threads + (1 if i < n % threads else 0) for i in range(threads)]

    def run(count, tseed):
        rng = random.Random(tseed)
        for _ in range(count):
            if stop.is_set():
                return
            try:
                case(rng)
            except OSError as e:   # connect refused / reset before a byte: count it
                tally.add(case.__name__, f"oserror-{type(e).__name__}", True, str(e))

    ts = [threading.Thread(target=run, args=(c, seed * 1000 + i), daemon=True)
          for i, c in enumerate(per)]
    for t in ts:
        t.start()
    return ts


# ---- members -----------------------------------------------------------------



def children(pid) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


class Member:
    def __init__(self, base, name, extra):
        self.port, self.peer_port, self.metrics_port = free_port(), free_port(), free_port()
        self.base = base
        argv = [sys.executable, "-m", "kvcore", "--name", name,
                "--data-dir", os.path.join(base, name + ".etcd"), "--workers", "1",
                "--listen-client-urls", f"http://127.0.0.1:{self.port}",
                "--advertise-client-urls", f"http://127.0.0.1:{self.port}",
                "--listen-peer-urls", f"http://127.0.0.1:{self.peer_port}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{self.peer_port}",
                "--initial-cluster", f"{name}=http://127.0.0.1:{self.peer_port}",
                "--listen-metrics-urls", f"http://127.0.0.1:{self.metrics_port}", *extra]
        self.log_path = os.path.join(base, name + ".log")
        self.proc = subprocess.Popen(argv, stdout=open(self.log_path, "w"),
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        self.endpoint = f"127.0.0.1:{self.port}"
        self._wait_ready()
        self.pids = self.processes()
        st = self.status()
        self.cluster_id, self.member_id = st.header.cluster_id, st.header.member_id

    def _wait_ready(self):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(open(self.log_path).read()[-3000:])
            try:
                self.status()
                return
            except grpc.RpcError:
                time.sleep(0.2)
        raise TimeoutError("member did not start")

    def status(self):
        from kvcore.api import rpc_pb2_grpc
        with grpc.insecure_channel(self.endpoint) as ch:
            return rpc_pb2_grpc.MaintenanceStub(ch).Status(rpc_pb2.StatusRequest(), timeout=5)

    def processes(self):
        return sorted([self.proc.pid] + children(self.proc.pid))

    def intact(self) -> bool:
        return self.proc.poll() is None and self.processes() == self.pids

    def serves(self) -> bool:
        """A put and a get, after disarming the alarms a fuzzed Alarm request may
        have raised (clients may: NOSPACE then refuses puts, as etcd does)."""
        from kvcore.api import rpc_pb2_grpc
        with grpc.insecure_channel(self.endpoint) as ch:
            maint = rpc_pb2_grpc.MaintenanceStub(ch)
            try:
                for a in maint.Alarm(rpc_pb2.AlarmRequest(), timeout=30).alarms:
                    print(f"{self.endpoint}: disarming {a}".strip(), flush=True)
                    maint.Alarm(rpc_pb2.AlarmRequest(
                        action=rpc_pb2.AlarmRequest.DEACTIVATE, memberID=a.memberID,
                        alarm=a.alarm), timeout=30)
                kv = rpc_pb2_grpc.KVStub(ch)
                kv.Put(rpc_pb2.PutRequest(key=b"after-fuzz", value=b"ok"), timeout=30)
                got = kv.Range(rpc_pb2.RangeRequest(key=b"after-fuzz"), timeout=30)
            except grpc.RpcError as e:
                print(f"{self.endpoint}: {e.code().name} {e.details()}", flush=True)
                return False
        return got.kvs[0].value == b"ok"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--inputs", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--max-seconds", type=float, default=3600)
    ap.add_argument("--threads", type=int, default=3, help="sockets in parallel per listener")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args(argv)
    base = tempfile.mkdtemp(prefix="kvcore-fuzz-")
    a = Member(base, "native", ["--enable-v2"])
    b = Member(base, "grpcio", ["--grpc-engine", "grpcio"])
    members = (a, b)
    rss0 = sum(rss_kib(m.pids) for m in members)
    n = {k: int(args.inputs * v) for k, v in SHARES.items()}
    n["grpc-native"] += args.inputs - sum(n.values())
    tally, stop = Tally(), threading.Event()
    t0 = time.monotonic()
    print(f"fuzzing {args.inputs} inputs, seed {args.seed}: {n}; RSS {rss0} KiB", flush=True)

    def named(name, fn):
        fn.__name__ = name
        return fn

    threads = [threading.Thread(target=grpc_driver, daemon=True, args=(
        "grpc-native", a.endpoint, n["grpc-native"], random.Random(args.seed), tally, stop)),
        threading.Thread(target=grpc_driver, daemon=True, args=(
            "grpc-grpcio", b.endpoint, n["grpc-grpcio"], random.Random(args.seed + 1),
            tally, stop))]
    for t in threads:
        t.start()
    k = args.threads
    threads += socket_driver(named("h2", lambda r: h2_case(a.port, r, tally)),
                             n["h2"], args.seed + 2, tally, stop, k)
    threads += socket_driver(named("gateway", lambda r: gateway_case(a.port, r, tally)),
                             n["gateway"], args.seed + 3, tally, stop, k)
    threads += socket_driver(named("v2", lambda r: v2_case(a.port, r, tally)),
                             n["v2"], args.seed + 4, tally, stop, k)
    threads += socket_driver(named("metrics", lambda r: metrics_case(a.metrics_port, r, tally)),
                             n["metrics"], args.seed + 5, tally, stop, k)
    threads += socket_driver(named("peer", lambda r: peer_case(
        a.peer_port, a.cluster_id, a.member_id, r, tally)), n["peer"], args.seed + 6,
        tally, stop, k)
    peak, broken = rss0, False
    while any(t.is_alive() for t in threads):
        time.sleep(10)
        peak = max(peak, sum(rss_kib(m.pids) for m in members))
        done, el = tally.total(), time.monotonic() - t0
        print(f"{el:7.0f} s {done:9d} inputs ({done / max(el, 1):.0f}/s) RSS {peak} KiB peak",
              flush=True)
        if not all(m.intact() for m in members):
            print("a member's process died or was restarted", flush=True)
            broken = True
            stop.set()
        if el > args.max_seconds:
            print("time bound reached", flush=True)
            stop.set()
    for t in threads:
        t.join(60)
    elapsed = time.monotonic() - t0
    intact = [m.intact() for m in members]
    rss1 = sum(rss_kib(m.pids) for m in members)
    serves = [m.serves() if ok else False for m, ok in zip(members, intact)]
    counts = {k: dict(v) for k, v in tally.counts.items()}
    dirty = sum(v.get("DIRTY", 0) for v in counts.values())
    result = {"inputs": tally.total(), "planned": args.inputs, "seed": args.seed,
              "seconds": round(elapsed), "rss_kib_before": rss0, "rss_kib_peak": peak,
              "rss_kib_after": rss1, "members_intact": intact, "serve_after": serves,
              "dirty": dirty, "outcomes": counts,
              "grpc_errors": dict(tally.messages.most_common(60))}
    print(json.dumps(result, indent=1, sort_keys=True))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1, sort_keys=True)
    for m in members:
        m.stop()
    shutil.rmtree(base, ignore_errors=True)
    ok = not broken and all(intact) and all(serves) and dirty == 0 and \
        result["inputs"] >= args.inputs
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
