"""A tiny HTTP/1.1 client on a raw socket, for tests that need the wire shape:
status, headers, the body, and a chunked body chunk by chunk as it arrives."""
from __future__ import annotations

import json
import socket
import time
from typing import Optional


class Response:
    def __init__(self, sock: socket.socket, deadline: float):
        self.sock = sock
        self.deadline = deadline
        self.buf = b""
        head = self._until(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split(" ")[1])
        self.headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            self.headers[k.strip().lower()] = v.strip()
        self.chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()

    def _fill(self) -> bool:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no answer in time")
        self.sock.settimeout(left)
        data = self.sock.recv(65536)
        self.buf += data
        return bool(data)

    def _until(self, sep: bytes) -> bytes:
        while sep not in self.buf:
            if not self._fill():
                raise ConnectionError("closed before " + repr(sep))
        out, _, self.buf = self.buf.partition(sep)
        return out

    def _exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise ConnectionError("closed early")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def chunk(self) -> Optional[bytes]:
        """The next chunk of a chunked body; None at its end."""
        size = int(self._until(b"\r\n").split(b";")[0], 16)
        if size == 0:
            self._until(b"\r\n")
            return None
        data = self._exactly(size)
        self._exactly(2)
        return data

    def body(self) -> bytes:
        if self.chunked:
            parts = []
            while (c := self.chunk()) is not None:
                parts.append(c)
            return b"".join(parts)
        return self._exactly(int(self.headers.get("content-length", "0")))

    def json(self):
        return json.loads(self.body())

    def close(self) -> None:
        self.sock.close()


def request(port: int, method: str, path: str, body: bytes = b"", headers: Optional[dict] = None,
            timeout: float = 20.0, chunked: bool = False) -> Response:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    hdrs = {"Host": f"127.0.0.1:{port}", "Content-Type": "application/json"}
    hdrs.update(headers or {})
    if chunked:
        hdrs["Transfer-Encoding"] = "chunked"
        half = len(body) // 2
        payload = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (body[:half], body[half:]) if p)
        payload += b"0\r\n\r\n"
    else:
        hdrs["Content-Length"] = str(len(body))
        payload = body
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
    sock.sendall(head.encode() + b"\r\n" + payload)
    return Response(sock, time.monotonic() + timeout)


def call(port: int, path: str, obj=None, raw: Optional[bytes] = None, method: str = "POST",
         headers: Optional[dict] = None, chunked: bool = False):
    """-> (status, headers, body bytes) of one whole exchange."""
    body = raw if raw is not None else (json.dumps(obj).encode() if obj is not None else b"")
    r = request(port, method, path, body, headers, chunked=chunked)
    try:
        return r.status, r.headers, r.body()
    finally:
        r.close()
