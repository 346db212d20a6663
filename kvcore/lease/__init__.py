"""Leases: grant, keep-alive, revoke, expiry through the log (Watch/Lease issue)."""
