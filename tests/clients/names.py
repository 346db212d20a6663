"""The scenarios of the gRPC client libraries, by name, importable without importing
the libraries (their stubs may not load in the test process: harness.py)."""
# etcd3_scenarios.py; ETCD3_AUTH on TLS servers with auth enabled
ETCD3 = ["kv", "ranges", "txn", "lease", "watch", "many_watches", "lock", "members_status",
         "maintenance", "snapshot"]
ETCD3_AUTH = ["auth"]
# aetcd_scenarios.py; auth last (the test enables it on the same servers)
AETCD = ["kv", "txn", "lease_keep_alive", "watch", "watch_from_compacted_revision",
         "watch_ids_and_fragments", "lock", "status_members", "maintenance", "auth"]
