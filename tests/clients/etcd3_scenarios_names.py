"""The python-etcd3 scenarios' names (etcd3_scenarios.py), importable without
importing python-etcd3 (its stubs load only on the pure-Python protobuf runtime)."""
PLAIN = ["kv", "ranges", "txn", "lease", "watch", "lock", "members_status", "maintenance",
         "snapshot"]
AUTH = ["auth"]     # on TLS servers with auth enabled
