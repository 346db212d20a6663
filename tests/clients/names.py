"""The scenarios of the gRPC client libraries, by name, importable without importing
the libraries (their stubs may not load in the test process: harness.py)."""
# etcd3_scenarios.py; ETCD3_AUTH on TLS servers with auth enabled
ETCD3 = ["kv", "ranges", "txn", "lease", "watch", "many_watches", "lock", "members_status",
         "maintenance", "snapshot"]
ETCD3_AUTH = ["auth"]
# aetcd_scenarios.py; auth last (the test enables it on the same servers)
AETCD = ["kv", "txn", "lease_keep_alive", "watch", "watch_from_compacted_revision",
         "watch_ids_and_fragments", "lock", "status_members", "maintenance", "auth"]
# etcd3py_scenarios.py (sync) and etcd3py_aio_scenarios.py; each auth scenario turns
# auth on and off again and deletes its users
ETCD3PY = ["kv", "ranges", "txn", "lease", "stateful_lease", "watch", "lock", "maintenance",
           "cluster", "compaction", "auth"]
ETCD3PY_AIO = ["aio_kv", "aio_lease", "aio_watch", "aio_maintenance", "aio_auth"]
