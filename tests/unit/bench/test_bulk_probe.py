"""bench.probes.bulk.measure: server and load-client CPU per operation from one run."""
from bench.probes import bulk


class _Server:
    def pids(self):
        return [1]


def test_measure_reports_client_cpu_per_op(monkeypatch):
    ticks = iter([100, 100 + 2 * bulk.os.sysconf("SC_CLK_TCK")])   # 2 s of server CPU
    monkeypatch.setattr(bulk, "cpu_ticks", lambda pids: next(ticks))
    monkeypatch.setattr(bulk, "bench_run", lambda server, argv: {
        "ok": 200_000, "rps": 100_000.0, "error_count": 0,
        "latency": {"p50_ms": 0.9}, "generator": {"cpu_s": 0.88}})
    m = bulk.measure(_Server(), "keepalive")
    assert m["n"] == 200_000 and m["rate"] == 100_000.0
    assert m["cpu_us_per_op"] == 10.0
    assert m["client_cpu_us_per_op"] == 4.4


def test_measure_without_generator_figure(monkeypatch):
    monkeypatch.setattr(bulk, "cpu_ticks", lambda pids: 0)
    monkeypatch.setattr(bulk, "bench_run", lambda server, argv: {"ok": 10, "rps": 1.0})
    assert bulk.measure(_Server(), "keepalive")["client_cpu_us_per_op"] is None
