"""etcd's runbook for moving a member's peer URL: `etcdctl member update <id>
--peer-urls=<new>`, then the member restarted with the new --listen-peer-urls,
--initial-advertise-peer-urls and --initial-cluster. A restart is the member its WAL
names, whatever the --initial-* flags now hash to (kvcore refused: "data dir belongs
to member ..."). Against etcd 3.5.1."""
import json

from tests import etcd351, servers


def _move_peer_url(kind: str, base: str) -> list:
    d = f"{base}/{kind}.etcd"
    srv = servers.start_kvcore(d) if kind == "kvcore" else servers.start_etcd(
        d, binary=etcd351.ETCD)
    out = []
    try:
        assert srv.etcdctl("put", "k", "v")[0] == 0
        mid = json.loads(srv.etcdctl("member", "list", "-w", "json")[1])["members"][0]["ID"]
        port = servers.free_port()
        url = f"http://127.0.0.1:{port}"
        out.append(srv.etcdctl("member", "update", f"{mid:x}", f"--peer-urls={url}")[0])
        srv.stop()
        for flag in ("--listen-peer-urls", "--initial-advertise-peer-urls"):
            srv.argv[srv.argv.index(flag) + 1] = url
        srv.argv[srv.argv.index("--initial-cluster") + 1] = f"default={url}"
        srv.peer_port = port
        srv.restart()
        out.append(srv.etcdctl("get", "k", "--print-value-only"))
        member = json.loads(srv.etcdctl("member", "list", "-w", "json")[1])["members"][0]
        out.append((member["ID"] == mid, member["peerURLs"] == [url]))
        out.append(srv.etcdctl("put", "k2", "after")[0])
    finally:
        srv.stop()
    return out


def test_member_restarts_on_its_updated_peer_url_as_etcd(tmp_path):
    etcd = _move_peer_url("etcd", str(tmp_path))
    assert etcd == [0, (0, "v\n", ""), (True, True), 0]
    assert _move_peer_url("kvcore", str(tmp_path)) == etcd
