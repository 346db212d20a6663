"""The gRPC services of a member, each over the narrow server context
(context.py) and registering its handlers and appliers (registry.py).

Adding a service: a module with ``register(ctx, reg) -> service`` and one line in
SERVICES. Adding a Raft op: a code in kvcore/server/entry.py and one
``reg.applier(...)`` line in the service that owns it.
"""
from __future__ import annotations

from kvcore.services import (auth, cluster, election, kv, lease, lock, maintenance, v2,
                             watch)

# Registration order: lock and election run their recipes on the KV and Lease
# services, so those come first.
SERVICES = (
    ("kv", kv),
    ("lease", lease),
    ("watch", watch),
    ("maintenance", maintenance),
    ("cluster", cluster),
    ("auth", auth),
    ("lock", lock),
    ("election", election),
    ("v2", v2),
)


def register_all(ctx, reg) -> dict:
    """Register every service; returns name -> service object (also
    ``reg.services``, where a later service finds an earlier one)."""
    for name, module in SERVICES:
        reg.services[name] = module.register(ctx, reg)
    return reg.services
