"""The lessor's interface as the KV applier sees it.

Until leases are implemented, no lease exists, so a Put naming one fails with
etcd's "requested lease not found", exactly as etcd answers for an unknown lease.
"""


class NoLeases:
    def exists(self, lease_id: int) -> bool:
        return False
