"""The peer transport over TLS, two PeerTransports in one process on loopback:
messages flow when both ends agree, and each kind of mismatch (untrusted server,
untrusted client, plain to TLS, TLS to plain, a client certificate for another
address) leaves a clear log line on each side instead of a silent retry loop.

Waits are bounded and wait for behaviour (a message arrives, a log line appears),
never for a length of time.
"""
import asyncio
import logging
import types

import pytest

from kvcore.raft.types import Message, MsgHeartbeat
from kvcore.server.peer import PeerTransport
from kvcore.tls import TLSInfo, self_cert
from tests import servers
from tests.tlscerts import make_pki

CLUSTER = 0x1234


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(str(tmp_path_factory.mktemp("pki")))


class Node:
    def __init__(self, mid: int, tls, tmp):
        self.id = mid
        self.received = []
        self.t = PeerTransport(
            mid, CLUSTER, step=self.received.append, unreachable=lambda pid: None,
            snapshot_status=lambda *a: None, snapshot_source=None, snapshot_dir=str(tmp),
            members_info=lambda: {}, is_removed=lambda i: False, on_removed=lambda: None,
            tls=tls)

    async def listen(self, scheme: str) -> str:
        url = f"{scheme}://127.0.0.1:{servers.free_port()}"
        await self.t.listen([url])
        return url


def _mutual(pki, cert=None, key=None, ca=None, **kw) -> TLSInfo:
    return TLSInfo(cert or pki.server_cert, key or pki.server_key, ca or pki.ca,
                   client_cert_auth=True, **kw)


async def _until(pred, timeout=20.0) -> bool:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        if pred():
            return True
        await asyncio.sleep(0.02)
    return pred()


def _logged(caplog, *parts) -> bool:
    return any(all(p in r.getMessage() for p in parts) for r in caplog.records)


def run_case(tmp_path, a_tls, b_tls, listen_scheme, dial_scheme, until=None):
    """A listens (listen_scheme), B dials A's URL with dial_scheme and sends
    heartbeats. Returns A's received messages once a message arrived or
    ``until()`` held (bounded)."""
    async def main():
        a, b = Node(1, a_tls, tmp_path), Node(2, b_tls, tmp_path)
        url = await a.listen(listen_scheme)
        dial = dial_scheme + url[url.index("://"):]
        b.t.set_members([types.SimpleNamespace(id=1, peer_urls=[dial])])

        def send():
            b.t.send([Message(MsgHeartbeat, to=1, frm=2, term=1)])
            return bool(a.received) or (until is not None and until())
        try:
            await _until(send)
            return list(a.received)
        finally:
            await a.t.close()
            await b.t.close()
    return asyncio.run(main())


def test_mutual_tls_delivers(tmp_path, pki):
    got = run_case(tmp_path, _mutual(pki), _mutual(pki), "https", "https")
    assert [(m.type, m.frm, m.to) for m in got[:1]] == [(MsgHeartbeat, 2, 1)]


def test_peer_auto_tls_delivers(tmp_path):
    a = self_cert(str(tmp_path / "a"), ["127.0.0.1:0"], client_auth=True)
    b = self_cert(str(tmp_path / "b"), ["127.0.0.1:0"], client_auth=True)
    assert run_case(tmp_path, a, b, "https", "https")


def test_dialler_with_wrong_ca_logs_and_delivers_nothing(tmp_path, pki, caplog):
    caplog.set_level(logging.INFO)
    b = _mutual(pki, ca=pki.other_ca)
    got = run_case(tmp_path, _mutual(pki), b, "https", "https",
                   until=lambda: _logged(caplog, "cannot connect to peer 1",
                                         "certificate verify failed") and
                   _logged(caplog, "rejected a peer connection from 127.0.0.1"))
    assert got == []
    assert _logged(caplog, "cannot connect to peer 1", "TLS handshake with https://",
                   "certificate verify failed")
    assert _logged(caplog, "rejected a peer connection from 127.0.0.1: TLS handshake failed")


def test_client_cert_of_other_ca_is_refused(tmp_path, pki, caplog):
    caplog.set_level(logging.INFO)
    b = _mutual(pki, cert=pki.other_server_cert, key=pki.other_server_key)
    got = run_case(tmp_path, _mutual(pki), b, "https", "https",
                   until=lambda: _logged(caplog, "rejected a peer connection",
                                         "certificate verify failed") and
                   _logged(caplog, "cannot connect to peer 1"))
    assert got == []
    assert _logged(caplog, "rejected a peer connection from 127.0.0.1: TLS handshake failed: "
                           "certificate verify failed")
    assert _logged(caplog, "cannot connect to peer 1")


def test_plain_dialler_to_tls_listener(tmp_path, pki, caplog):
    caplog.set_level(logging.INFO)
    got = run_case(tmp_path, _mutual(pki), _mutual(pki), "https", "http",
                   until=lambda: _logged(caplog, "rejected a peer connection") and
                   _logged(caplog, "cannot connect to peer 1"))
    assert got == []
    assert _logged(caplog, "rejected a peer connection from 127.0.0.1: TLS handshake failed")
    assert _logged(caplog, "cannot connect to peer 1", "closed the connection during the "
                                                      "handshake")


def test_tls_dialler_to_plain_listener(tmp_path, pki, caplog):
    caplog.set_level(logging.INFO)
    got = run_case(tmp_path, _mutual(pki), _mutual(pki), "http", "https",
                   until=lambda: _logged(caplog, "a TLS client on a plain (http) peer URL")
                   and _logged(caplog, "cannot connect to peer 1", "TLS handshake"))
    assert got == []
    assert _logged(caplog, "rejected a peer connection from 127.0.0.1",
                   "a TLS client on a plain (http) peer URL")
    assert _logged(caplog, "cannot connect to peer 1", "TLS handshake with https://")


def test_client_cert_for_another_address_fails_etcds_san_check(tmp_path, pki, caplog):
    caplog.set_level(logging.INFO)
    b = _mutual(pki, cert=pki.elsewhere_cert, key=pki.elsewhere_key)
    got = run_case(tmp_path, _mutual(pki), b, "https", "https",
                   until=lambda: _logged(caplog, "rejected a peer connection",
                                         "x509: certificate is valid for 127.0.0.2, "
                                         "not 127.0.0.1"))
    assert got == []
    assert _logged(caplog, "rejected a peer connection", "x509: certificate is valid for "
                                                         "127.0.0.2, not 127.0.0.1")
    # --experimental-peer-skip-client-san-verification lets it through.
    a = _mutual(pki, skip_client_san_verify=True)
    assert run_case(tmp_path, a, b, "https", "https")


@pytest.mark.parametrize("policy,delivered", [
    ({"allowed_cn": "server"}, True),               # the dialler's certificate CN
    ({"allowed_cn": "someone-else"}, False),
    ({"allowed_hostname": "localhost"}, True),      # a SAN of the dialler's certificate
    ({"allowed_hostname": "db.example.com"}, False),
])
def test_peer_cert_allowed_cn_and_hostname(tmp_path, pki, caplog, policy, delivered):
    """--peer-cert-allowed-cn / --peer-cert-allowed-hostname on the listening side."""
    caplog.set_level(logging.INFO)
    got = run_case(tmp_path, _mutual(pki, **policy), _mutual(pki), "https", "https",
                   until=lambda: _logged(caplog, "client certificate authentication failed"))
    assert bool(got) == delivered
    assert _logged(caplog, "rejected a peer connection from 127.0.0.1",
                   "client certificate authentication failed") == (not delivered)
