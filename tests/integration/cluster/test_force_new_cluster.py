"""--force-new-cluster as etcd: the survivor of a 3-member cluster whose two other
members are gone restarts as a one-member cluster that serves writes, with every
acknowledged write present."""
import base64
import json

from tests import servers


def test_survivor_forms_a_new_cluster(tmp_path):
    members = servers.start_cluster(str(tmp_path), n=3)
    try:
        servers.leader_of(members)
        ep = servers.endpoints(members)
        acked = {}
        for i in range(40):
            rc, _, err = servers.etcdctl(ep, "put", f"k{i}", f"v{i}")
            assert rc == 0, err
            acked[f"k{i}"] = f"v{i}"
        rc, _, err = servers.etcdctl(ep, "del", "k7")
        assert rc == 0, err
        del acked["k7"]
        survivor, gone = members[2], members[:2]
        for m in gone:
            m.kill9()
        survivor.stop()
        survivor.argv = survivor.argv + ["--force-new-cluster"]
        members[2] = survivor = survivor.restart()

        rc, out, err = survivor.etcdctl("member", "list", "-w", "json")
        assert rc == 0, err
        listed = json.loads(out)["members"]
        assert [m["name"] for m in listed] == ["m2"]
        rc, _, err = survivor.etcdctl("put", "after", "yes")
        assert rc == 0, err
        acked["after"] = "yes"
        assert _all(survivor) == acked
        rc, out, err = survivor.etcdctl("endpoint", "status", "-w", "json")
        assert rc == 0 and json.loads(out)[0]["Status"]["leader"] == listed[0]["ID"]

        # The new membership is in the log: a plain restart keeps it.
        survivor.argv = [a for a in survivor.argv if a != "--force-new-cluster"]
        members[2] = survivor = survivor.restart()
        rc, _, err = survivor.etcdctl("put", "again", "yes")
        assert rc == 0, err
        acked["again"] = "yes"
        assert _all(survivor) == acked
    finally:
        for m in members:
            m.stop()


def _all(srv) -> dict:
    rc, out, err = srv.etcdctl("get", "", "--from-key", "-w", "json")
    assert rc == 0, err
    return {base64.b64decode(kv["key"]).decode(): base64.b64decode(kv["value"]).decode()
            for kv in json.loads(out).get("kvs", [])}
