"""kvcore: an etcd-compatible, strongly consistent, distributed key-value store."""

__version__ = "0.1.0"
# The etcd API and cluster version kvcore speaks (reported by Status and /version).
ETCD_VERSION = "3.5.1"
