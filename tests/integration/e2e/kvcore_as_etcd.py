"""The `etcd` the e2e suite starts: kvcore with the suite's flags, once its listen
ports are free.

The suite stops a member with SIGKILL and starts the next test's members on the same
fixed ports at once. etcd is one process, so its sockets are closed when the kill
returns; kvcore's worker processes, which accept on the member's client socket too,
end by PDEATHSIG just after, and on a loaded machine the next member's bind could
come first ("address already in use"). This waits (bounded) for the ports to be free,
as they are for etcd at that moment; then it runs kvcore as the process itself."""
import os
import socket
import sys
import time
from urllib.parse import urlsplit

LISTEN_FLAGS = ("--listen-client-urls", "--listen-peer-urls")


def _addresses(argv: list) -> list:
    out = []
    for i, arg in enumerate(argv):
        name, eq, value = arg.partition("=")
        if name in LISTEN_FLAGS:
            value = value if eq else (argv[i + 1] if i + 1 < len(argv) else "")
            for url in filter(None, value.split(",")):
                u = urlsplit(url)
                if u.scheme in ("http", "https") and u.port:
                    out.append((u.hostname, u.port))
    return out


def _free(host: str, port: int) -> bool:
    try:
        with socket.socket() as s:
            # as the server binds: closed connections in TIME_WAIT do not count, a
            # listening socket still held does
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
        return True
    except OSError:
        return False


def main() -> None:
    argv = sys.argv[1:]
    deadline = time.monotonic() + 10.0
    for host, port in _addresses(argv):
        while not _free(host, port) and time.monotonic() < deadline:
            time.sleep(0.05)
    os.execv(sys.executable, [sys.executable, "-m", "kvcore", *argv])


if __name__ == "__main__":
    main()
