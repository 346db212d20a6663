"""Time of one /metrics scrape of a kvcore member (the core asks each worker for
its gRPC counters over the IPC, then renders), after a little load.

    python -m bench.probes.experiments.scrape_time [WORKERS] [SCRAPES]
"""
import os
import statistics
import sys
import tempfile
import time
import urllib.request

from tests import servers


def main() -> None:
    workers = int(sys.argv[1]) if len(sys.argv) > 1 else 4
    scrapes = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    with tempfile.TemporaryDirectory() as d:
        srv = servers.start_kvcore(os.path.join(d, "m.etcd"), workers=workers)
        try:
            for i in range(20):
                srv.etcdctl("put", f"k{i}", "v")
                srv.etcdctl("get", "k", "--prefix")
            url = f"http://{srv.endpoint}/metrics"
            took, size = [], 0
            for _ in range(scrapes):
                t0 = time.perf_counter()
                with urllib.request.urlopen(url, timeout=10) as r:
                    size = len(r.read())
                took.append((time.perf_counter() - t0) * 1000)
            took.sort()
            print(f"{workers} workers, {scrapes} scrapes of {size} bytes: median "
                  f"{statistics.median(took):.1f} ms, p90 {took[int(0.9 * len(took)) - 1]:.1f} ms, "
                  f"max {took[-1]:.1f} ms")
        finally:
            srv.stop()


if __name__ == "__main__":
    main()
