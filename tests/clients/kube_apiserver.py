"""kube-apiserver (Kubernetes 1.20.2, built by tests/clients/kube/build.sh) on a store:
start it, talk to it with kubectl and plain HTTP, and normalise what it answers.

The apiserver serves HTTPS on a loopback port with a certificate it makes itself
(1.20 allows no insecure port; kubectl and the tests skip verifying it); clients carry a
static token of a system:masters user (AlwaysAllow turns anonymous access off), and no
controller runs, so a deployment stays unscheduled and a deleted namespace stays Terminating.
What differs between two stores by nature (uids, timestamps, resourceVersions, the
revision inside a continue token) is replaced by placeholders; everything else the
apiserver hands back must be the same whichever store holds its data.
"""
from __future__ import annotations

import base64
import json
import os
import re
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from bench.servers import free_port

TOKEN = "kvcore-test-token"
BUILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kube", "build.sh")

# Values that cannot be equal across two stores (or two runs).
VOLATILE = {"uid", "creationTimestamp", "resourceVersion", "time", "lastTransitionTime",
            "deletionTimestamp", "lastUpdateTime", "lastHeartbeatTime", "renewTime",
            "acquireTime"}


def build() -> tuple[str, str]:
    """(kube-apiserver, kubectl): built or unpacked once per machine (cached)."""
    p = subprocess.run([BUILD], capture_output=True, text=True, timeout=3600)
    assert p.returncode == 0, f"building kube-apiserver failed:\n{p.stderr[-3000:]}"
    apiserver, kubectl = p.stdout.split()
    return apiserver, kubectl


def write_sa_key(path: str) -> str:
    """An RSA key (PEM) for --service-account-key-file and -signing-key-file."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with open(path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.TraditionalOpenSSL,
                                  serialization.NoEncryption()))
    return path


# klog's header: level, date, time, pid, then "file:line] message".
_KLOG = re.compile(r"^([IWEF])\d{4} [\d:.]+\s+\d+ (.*)$")
_NO_VERIFY = ssl.create_default_context()
_NO_VERIFY.check_hostname = False
_NO_VERIFY.verify_mode = ssl.CERT_NONE


@dataclass
class Apiserver:
    proc: subprocess.Popen
    port: int            # HTTPS on 127.0.0.1, self-signed
    work: str
    kubectl_bin: str
    log_path: str

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def warnings(self) -> list:
        """The distinct warning and error lines logged so far, with times, numbers
        and paths left out (how often one repeats depends on timing, not the store)."""
        seen = set()
        for line in self.log().splitlines():
            m = _KLOG.match(line)
            if m and m.group(1) in "WE":
                text = m.group(1) + " " + m.group(2).replace(self.work, "<work>")
                seen.add(re.sub(r"\d+", "N", text))
        return sorted(seen)

    def http(self, method: str, path: str, body=None, timeout: float = 20.0):
        """-> (status, parsed JSON body or text)."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            req.add_header("Authorization", "Bearer " + TOKEN)
            with urllib.request.urlopen(req, timeout=timeout, context=_NO_VERIFY) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")

    def kubectl(self, *args, input: str | None = None, timeout: float = 60.0):
        """-> (exit code, stdout, stderr)."""
        p = subprocess.run(self.kubectl_argv(*args), input=input, capture_output=True,
                           text=True, timeout=timeout, env=self.kubectl_env())
        return p.returncode, p.stdout, p.stderr.strip()

    def kubectl_argv(self, *args) -> list:
        return [self.kubectl_bin, "--cache-dir", os.path.join(self.work, "kubectl-cache"),
                *args]

    def kubectl_env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE")}
        env["HOME"] = self.work
        env["KUBECONFIG"] = os.path.join(self.work, "kubeconfig")
        return env

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def start_apiserver(binary: str, kubectl: str, etcd_servers: str, work: str,
                    extra: tuple = (), timeout: float = 120.0) -> Apiserver:
    """kube-apiserver on ``etcd_servers`` (comma-separated http URLs); returns once
    /readyz answers ok (bounded by ``timeout``)."""
    os.makedirs(work, exist_ok=True)
    key = write_sa_key(os.path.join(work, "sa.key"))
    tokens = os.path.join(work, "tokens.csv")
    with open(tokens, "w") as f:
        f.write(f'{TOKEN},admin,admin-uid,"system:masters"\n')
    port = free_port()
    argv = [binary, "--etcd-servers", etcd_servers,
            "--bind-address", "127.0.0.1", "--secure-port", str(port),
            "--cert-dir", os.path.join(work, "certs"), "--advertise-address", "127.0.0.1",
            "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
            "--service-account-key-file", key, "--service-account-signing-key-file", key,
            "--service-cluster-ip-range", "10.96.0.0/24",
            "--token-auth-file", tokens, "--authorization-mode", "AlwaysAllow",
            "--profiling=false", *extra]
    log_path = os.path.join(work, "kube-apiserver.log")
    with open(log_path, "w") as logf:
        proc = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    srv = Apiserver(proc, port, work, kubectl, log_path)
    with open(os.path.join(work, "kubeconfig"), "w") as f:
        json.dump({"apiVersion": "v1", "kind": "Config", "current-context": "test",
                   "clusters": [{"name": "test", "cluster": {
                       "server": srv.url, "insecure-skip-tls-verify": True}}],
                   "users": [{"name": "admin", "user": {"token": TOKEN}}],
                   "contexts": [{"name": "test", "context": {"cluster": "test",
                                                             "user": "admin"}}]}, f)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"kube-apiserver exited {proc.returncode}:\n{srv.log()[-4000:]}")
        try:
            if srv.http("GET", "/readyz", timeout=5)[0] == 200:
                return srv
        except OSError:
            pass
        time.sleep(0.5)
    srv.stop()
    raise TimeoutError(f"kube-apiserver not ready after {timeout}s:\n{srv.log()[-4000:]}")


def decode_continue(token: str) -> dict:
    """A continue token's content with its revision left out (it is the store's)."""
    raw = json.loads(base64.b64decode(token + "=" * (-len(token) % 4)))
    raw["rv"] = "<rv>" if raw.get("rv") else raw.get("rv")
    return raw


# A number in a message that is a resourceVersion ("... in the precondition (80) ...").
_RV_IN_TEXT = re.compile(r"(ResourceVersion in (?:the precondition|record)) \(\d+\)")


def norm(obj):
    """``obj`` with VOLATILE values replaced, continue tokens opened and revisions in
    messages left out."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if k in VOLATILE and v not in (None, "", 0):
                out[k] = "<" + k + ">"
            elif k == "continue" and isinstance(v, str) and v:
                out[k] = decode_continue(v)
            else:
                out[k] = norm(v)
        return out
    if isinstance(obj, list):
        return [norm(v) for v in obj]
    if isinstance(obj, str):
        return _RV_IN_TEXT.sub(r"\1 (<rv>)", obj)
    return obj


def json_stream(text: str) -> list:
    """The JSON documents kubectl --watch -o json prints one after another."""
    dec, out, i = json.JSONDecoder(), [], 0
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text):
            return out
        doc, i = dec.raw_decode(text, i)
        out.append(doc)
