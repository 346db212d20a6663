#!/usr/bin/env python3
"""Start a local kvcore cluster on loopback, like etcd's Procfile.

    python3 tools/cluster.py                 # 3 members: infra1..3 on 2379/22379/32379
    python3 tools/cluster.py --members 5 --fresh --grpc-engine native
    python3 tools/cluster.py --fresh --tls   # https client and peer URLs, client certs
    python3 tools/cluster.py --base-port 40000   # clients on 40000/40002/40004, peers +1

Members are named infra1..N, listen for clients on 127.0.0.1:{i}2379 (the first on
2379) and for peers on {i}2380 -- or, with --base-port B, for clients on B+2(i-1) and
peers on B+2(i-1)+1, and keep data under --base-dir. Output of each member
goes to <base-dir>/infraN.log. Ctrl-C (or SIGTERM) stops them all.

With --tls, a CA and certificates (ECDSA P-256, for 127.0.0.1 and localhost) are
written to <base-dir>/pki/ (kept if present): each member gets a certificate for its
client and peer URLs, which are then https with client-certificate authentication
on both (--client-cert-auth, --peer-client-cert-auth), and pki/client.pem is a
client certificate for etcdctl.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time


BASE_PORT = 0   # --base-port: 0 keeps etcd's Procfile ports


def ports(i: int) -> tuple[int, int]:
    if BASE_PORT:
        client = BASE_PORT + 2 * (i - 1)
        return client, client + 1
    prefix = "" if i == 1 else str(i)
    return int(f"{prefix}2379"), int(f"{prefix}2380")


def make_pki(d: str, members: int) -> None:
    """CA, infraN certificates (server and client auth) and a client certificate."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    os.makedirs(d, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    name = lambda cn: x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])  # noqa: E731

    def write(stem, cert, key):
        with open(os.path.join(d, stem + ".pem"), "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        fd = os.open(os.path.join(d, stem + "-key.pem"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                     0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.TraditionalOpenSSL,
                                      serialization.NoEncryption()))

    def builder(subject, issuer, key):
        return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(hours=1))
                .not_valid_after(now + datetime.timedelta(days=365)))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (builder(name("kvcore local CA"), name("kvcore local CA"), ca_key)
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    write("ca", ca, ca_key)
    sans = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                        x509.DNSName("localhost")])
    for stem in [f"infra{i}" for i in range(1, members + 1)] + ["client"]:
        key = ec.generate_private_key(ec.SECP256R1())
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
        b = builder(name(stem), ca.subject, key)
        if stem != "client":
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
            b = b.add_extension(sans, critical=False)
        write(stem, b.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
              .sign(ca_key, hashes.SHA256()), key)


def tls_flags(pki: str, i: int) -> list:
    cert, key = os.path.join(pki, f"infra{i}.pem"), os.path.join(pki, f"infra{i}-key.pem")
    ca = os.path.join(pki, "ca.pem")
    return ["--cert-file", cert, "--key-file", key, "--client-cert-auth",
            "--trusted-ca-file", ca, "--peer-cert-file", cert, "--peer-key-file", key,
            "--peer-client-cert-auth", "--peer-trusted-ca-file", ca]


def member_argv(i: int, n: int, base: str, token: str, extra: list,
                tls: bool = False) -> list:
    client, peer = ports(i)
    scheme = "https" if tls else "http"
    cluster = ",".join(f"infra{j}={scheme}://127.0.0.1:{ports(j)[1]}" for j in range(1, n + 1))
    return [sys.executable, "-m", "kvcore", "--name", f"infra{i}",
            "--data-dir", os.path.join(base, f"infra{i}.etcd"),
            "--listen-client-urls", f"{scheme}://127.0.0.1:{client}",
            "--advertise-client-urls", f"{scheme}://127.0.0.1:{client}",
            "--listen-peer-urls", f"{scheme}://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls", f"{scheme}://127.0.0.1:{peer}",
            "--initial-cluster-token", token, "--initial-cluster", cluster,
            "--initial-cluster-state", "new",
            *(tls_flags(os.path.join(base, "pki"), i) if tls else []), *extra]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--members", type=int, default=3)
    ap.add_argument("--base-dir", default="cluster-data")
    ap.add_argument("--token", default="kvcore-cluster-1")
    ap.add_argument("--fresh", action="store_true", help="wipe --base-dir first")
    ap.add_argument("--base-port", type=int, default=0,
                    help="client port of infra1; member i listens for clients on "
                         "base+2(i-1) and for peers on the port after it")
    ap.add_argument("--tls", action="store_true",
                    help="https client and peer URLs with certificates from <base-dir>/pki")
    args, extra = ap.parse_known_args()
    global BASE_PORT
    BASE_PORT = args.base_port
    if args.fresh:
        shutil.rmtree(args.base_dir, ignore_errors=True)
    os.makedirs(args.base_dir, exist_ok=True)
    pki = os.path.join(args.base_dir, "pki")
    if args.tls and not all(os.path.exists(os.path.join(pki, f"infra{i}.pem"))
                            for i in range(1, args.members + 1)):
        make_pki(pki, args.members)
    procs = []
    for i in range(1, args.members + 1):
        log = open(os.path.join(args.base_dir, f"infra{i}.log"), "a")
        procs.append(subprocess.Popen(member_argv(i, args.members, args.base_dir, args.token,
                                                  extra, args.tls),
                                      stdout=log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL))
    scheme = "https://" if args.tls else ""
    endpoints = ",".join(f"{scheme}127.0.0.1:{ports(i)[0]}" for i in range(1, args.members + 1))
    ctl = ""
    if args.tls:
        ctl = (f" --cacert {pki}/ca.pem --cert {pki}/client.pem"
               f" --key {pki}/client-key.pem")
    print(f"started {args.members} members (logs in {args.base_dir}/infraN.log)")
    print(f"  etcdctl --endpoints {endpoints}{ctl} endpoint status -w table")
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    reported = set()
    try:
        while not stop:
            for i, p in enumerate(procs, 1):
                if p.poll() is not None and i not in reported:
                    reported.add(i)
                    print(f"infra{i} exited with code {p.returncode}", file=sys.stderr)
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()


if __name__ == "__main__":
    main()
