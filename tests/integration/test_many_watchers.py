"""Ten thousand watchers created on one stream by a grpcio client: all are created
and counted. (grpcio sends BDP pings while such a stream is busy; the engine must
not take them for ping abuse, as it once did with GOAWAY "too_many_pings".)"""
import re
import threading
import urllib.request

import grpc

from kvcore.api import rpc_pb2, rpc_pb2_grpc
from tests import servers

N = 10000


def test_ten_thousand_watchers_on_one_stream(tmp_path):
    srv = servers.start_kvcore(str(tmp_path / "kv.etcd"), workers=1)
    hold = threading.Event()

    def requests():
        for i in range(N):
            yield rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(
                key=b"w/%05d" % i))
        hold.wait(60)

    try:
        with grpc.insecure_channel(srv.endpoint) as ch:
            created = set()
            call = rpc_pb2_grpc.WatchStub(ch).Watch(requests())  # kept: dropping it cancels
            for resp in call:
                assert resp.created and not resp.canceled
                created.add(resp.watch_id)
                if len(created) == N:
                    break
            assert created == set(range(N))
            text = urllib.request.urlopen(f"http://{srv.endpoint}/metrics", timeout=10).read().decode()
            assert float(re.search(r"^etcd_debugging_mvcc_watcher_total (\S+)$", text, re.M)
                         .group(1)) == N
            call.cancel()
    finally:
        hold.set()
        srv.stop()
