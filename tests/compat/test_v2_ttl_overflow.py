"""Huge v2 TTLs as etcd 3.4.23 takes them: its expiry is Go int64 nanoseconds,
which wrap, so a TTL of 2^62 s makes a key that is gone at once, 2^64-1 one that
expired a second ago, 10^12 one that lives ~120 years, and 2^33 s an expiry before
1970, which a create takes as none (etcd's minExpireTime, 2000-01-01): a permanent
key. kvcore used to compute a date beyond any clock function's range and stop the
member in the apply ("[Errno 75] Value too large for defined data type")."""
from __future__ import annotations

import json
import time

from tests import servers
from tests.httpraw import call

ETCD34 = "/usr/bin/etcd"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
TTLS = (2 ** 62, 2 ** 33, 2 ** 64 - 1, 10 ** 12, 18446744073709551616)


def _put(port, key, form) -> tuple:
    st, _, body = call(port, f"/v2/keys/{key}", raw=form.encode(), method="PUT", headers=FORM)
    doc = json.loads(body)
    node = doc.get("node", {})
    # ttl: whether it is shown, and its size in years (etcd counts from its own clock)
    ttl = node.get("ttl")
    return (st, doc.get("errorCode"), "expiration" in node,
            None if ttl is None else round(ttl / (365.25 * 86400)))


def _session(port) -> list:
    out = [(ttl, _put(port, f"big/{i}", f"value=v&ttl={ttl}")) for i, ttl in enumerate(TTLS)]
    out.append(("refresh", _put(port, "big/3", f"ttl={2 ** 62}&refresh=true&prevExist=true")))
    time.sleep(1.5)      # etcd's expiry runs every 500 ms
    for i in range(len(TTLS)):
        st, _, _ = call(port, f"/v2/keys/big/{i}", method="GET")
        out.append((f"after {i}", st))
    out.append(("alive", _put(port, "after", "value=x")[0]))
    return out


def test_huge_ttls_as_etcd_34(tmp_path):
    with servers.kvcore_and_etcd(tmp_path, ("--enable-v2",), ("--enable-v2",), workers=1,
                                 etcd_binary=ETCD34) as (kv, et):
        got, want = _session(kv.port), _session(et.port)
    assert got == want
    assert "stopping the member" not in kv.log()
    assert want[-1] == ("alive", 201)
    assert dict(want[len(TTLS) + 1:-1]) == {"after 0": 404, "after 1": 200, "after 2": 404,
                                             "after 3": 404, "after 4": 404}
