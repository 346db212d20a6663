"""kvcore-bench: etcd-benchmark-style load tool for etcd v3 gRPC endpoints."""
__version__ = "0.1.0"
