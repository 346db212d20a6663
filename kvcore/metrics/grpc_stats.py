"""grpc_server_* (go-grpc-prometheus, as etcd registers it) and the client gRPC byte
counters, counted in the workers and merged by the core at scrape time.

Worker side: ``GrpcStats.instrument(methods)`` wraps every handler; a call costs a
few integer increments (a histogram observation only with ``--metrics extensive``).
``snapshot()`` is what a worker sends the core when it asks (marshal: ints, tuples,
dicts and lists only).

Core side: ``GrpcFamilies.collect(snapshots)`` sums the workers' snapshots into
etcd's families, with every (method, code) pre-set to 0 for the services etcd
registers, as grpc_prometheus.Register does.
"""
from __future__ import annotations

import asyncio
import marshal
import time
from bisect import bisect_left

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

from kvcore.api import rpc_pb2, v3election_pb2, v3lock_pb2
from kvcore.api.methods import HEALTH_CHECK, HEALTH_WATCH, PATHS
from kvcore.engine.base import Framed, GrpcError, MethodTable
from kvcore.metrics.fast import add_histogram

# grpc_prometheus's DefBuckets for grpc_server_handling_seconds.
HANDLING_BUCKETS = [.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10]
CODE_NAMES = ["OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound",
              "AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition",
              "Aborted", "OutOfRange", "Unimplemented", "Internal", "Unavailable", "DataLoss",
              "Unauthenticated"]


def _method_types() -> dict[str, str]:
    out = {HEALTH_CHECK: "unary", HEALTH_WATCH: "server_stream"}
    for mod in (rpc_pb2, v3lock_pb2, v3election_pb2):
        for s in mod.DESCRIPTOR.services_by_name.values():
            for m in s.methods:
                t = ("bidi_stream" if m.client_streaming and m.server_streaming else
                     "client_stream" if m.client_streaming else
                     "server_stream" if m.server_streaming else "unary")
                out[f"/{s.full_name}/{m.name}"] = t
    return out


TYPES = _method_types()
# (service, method, type) per method id.
LABELS = [(p.split("/")[1], p.split("/")[2], TYPES[p]) for p in PATHS]
# etcd registers its six etcdserverpb services and gRPC's health service before
# grpc_prometheus.Register; the Lock and Election services come later, so only calls
# to them make series.
PRESET = [i for i, p in enumerate(PATHS)
          if p.startswith("/etcdserverpb.") or p in (HEALTH_CHECK, HEALTH_WATCH)]


class _CountedRequests:
    """A stream's requests, each counted as the handler takes it; the engine's
    listen() (messages by callback) is passed through where it has one."""

    __slots__ = ("_inner", "_it", "_took", "listen")

    def __init__(self, inner, took):
        self._inner = inner
        self._it = inner.__aiter__()
        self._took = took
        self.listen = self._listen if hasattr(inner, "listen") else None

    def __aiter__(self):
        return self

    async def __anext__(self) -> bytes:
        msg = await self._it.__anext__()
        self._took(msg)
        return msg

    def _listen(self, on_message, on_end) -> None:
        if on_message is None:
            self._inner.listen(None, None)
            return
        took = self._took

        def counted(msg: bytes) -> None:
            took(msg)
            on_message(msg)
        self._inner.listen(counted, on_end)


# The code a stream the client cancelled is counted with, where etcd's handler turns
# the failed Send into something else than Canceled: Maintenance.Snapshot returns
# togRPCError(err), which makes grpc-go's status error (not context.Canceled) Unknown.
_CANCELLED_CODE = {PATHS.index("/etcdserverpb.Maintenance/Snapshot"): 2}


class GrpcStats:
    """One worker's counters, indexed by method id."""

    def __init__(self, extensive: bool = False):
        n = len(PATHS)
        self.started = [0] * n
        self.handled_ok = [0] * n
        self.failed: dict[tuple, int] = {}      # (method id, code) -> count
        self.received = [0] * n
        self.sent = [0] * n
        self.io = [0, 0]                        # message bytes received, sent
        self.unary_clients: dict[str, int] = {}   # client api version -> calls
        self.stream_clients: dict[str, int] = {}
        self.extensive = extensive
        self.handling: dict[int, list] = {}     # method id -> [bucket counts, sum]
        self.local_ranges = 0                   # Range calls answered by the worker itself

    def _failed(self, mid: int, exc: BaseException) -> None:
        code = exc.code if isinstance(exc, GrpcError) else (
            _CANCELLED_CODE.get(mid, 1) if isinstance(exc, asyncio.CancelledError) else 2)
        key = (mid, int(code))
        self.failed[key] = self.failed.get(key, 0) + 1

    def _client(self, kind: str, ctx) -> None:
        d = self.unary_clients if kind == "unary" else self.stream_clients
        ver = ctx.metadata.get("client-api-version", "unknown")
        d[ver] = d.get(ver, 0) + 1

    def _observe(self, mid: int, seconds: float) -> None:
        h = self.handling.get(mid)
        if h is None:
            h = self.handling[mid] = [[0] * (len(HANDLING_BUCKETS) + 1), 0.0]
        h[0][bisect_left(HANDLING_BUCKETS, seconds)] += 1
        h[1] += seconds

    def unary(self, mid: int, handler):
        # Locals, not attributes: this runs on every call (the Range/Put hot path).
        stats, started, received, sent, ok, io = (self, self.started, self.received, self.sent,
                                                  self.handled_ok, self.io)
        clients = self.unary_clients
        timed = self.extensive

        async def counted(request: bytes, ctx) -> bytes:
            started[mid] += 1
            received[mid] += 1
            io[0] += len(request)
            ver = ctx.metadata.get("client-api-version", "unknown")
            clients[ver] = clients.get(ver, 0) + 1
            t0 = time.perf_counter() if timed else 0.0
            try:
                resp = await handler(request, ctx)
            except BaseException as e:
                stats._failed(mid, e)
                if timed:
                    stats._observe(mid, time.perf_counter() - t0)
                raise
            sent[mid] += 1
            ok[mid] += 1
            io[1] += len(resp)
            if timed:
                stats._observe(mid, time.perf_counter() - t0)
            return resp
        return counted

    def stream(self, mid: int, handler):
        stats, io = self, self.io

        async def counted(requests, send, ctx) -> None:
            stats.started[mid] += 1
            stats._client("stream", ctx)
            t0 = time.perf_counter() if stats.extensive else 0.0

            def took(msg: bytes) -> None:
                stats.received[mid] += 1
                io[0] += len(msg)

            async def counted_send(msg: bytes) -> None:
                await send(msg)
                stats.sent[mid] += msg.count if type(msg) is Framed else 1
                io[1] += len(msg)

            nowait = getattr(ctx, "send_nowait", None)
            if nowait is not None:
                def counted_nowait(msg) -> bool:
                    if not nowait(msg):
                        return False
                    stats.sent[mid] += msg.count if type(msg) is Framed else 1
                    io[1] += len(msg)
                    return True
                ctx.send_nowait = counted_nowait
            try:
                await handler(_CountedRequests(requests, took), counted_send, ctx)
            except BaseException as e:
                stats._failed(mid, e)
                if t0:
                    stats._observe(mid, time.perf_counter() - t0)
                raise
            stats.handled_ok[mid] += 1
            if t0:
                stats._observe(mid, time.perf_counter() - t0)
        return counted

    def instrument(self, methods: MethodTable, method_id: dict) -> MethodTable:
        return MethodTable(
            unary={p: self.unary(method_id[p], h) for p, h in methods.unary.items()},
            stream={p: self.stream(method_id[p], h) for p, h in methods.stream.items()})

    def snapshot(self) -> bytes:
        clients = {("unary", v): n for v, n in self.unary_clients.items()}
        clients.update({("stream", v): n for v, n in self.stream_clients.items()})
        return marshal.dumps((self.started, self.handled_ok, self.failed, self.received,
                              self.sent, self.io[0], self.io[1], clients,
                              self.handling, self.local_ranges))


class Merged:
    """The sum of the workers' snapshots."""

    def __init__(self, snapshots: list[bytes]):
        n = len(PATHS)
        self.started = [0] * n
        self.handled: dict[tuple, int] = {}
        self.received = [0] * n
        self.sent = [0] * n
        self.rx_bytes = self.tx_bytes = self.local_ranges = 0
        self.client_requests: dict[tuple, int] = {}
        self.handling: dict[int, list] = {}
        for raw in snapshots:
            (started, ok, failed, received, sent, rx, tx, clients, handling,
             local_ranges) = marshal.loads(raw)
            for i in range(n):
                self.started[i] += started[i]
                self.received[i] += received[i]
                self.sent[i] += sent[i]
                if ok[i]:
                    self.handled[(i, 0)] = self.handled.get((i, 0), 0) + ok[i]
            for k, v in failed.items():
                self.handled[k] = self.handled.get(k, 0) + v
            for k, v in clients.items():
                self.client_requests[k] = self.client_requests.get(k, 0) + v
            for mid, (counts, total) in handling.items():
                h = self.handling.setdefault(mid, [[0] * len(counts), 0.0])
                h[0] = [a + b for a, b in zip(h[0], counts)]
                h[1] += total
            self.rx_bytes += rx
            self.tx_bytes += tx
            self.local_ranges += local_ranges


def _label_strings() -> tuple[list[str], list[list[str]]]:
    per_method = [f'grpc_method="{m}",grpc_service="{svc}",grpc_type="{t}"' for svc, m, t in LABELS]
    per_code = [[f'grpc_code="{c}",{lab}' for c in CODE_NAMES] for lab in per_method]
    return per_method, per_code


_METHOD_LABELS, _CODE_LABELS = _label_strings()
_HELP = {
    "grpc_server_started_total": ("counter", "Total number of RPCs started on the server."),
    "grpc_server_handled_total": ("counter", "Total number of RPCs completed on the server, "
                                  "regardless of success or failure."),
    "grpc_server_msg_received_total": ("counter", "Total number of RPC stream messages received on the server."),
    "grpc_server_msg_sent_total": ("counter", "Total number of gRPC stream messages sent by the server."),
}


def render_counters(m: Merged) -> str:
    """grpc_server_{started,handled,msg_received,msg_sent}_total in the text format,
    straight from precomputed label strings: ~700 series, a fraction of the time
    prometheus_client's generic renderer takes for them."""
    shown = sorted(set(PRESET) | {i for i, v in enumerate(m.started) if v})
    out = []
    for name, values in (("grpc_server_handled_total", None),
                         ("grpc_server_msg_received_total", m.received),
                         ("grpc_server_msg_sent_total", m.sent),
                         ("grpc_server_started_total", m.started)):
        typ, doc = _HELP[name]
        out.append(f"# HELP {name} {doc}\n# TYPE {name} {typ}\n")
        if values is None:
            handled = m.handled
            for i in shown:
                labels = _CODE_LABELS[i]
                out.extend(f"{name}{{{labels[c]}}} {handled.get((i, c), 0)}\n"
                           for c in range(len(CODE_NAMES)))
        else:
            out.extend(f"{name}{{{_METHOD_LABELS[i]}}} {values[i]}\n" for i in shown)
    return "".join(out)


def families(m: Merged, extensive: bool, with_counters: bool = True):
    lab = ["grpc_service", "grpc_method", "grpc_type"]
    started = CounterMetricFamily("grpc_server_started", "Total number of RPCs started on the server.", labels=lab)
    received = CounterMetricFamily("grpc_server_msg_received",
                                   "Total number of RPC stream messages received on the server.", labels=lab)
    sent = CounterMetricFamily("grpc_server_msg_sent",
                               "Total number of gRPC stream messages sent by the server.", labels=lab)
    handled = CounterMetricFamily(
        "grpc_server_handled", "Total number of RPCs completed on the server, regardless of success or failure.",
        labels=["grpc_code", *lab])
    shown = sorted(set(PRESET) | {i for i, v in enumerate(m.started) if v})
    for i in shown:
        lv = list(LABELS[i])
        started.add_metric(lv, m.started[i])
        received.add_metric(lv, m.received[i])
        sent.add_metric(lv, m.sent[i])
        for code, name in enumerate(CODE_NAMES):
            handled.add_metric([name, *lv], m.handled.get((i, code), 0))
    out = [started, handled, received, sent] if with_counters else []
    if extensive:
        h = HistogramMetricFamily(
            "grpc_server_handling_seconds",
            "Histogram of response latency (seconds) of gRPC that had been application-level "
            "handled by the server.", labels=lab)
        for i in shown:
            counts, total = m.handling.get(i, ([0] * (len(HANDLING_BUCKETS) + 1), 0.0))
            add_histogram(h, list(LABELS[i]), HANDLING_BUCKETS, counts, total)
        out.append(h)
    rx = CounterMetricFamily("etcd_network_client_grpc_received_bytes",
                             "The total number of bytes received from grpc clients.")
    rx.add_metric([], m.rx_bytes)
    tx = CounterMetricFamily("etcd_network_client_grpc_sent_bytes",
                             "The total number of bytes sent to grpc clients.")
    tx.add_metric([], m.tx_bytes)
    clients = CounterMetricFamily("etcd_server_client_requests",
                                  "The total number of client requests per client version.",
                                  labels=["type", "client_api_version"])
    for (kind, ver), v in sorted(m.client_requests.items()):
        clients.add_metric([kind, ver], v)
    return out + [rx, tx, clients]
