"""Client traffic of one round: KV clients that record a history, and watchers.

Every put writes a value no other put writes (client id and sequence number), so a
value names the write that made it. A write whose answer is lost (time-out, a dropped
connection) is recorded with an unknown outcome: it may have happened or not. A read
that fails records nothing. Every loop is bounded by the round's stop event and each
call by its own deadline.
"""
from __future__ import annotations

import math
import random
import threading
import time

import grpc

from kvcore.api import rpc_pb2, rpc_pb2_grpc
from kvcore.robust.checkers import Event, Response, WatchRecord
from kvcore.robust.linearizability import Op

CALL_TIMEOUT = 1.5


class KVClient(threading.Thread):
    def __init__(self, cid: int, endpoints: list, keys: list, history: list,
                 lock: threading.Lock, stop: threading.Event, seed: int, max_ops: int):
        super().__init__(daemon=True)
        self.cid, self.endpoints, self.keys = cid, endpoints, keys
        self.history, self.lock, self.stop = history, lock, stop
        self.rng = random.Random(seed)
        self.max_ops = max_ops

    def run(self) -> None:
        chans = [grpc.insecure_channel(e) for e in self.endpoints]
        kvs = [rpc_pb2_grpc.KVStub(c) for c in chans]
        try:
            for n in range(self.max_ops):
                if self.stop.is_set():
                    break
                op = self._one(self.rng.choice(kvs), n)
                if op is not None:
                    with self.lock:
                        self.history.append(op)
        finally:
            for c in chans:
                c.close()

    def _one(self, kv, n: int):
        rng = self.rng
        key = rng.choice(self.keys)
        kind = rng.choice(["put", "put", "get", "get", "cas", "delete"])
        op = Op(self.cid, kind, key)
        k = key.encode()
        try:
            op.call = time.monotonic()
            if kind == "put":
                op.arg = f"c{self.cid}-{n}"
                kv.Put(rpc_pb2.PutRequest(key=k, value=op.arg.encode()), timeout=CALL_TIMEOUT)
            elif kind == "delete":
                kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=k), timeout=CALL_TIMEOUT)
            elif kind == "get":
                r = kv.Range(rpc_pb2.RangeRequest(key=k), timeout=CALL_TIMEOUT)
                op.result = r.kvs[0].value.decode() if r.kvs else None
            else:
                with self.lock:
                    seen = [o.arg for o in self.history[-50:] if o.key == key and o.kind == "put"]
                expected = rng.choice(seen) if seen else "none"
                op.arg = (expected, f"c{self.cid}-{n}")
                r = kv.Txn(rpc_pb2.TxnRequest(
                    compare=[rpc_pb2.Compare(key=k, target=rpc_pb2.Compare.VALUE,
                                             result=rpc_pb2.Compare.EQUAL,
                                             value=expected.encode())],
                    success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(
                        key=k, value=op.arg[1].encode()))]), timeout=CALL_TIMEOUT)
                op.result = r.succeeded
            op.ret = time.monotonic()
        except grpc.RpcError:
            time.sleep(0.02)      # a member that is down refuses at once: no hot loop
            if kind == "get":
                return None       # a failed read tells nothing
            op.ret = math.inf     # a failed write may or may not have happened
        return op


def to_event(ev) -> Event:
    kv = ev.kv
    kind = "delete" if ev.type == 1 else "put"
    prev = ev.prev_kv.value.decode() if ev.HasField("prev_kv") else None
    return Event(kv.mod_revision, kv.key.decode(), kind,
                 kv.value.decode() if kind == "put" else None, prev)


def _watch_request(prefix: str, start_rev: int, progress: bool):
    key = prefix.encode()
    end = key[:-1] + bytes([key[-1] + 1])
    return rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(
        key=key, range_end=end, start_revision=start_rev, prev_kv=True,
        progress_notify=progress))


class Watcher(threading.Thread):
    """Watches the round's prefix from its first revision; when the stream breaks it
    reopens it on another member at the revision after the last event it saw."""

    def __init__(self, wid: int, endpoints: list, prefix: str, start_rev: int,
                 stop: threading.Event, seed: int):
        super().__init__(daemon=True)
        self.endpoints, self.prefix, self.stop = endpoints, prefix, stop
        self.rng = random.Random(seed)
        self.record = WatchRecord(wid, start_rev)
        self.next_rev = start_rev
        self.errors: list[str] = []
        self.deleted_at: dict[str, float] = {}   # key -> when a delete of it arrived

    def run(self) -> None:
        while not self.stop.is_set():
            self._stream(self.rng.choice(self.endpoints))

    def _stream(self, endpoint: str) -> None:
        ch = grpc.insecure_channel(endpoint)
        try:
            q: list = [_watch_request(self.prefix, self.next_rev, True)]
            done = threading.Event()

            def requests():
                yield q[0]
                while not (done.is_set() or self.stop.is_set()):
                    time.sleep(0.05)

            call = rpc_pb2_grpc.WatchStub(ch).Watch(requests())
            watcher = threading.Thread(target=self._cancel_on_stop, args=(call, done),
                                       daemon=True)
            watcher.start()
            for resp in call:
                if resp.canceled:
                    self.errors.append(f"watch canceled: {resp.cancel_reason}")
                    break
                if resp.created:
                    continue
                if not resp.events:
                    self.record.responses.append(Response([], resp.header.revision, True))
                    continue
                evs = [to_event(e) for e in resp.events]
                now = time.monotonic()
                for e in evs:
                    if e.kind == "delete":
                        self.deleted_at.setdefault(e.key, now)
                self.record.responses.append(Response(evs, resp.header.revision))
                self.next_rev = evs[-1].rev + 1
            done.set()
        except grpc.RpcError:
            time.sleep(0.1)
        finally:
            ch.close()

    def _cancel_on_stop(self, call, done: threading.Event) -> None:
        while not done.is_set():
            if self.stop.wait(0.1):
                call.cancel()
                return


SENTINEL = "~end"


def replay(endpoint: str, prefix: str, start_rev: int, timeout: float = 20.0) -> list[Event]:
    """Every event of the prefix from start_rev on, read by one fresh watch. A sentinel
    put (``prefix + SENTINEL``) marks the end: the watch reads until it sees it, and
    the sentinel is not part of what is returned."""
    ch = grpc.insecure_channel(endpoint)
    try:
        kv = rpc_pb2_grpc.KVStub(ch)
        end = kv.Put(rpc_pb2.PutRequest(key=(prefix + SENTINEL).encode(), value=b"."),
                     timeout=timeout).header.revision
        out: list[Event] = []
        stop = threading.Event()

        def requests():
            yield _watch_request(prefix, start_rev, False)
            stop.wait(timeout)

        call = rpc_pb2_grpc.WatchStub(ch).Watch(requests(), timeout=timeout)
        try:
            for resp in call:
                for e in resp.events:
                    ev = to_event(e)
                    if ev.rev >= end:
                        return out
                    out.append(ev)
        finally:
            stop.set()
            call.cancel()
        raise TimeoutError(f"replay of {prefix!r} ended before revision {end}")
    except grpc.RpcError as e:
        # E.g. NOSPACE on a host whose disk filled: the run stops with its report
        # written, not with a traceback.
        raise RuntimeError(f"replay of {prefix!r}: {e.code().name}: {e.details()}") from None
    finally:
        ch.close()


class LeaseClient(threading.Thread):
    """Holds a key under its own lease and keeps the lease alive, as a lock holder or
    a Patroni leader does, through whichever member answers. It records each
    keep-alive answered with a TTL: (when the request was sent, the TTL). Whatever
    the faults, the lease must not be revoked before send time + TTL (the TTL counts
    from the renewal, which is after the send), so a watcher that sees its key
    deleted sooner has caught a lease that was promised and taken away."""

    def __init__(self, cid: int, endpoints: list, prefix: str, stop: threading.Event,
                 seed: int, ttl: int = 3, every: float = 0.3, let_go: float = math.inf):
        """``let_go``: seconds after the grant when it stops its keep-alives (the
        lease then expires within the round: its revocation is what is checked)."""
        super().__init__(daemon=True)
        self.endpoints, self.stop, self.ttl, self.every = endpoints, stop, ttl, every
        self.let_go = let_go
        self.rng = random.Random(seed)
        self.key = f"{prefix}lease{cid}"
        self.lease_id = 0
        self.promises: list[tuple[float, int]] = []

    def run(self) -> None:
        chans = {e: grpc.insecure_channel(e) for e in self.endpoints}
        try:
            while not self.stop.is_set() and not self.lease_id:
                self._grant(chans[self.rng.choice(self.endpoints)])
            # One member at a time, as a client library keeps its connection: another
            # only after a keep-alive failed.
            until = time.monotonic() + self.let_go
            at = self.rng.choice(self.endpoints)
            while not self.stop.is_set() and time.monotonic() < until:
                if not self._keepalive(chans[at]):
                    at = self.rng.choice([e for e in self.endpoints if e != at] or [at])
                self.stop.wait(self.every)
        finally:
            for c in chans.values():
                c.close()

    def _grant(self, ch) -> None:
        try:
            sent = time.monotonic()
            lid = rpc_pb2_grpc.LeaseStub(ch).LeaseGrant(
                rpc_pb2.LeaseGrantRequest(TTL=self.ttl), timeout=CALL_TIMEOUT).ID
            self.promises.append((sent, self.ttl))
            rpc_pb2_grpc.KVStub(ch).Put(rpc_pb2.PutRequest(
                key=self.key.encode(), value=b"held", lease=lid), timeout=CALL_TIMEOUT)
            self.lease_id = lid
        except grpc.RpcError:
            time.sleep(0.05)

    def _keepalive(self, ch) -> None:
        try:
            sent = time.monotonic()
            call = rpc_pb2_grpc.LeaseStub(ch).LeaseKeepAlive(
                iter([rpc_pb2.LeaseKeepAliveRequest(ID=self.lease_id)]), timeout=CALL_TIMEOUT)
            for resp in call:
                if resp.TTL > 0:
                    self.promises.append((sent, resp.TTL))
                break
            call.cancel()
            return True
        except grpc.RpcError:
            return False
