"""etcd's Prometheus metrics for a kvcore member.

* ``fast.py``      cheap counters/histograms for hot paths (plain int/list updates,
                   turned into Prometheus families at scrape time)
* ``member.py``    every etcd 3.5 family the core owns (server, disk, mvcc, lease,
                   network, snap, debugging), with etcd's names, help and labels
* ``grpc_stats.py`` the workers' per-call gRPC counters (grpc_server_*), merged by
                   the core from all workers at scrape time
* ``process.py``   process_* and os_fd_* summed over the core and its workers
* ``listener.py``  the HTTP listener of ``--listen-metrics-urls`` (/metrics, /health,
                   /livez, /readyz)

A scrape runs in the core: it asks every worker for its gRPC counters over the IPC
(one small frame each way), then renders one registry.
"""
