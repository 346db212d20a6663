"""Internal probes: one-off measurements of kvcore's parts (engine throughput and
memory, revision index, failover, slow watchers, client micro-benchmarks). Not part of
the kvcore-bench tool (nothing in bench/*.py imports them) and not installed; run from a
checkout, e.g. ``python -m bench.probes.index_bench``."""
