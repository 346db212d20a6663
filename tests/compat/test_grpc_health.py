"""gRPC's standard health service (grpc.health.v1.Health), which etcd registers on its
client port beside its own services: what Kubernetes' gRPC probes, grpc_health_probe
and clients with gRPC health checking ask. Also grpc-go's words for a method or a
service nobody serves, and for a stream message that does not unmarshal. The same
calls go to a kvcore member and to etcd 3.5.1; the answers must be the same."""
import re
import urllib.request

import grpc
import pytest

from tests import servers

CHECK = "/grpc.health.v1.Health/Check"
WATCH = "/grpc.health.v1.Health/Watch"
REQUESTS = {"all": b"", "kv": b"\n\x0fetcdserverpb.KV", "other": b"\n\x03foo",
            "corrupt": b"\xff\xff"}
UNKNOWN = ["/grpc.health.v1.Health/List", "/etcdserverpb.KV/Foo", "/v3lockpb.Lock/Foo",
           "/foo.Bar/Baz", "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
           "/etcdserverpb.KV/Range/extra"]


# How a stream ends at its deadline: the client's own timer, or the server's end
# (grpc-go's health Watch: Canceled "Stream has ended."), whichever comes first.
DEADLINE = {("DEADLINE_EXCEEDED", "Stream removed (Deadline Exceeded)"),
            ("DEADLINE_EXCEEDED", "Deadline Exceeded"), ("CANCELLED", "Stream has ended.")}


def _code(e: grpc.RpcError):
    # Go's protobuf and Python's describe corrupt bytes in their own words: what comes
    # after grpc-go's own prefix is left out.
    return (e.code().name, re.sub(r"(error unmarshalling request:|the received message) .*",
                                  r"\1", e.details()))


def _transcript(endpoint: str, metadata=()) -> list:
    out = []
    with grpc.insecure_channel(endpoint) as ch:
        for name, req in REQUESTS.items():
            try:
                out.append(("check", name, ch.unary_unary(CHECK)(req, timeout=5,
                                                                 metadata=metadata)))
            except grpc.RpcError as e:
                out.append(("check", name, _code(e)))
            got = []
            try:
                for msg in ch.unary_stream(WATCH)(req, timeout=1.5, metadata=metadata):
                    got.append(msg)
            except grpc.RpcError as e:
                end = _code(e)
                got.append("deadline" if end in DEADLINE else end)
            out.append(("watch", name, got))
        for path in UNKNOWN:
            try:
                ch.unary_unary(path)(b"", timeout=5)
                out.append((path, "answered"))
            except grpc.RpcError as e:
                out.append((path, _code(e)))
        # A stream message that does not unmarshal ends the stream with grpc-go's words.
        try:
            list(ch.stream_stream("/etcdserverpb.Watch/Watch")(iter([b"\xff\xff"]), timeout=5))
            out.append(("watch-corrupt", "answered"))
        except grpc.RpcError as e:
            out.append(("watch-corrupt", _code(e)))
    return out


def _health_series(endpoint: str) -> list:
    with urllib.request.urlopen(f"http://{endpoint}/metrics", timeout=10) as r:
        text = r.read().decode()
    return sorted(re.sub(r" \d+(\.\d+)?$", "", l) for l in text.splitlines()
                  if "grpc.health.v1.Health" in l and l.startswith(("grpc_server_started",
                                                                      "grpc_server_handled")))


def test_health_service_as_etcd(kvcore, etcd):
    before = {s.kind: _health_series(f"127.0.0.1:{s.port}") for s in (kvcore, etcd)}
    assert before["kvcore"] == before["etcd"] and before["etcd"]   # registered at start
    got = {s.kind: _transcript(f"127.0.0.1:{s.port}") for s in (kvcore, etcd)}
    assert got["kvcore"] == got["etcd"]
    assert ("check", "all", b"\x08\x01") in got["kvcore"]             # SERVING
    watch_other = next(x[2] for x in got["kvcore"] if x[:2] == ("watch", "other"))
    assert watch_other == [b"\x08\x03", "deadline"]                 # SERVICE_UNKNOWN
    after = {s.kind: _health_series(f"127.0.0.1:{s.port}") for s in (kvcore, etcd)}
    assert after["kvcore"] == after["etcd"]


def test_health_needs_no_token_and_follows_require_leader(kvcore, etcd):
    """With auth on, Check needs no token on either server; with clientv3's
    require-leader metadata it is answered while the member has a leader."""
    for s in (kvcore, etcd):
        for args in (("user", "add", "root:pw"), ("auth", "enable")):
            rc, out, err = s.etcdctl(*args)
            assert rc == 0, (s.kind, args, out, err)
    got = {s.kind: _transcript(f"127.0.0.1:{s.port}", metadata=(("hasleader", "true"),))
           for s in (kvcore, etcd)}
    assert got["kvcore"] == got["etcd"]
    assert ("check", "all", b"\x08\x01") in got["kvcore"]


@pytest.fixture(scope="module",
                params=["grpcio", pytest.param("native", marks=pytest.mark.native_engine)])
def either_engine(request, tmp_path_factory):
    s = servers.start_kvcore(str(tmp_path_factory.mktemp(request.param) / "kv.etcd"),
                             extra=("--grpc-engine", request.param))
    yield s
    s.stop()


@pytest.mark.parametrize("path", UNKNOWN[:4])
def test_unknown_methods_in_grpc_gos_words(either_engine, path):
    """Both gRPC engines (grpcio's own words would be "Method not found!")."""
    with grpc.insecure_channel(f"127.0.0.1:{either_engine.port}") as ch:
        with pytest.raises(grpc.RpcError) as e:
            ch.unary_unary(path)(b"", timeout=5)
        assert ch.unary_unary(CHECK)(b"", timeout=5) == b"\x08\x01"
    service, _, method = path[1:].rpartition("/")
    known = service in ("grpc.health.v1.Health", "etcdserverpb.KV", "v3lockpb.Lock")
    assert _code(e.value) == ("UNIMPLEMENTED", f"unknown method {method} for service {service}"
                              if known else f"unknown service {service}")
