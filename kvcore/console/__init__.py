"""The web console: static files (static/) served at /ui/ by the workers, and
``kvcore-console``, the same page in front of any etcd-compatible endpoints (proxy.py).

The page talks only to etcd's JSON gateway (/v3/...) and /metrics, so it works against
real etcd as well as kvcore.
"""
