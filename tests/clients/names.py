"""The scenarios of the gRPC client libraries, by name, importable without importing
the libraries (their stubs may not load in the test process: harness.py)."""
ETCD3 = ["kv", "ranges", "txn", "lease", "watch", "many_watches", "lock", "members_status", "maintenance",
         "snapshot"]                                  # etcd3_scenarios.py
ETCD3_AUTH = ["auth"]                                 # ...on TLS servers with auth enabled
AETCD = ["kv", "txn", "lease_keep_alive", "watch", "watch_from_compacted_revision",
         "watch_ids_and_fragments", "lock", "status_members", "maintenance", "auth"]                    # aetcd_scenarios.py; auth last
