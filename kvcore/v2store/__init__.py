"""etcd's v2 keys store (behind --enable-v2).

  store.py   the trees (keys; auth), indexes, TTLs, compare-and-swap, in-order keys, the
             1000-event history and watchers (pure: no clock, no I/O)
  errors.py  v2 error codes, messages, HTTP statuses and bodies
  http.py    /v2/keys requests as etcd 3.4's v2http parses them, and responses
  auth.py    v2 auth's users, roles and switch, kept in the store's auth tree
  auth_http.py  /v2/auth/... and the permission checks of /v2/keys
"""
from kvcore.v2store.errors import V2Error
from kvcore.v2store.store import Store

__all__ = ["Store", "V2Error"]
