"""crypt (Debian's `golang-github-xordataexchange-crypt`, installed as
`crypt-xordataexchange`) against kvcore, etcd 3.4.23 and etcd 3.5.1.

crypt is built on etcd's v2 client (`github.com/coreos/etcd/client`, the binary names
its `/v2/keys` paths): `set` PUTs a value (OpenPGP-encrypted unless -plaintext), `get`
reads one, `list` reads a directory. So it needs `--enable-v2`; without it every
command fails with the v2 client's own words on the 404 page (the same on all three).
Outputs are compared after masking the v2 index (each store counts its own) and
sorting `list` (etcd 3.5.1 lists a directory in Go map order)."""
from __future__ import annotations

import os
import re
import subprocess

import pytest

from tests import servers
from tests.etcd351 import ETCD as ETCD351

CRYPT = "/usr/bin/crypt-xordataexchange"
ETCD34 = "/usr/bin/etcd"


def _start(kind: str, base: str, v2: bool):
    data = os.path.join(base, f"{kind}-{v2}.etcd")
    if kind == "kvcore":
        return servers.start_kvcore(data, extra=("--enable-v2",) if v2 else ())
    return servers.start_etcd(data, binary=ETCD351 if kind == "etcd-3.5.1" else ETCD34,
                              extra=(f"--enable-v2={str(v2).lower()}",))


@pytest.fixture(scope="module")
def keyring(tmp_path_factory):
    """A throwaway OpenPGP key pair as crypt reads it (armored public and secret
    keyrings); its gpg-agent is ended at once."""
    home = str(tmp_path_factory.mktemp("gnupg"))
    os.chmod(home, 0o700)
    env = {**os.environ, "GNUPGHOME": home}
    gpg = ["gpg", "--batch", "--quiet", "--pinentry-mode", "loopback", "--passphrase", ""]
    try:
        subprocess.run([*gpg, "--quick-gen-key", "kvcore test <test@example.invalid>",
                        "rsa2048", "sign,encr", "never"], env=env, check=True, timeout=60,
                       capture_output=True)
        pub = subprocess.run([*gpg, "--armor", "--export"], env=env, check=True,
                             timeout=30, capture_output=True).stdout
        sec = subprocess.run([*gpg, "--armor", "--export-secret-keys"], env=env,
                             check=True, timeout=30, capture_output=True).stdout
    finally:
        subprocess.run(["gpgconf", "--homedir", home, "--kill", "gpg-agent"], env=env,
                       timeout=30, capture_output=True)
    for name, data in (("pub.gpg", pub), ("sec.gpg", sec)):
        with open(os.path.join(home, name), "wb") as f:
            f.write(data)
    return os.path.join(home, "pub.gpg"), os.path.join(home, "sec.gpg")


def _crypt(cmd: str, endpoint: str, *args, cwd: str) -> tuple:
    p = subprocess.run([CRYPT, cmd, "-endpoint", endpoint, *args], capture_output=True,
                       text=True, timeout=30, cwd=cwd)
    return p.returncode, p.stdout, re.sub(r"\[\d+\]", "[N]", p.stderr)


def _session(srv, base: str, keyring) -> list:
    pub, sec = keyring
    ep = f"http://127.0.0.1:{srv.port}"
    cfg = os.path.join(base, "app.json")
    with open(cfg, "w") as f:
        f.write('{"db": "postgres://db.example/app", "debug": false}\n')
    out = [_crypt("set", ep, "-plaintext", "/app/config", cfg, cwd=base),
           _crypt("set", ep, "-plaintext", "/app/other", cfg, cwd=base),
           _crypt("get", ep, "-plaintext", "/app/config", cwd=base)]
    rc, listing, err = _crypt("list", ep, "-plaintext", "/app", cwd=base)
    out.append((rc, sorted(listing.splitlines()), err))
    out += [_crypt("get", ep, "-plaintext", "/app/none", cwd=base),
            _crypt("list", ep, "-plaintext", "/none", cwd=base),
            _crypt("set", ep, "-keyring", pub, "/secret/config", cfg, cwd=base),
            _crypt("get", ep, "-secret-keyring", sec, "/secret/config", cwd=base)]
    # what the store holds for the encrypted key is not the plain text
    rc, stored, _ = _crypt("get", ep, "-plaintext", "/secret/config", cwd=base)
    out.append((rc, bool(stored) and "postgres" not in stored))
    return out


@pytest.mark.parametrize("v2", [True, False], ids=["v2", "v2-off"])
def test_crypt_on_kvcore_equals_etcd(tmp_path, keyring, v2):
    runs = {}
    for kind in ("kvcore", "etcd-3.4.23", "etcd-3.5.1"):
        srv = _start(kind, str(tmp_path), v2)
        try:
            runs[kind] = _session(srv, str(tmp_path), keyring)
        finally:
            srv.stop()
    kv = runs["kvcore"]
    if v2:
        assert kv[2][:2] == (0, '{"db": "postgres://db.example/app", "debug": false}\n\n')
        assert kv[7][0] == 0 and "postgres://db.example/app" in kv[7][1]
        assert kv[8] == (0, True)
    else:
        assert kv[0][0] == 1 and "not valid etcd cluster endpoint" in kv[0][2]
    assert kv == runs["etcd-3.4.23"]
    assert kv == runs["etcd-3.5.1"]
