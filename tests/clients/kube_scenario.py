"""The bounded kube-apiserver scenario the tests run on kvcore and on etcd 3.5.1: kubectl
and the REST API over namespaces, configmaps, a deployment, pagination, a watch while
updating, conflicts, a CRD and its objects, deletion, compaction and the health checks.
``run(apiserver, etcdctl)`` returns a list of [step, result] with results normalised
(tests/clients/kube_apiserver.py's norm), so two stores' runs must be equal.
"""
from __future__ import annotations

import json
import subprocess
import threading
import time

from tests.clients.kube_apiserver import json_stream, norm

N_CONFIGMAPS = 23      # with --chunk-size 5: four full pages and a short one
CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {"group": "example.com", "scope": "Namespaced",
             "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
             "versions": [{"name": "v1", "served": True, "storage": True, "schema": {
                 "openAPIV3Schema": {"type": "object", "properties": {"spec": {
                     "type": "object", "properties": {"size": {"type": "integer"},
                                                      "pad": {"type": "string"}}}}}}}]}}


# Resources whose count the scenario alone decides (events, leases and the like vary),
# with the path that lists them.
COUNTED = {"configmaps": "/api/v1/configmaps", "namespaces": "/api/v1/namespaces",
           "services": "/api/v1/services", "deployments.apps": "/apis/apps/v1/deployments",
           "widgets.example.com": "/apis/example.com/v1/widgets",
           "customresourcedefinitions.apiextensions.k8s.io":
               "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
           "apiservices.apiregistration.k8s.io": "/apis/apiregistration.k8s.io/v1/apiservices",
           "flowschemas.flowcontrol.apiserver.k8s.io":
               "/apis/flowcontrol.apiserver.k8s.io/v1beta1/flowschemas"}


def configmap(name: str, ns: str, data: dict, rv: str | None = None) -> dict:
    meta = {"name": name, "namespace": ns}
    if rv is not None:
        meta["resourceVersion"] = rv
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}


def _names(items) -> list:
    return [i["metadata"]["name"] for i in items]


def _ok(rc_out_err) -> list:
    """A kubectl run as [exit code, stdout lines, stderr]."""
    rc, out, err = rc_out_err
    return [rc, out.splitlines(), err]


def _wait(pred, timeout: float, step: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(step)


def run(api, etcdctl, out: list | None = None, kill=None, restart=None,
        quorum_left: bool = False) -> list:
    """``etcdctl(*args) -> (rc, out, err)`` reads the store under the apiserver; the
    steps are appended to ``out`` as they finish (a failing run shows how far it got).
    ``kill()``/``restart()`` (kill -9 of a store member and its start again) end the run
    with an outage; ``quorum_left``: the others still serve while it is down."""
    out = [] if out is None else out

    def step(name, result):
        out.append([name, result])

    step("namespaces", [_ok(api.kubectl("create", "namespace", ns)) for ns in ("kv-a", "kv-b")])
    st, body = api.http("GET", "/api/v1/namespaces/kv-a/configmaps")
    list_rv = body["metadata"]["resourceVersion"]
    cms = [configmap(f"cm-{i:02d}", "kv-a", {"i": str(i)}) for i in range(N_CONFIGMAPS)]
    rc, created, err = api.kubectl("create", "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "List", "items": cms}))
    step("create configmaps", [rc, len(created.splitlines()), err])
    step("create again", _ok(api.kubectl("create", "-f", "-", input=json.dumps(cms[0]))))

    # Pagination: kubectl's chunks, then the REST pages with their continue tokens.
    rc, listed, err = api.kubectl("get", "configmaps", "-n", "kv-a", "--chunk-size", "5",
                                  "-o", "json")
    step("kubectl chunked list", [rc, _names(json.loads(listed)["items"]), err])
    pages, cont = [], ""
    for _ in range(10):
        st, page = api.http("GET", "/api/v1/namespaces/kv-a/configmaps?limit=5"
                            + (f"&continue={cont}" if cont else ""))
        meta = page.get("metadata", {})
        pages.append([st, _names(page.get("items", [])), norm(meta)])
        cont = meta.get("continue")
        if not cont:
            break
    step("REST pages", pages)
    st, body = api.http("GET", "/api/v1/namespaces/kv-a/configmaps?limit=5&continue=bogus")
    step("bad continue", [st, norm(body)])

    # A watch (kubectl get --watch) while one configmap is patched twice and deleted.
    watch = subprocess.Popen(
        api.kubectl_argv("get", "configmap", "cm-03", "-n", "kv-a", "--watch",
                         "--output-watch-events", "-o", "json"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=api.kubectl_env())
    lines: list = []
    reader = threading.Thread(target=lambda: lines.extend(watch.stdout), daemon=True)
    reader.start()
    try:
        _wait(lambda: lines, 20, 0.1)          # the initial ADDED: the watch is open
        patches = [_ok(api.kubectl("patch", "configmap", "cm-03", "-n", "kv-a", "--type",
                                   "merge", "-p", json.dumps({"data": {"i": v}})))
                   for v in ("x", "y")]
        patches.append(_ok(api.kubectl("delete", "configmap", "cm-03", "-n", "kv-a")))
        _wait(lambda: sum('"type": "DELETED"' in l for l in lines), 20, 0.1)
    finally:
        watch.kill()
        watch.wait(10)
        reader.join(10)
    events = json_stream("".join(lines))
    step("watch while updating", [patches, [
        [e["type"], e["object"]["metadata"]["name"], e["object"].get("data")] for e in events]])
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    step("watch revisions increase", rvs == sorted(set(rvs)))

    # A raw watch from the list's resourceVersion replays every creation in order.
    st, raw = api.http("GET", f"/api/v1/namespaces/kv-a/configmaps?watch=1&resourceVersion="
                       f"{list_rv}&timeoutSeconds=2", timeout=30)
    replay = json_stream(raw) if isinstance(raw, str) else [raw]
    step("watch from the list revision", [st, [[e["type"], e["object"]["metadata"]["name"]]
                                               for e in replay]])

    # Conflicts: a write carrying a stale resourceVersion, a create of an existing name.
    st, cm = api.http("GET", "/api/v1/namespaces/kv-a/configmaps/cm-01")
    stale = cm["metadata"]["resourceVersion"]
    st1, _ = api.http("PUT", "/api/v1/namespaces/kv-a/configmaps/cm-01",
                      configmap("cm-01", "kv-a", {"i": "first"}, stale))
    st2, refused = api.http("PUT", "/api/v1/namespaces/kv-a/configmaps/cm-01",
                            configmap("cm-01", "kv-a", {"i": "second"}, stale))
    rc, replaced, err = api.kubectl("replace", "-f", "-", input=json.dumps(
        configmap("cm-01", "kv-a", {"i": "third"}, stale)))
    st3, dup = api.http("POST", "/api/v1/namespaces/kv-a/configmaps",
                        configmap("cm-02", "kv-a", {}))
    st4, now = api.http("GET", "/api/v1/namespaces/kv-a/configmaps/cm-01")
    step("conflicts", [st1, st2, norm(refused), rc, err, st3, norm(dup), st4,
                       now["data"]])
    st, deleted = api.http("DELETE", "/api/v1/namespaces/kv-a/configmaps/cm-01",
                           {"preconditions": {"resourceVersion": stale}})
    step("delete with a stale precondition", [st, norm(deleted)])

    # A deployment: stored and served back; nothing schedules it.
    rc, _, err = api.kubectl("create", "deployment", "web", "--image=registry.invalid/web:1",
                             "--replicas=2", "-n", "kv-a")
    st, dep = api.http("GET", "/apis/apps/v1/namespaces/kv-a/deployments/web")
    step("deployment", [rc, err, st, norm(dep)])
    rc, _, err = api.kubectl("scale", "deployment", "web", "--replicas=3", "-n", "kv-a")
    step("deployment scaled", [rc, err, norm(api.http(
        "GET", "/apis/apps/v1/namespaces/kv-a/deployments/web/scale")[1])])

    # A CRD, established by the apiserver itself, and two of its objects.
    rc, _, err = api.kubectl("create", "-f", "-", input=json.dumps(CRD))
    est = _wait(lambda: any(c["type"] == "Established" and c["status"] == "True"
                            for c in api.http("GET", "/apis/apiextensions.k8s.io/v1/"
                                              "customresourcedefinitions/widgets.example.com"
                                              )[1].get("status", {}).get("conditions") or []),
                30)
    ready = _wait(lambda: api.http("GET", "/apis/example.com/v1/namespaces/kv-a/widgets")[0]
                  == 200, 30)
    made = [_ok(api.kubectl("create", "-f", "-", input=json.dumps(
        {"apiVersion": "example.com/v1", "kind": "Widget",
         "metadata": {"name": f"w{i}", "namespace": "kv-a"}, "spec": {"size": i}})))
        for i in (1, 2)]
    rc2, got, err2 = api.kubectl("get", "widgets", "-n", "kv-a", "-o", "json")
    step("crd", [rc, err, est, ready, made, rc2, err2,
                 norm(json.loads(got)["items"]) if rc2 == 0 else got])
    # A custom resource has no size limit of its own: the store's request limit (etcd's
    # --max-request-bytes, 1.5 MiB) is what refuses the larger one.
    big = []
    for size in (1_400_000, 1_600_000):
        st, body = api.http("POST", "/apis/example.com/v1/namespaces/kv-a/widgets", {
            "apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": f"big-{size}"}, "spec": {"size": 0, "pad": "p" * size}})
        big.append([st, "created" if st == 201 else norm(body)])
    step("large custom resources", big)

    # Deletion: configmaps by label-less name list, a namespace (stays Terminating).
    step("delete configmaps", _ok(api.kubectl("delete", "configmap", "cm-05", "cm-06",
                                              "-n", "kv-a")))
    rc, _, err = api.kubectl("delete", "namespace", "kv-b", "--wait=false")
    st, ns = api.http("GET", "/api/v1/namespaces/kv-b")
    step("delete namespace", [rc, err, st, ns["status"]])
    st, left = api.http("GET", "/api/v1/namespaces/kv-a/configmaps")
    step("left", [st, _names(left["items"])])

    # The apiserver's store metrics: object counts (a count-only range per resource)
    # and the database size (Status of each endpoint), polled every second.
    # Each poll catches up on its own: wait until every count is what a list gives.
    listed = {r: len(api.http("GET", path)[1]["items"]) for r, path in COUNTED.items()}
    metrics = _wait(lambda: (lambda m: m if m["counts"] == listed else None)(
        _store_metrics(api)), 30) or _store_metrics(api)
    step("store metrics", [listed, metrics])

    # Compaction: the apiserver's compactor (--etcd-compaction-interval) compacts the
    # store; a list at the first revision then answers 410 Gone.
    def compacted():
        st, body = api.http("GET", f"/api/v1/namespaces/kv-a/configmaps?limit=1&"
                            f"resourceVersion={list_rv}&resourceVersionMatch=Exact")
        return [st, norm(body)] if st != 200 else None
    step("list at a compacted revision", _wait(compacted, 60, 1.0))
    rc, val, err = etcdctl("get", "compact_rev_key", "--print-value-only")
    step("compact_rev_key holds a revision", [rc, val.strip().isdigit(), err])

    # The health checks, etcd's among them.
    for path in ("/healthz", "/readyz?verbose", "/livez?verbose", "/healthz/etcd"):
        step(path, list(api.http("GET", path)))

    # What the apiserver wrote into the store, by key.
    rc, keys, err = etcdctl("get", "/registry/", "--prefix", "--keys-only")
    step("stored keys", [rc, sorted(k for k in keys.split() if not k.startswith(
        "/registry/events/")), err])
    step("apiserver warnings and errors", api.warnings())
    if kill is not None:
        _outage(api, step, kill, restart, quorum_left)
    return out


def _store_metrics(api) -> dict:
    """etcd_object_counts by resource, and whether every endpoint reports a db size."""
    st, text = api.http("GET", "/metrics")
    counts, sizes = {}, []
    for line in str(text).splitlines():
        if line.startswith("etcd_object_counts{"):
            resource = line.split('resource="')[1].split('"')[0]
            if resource in COUNTED:
                counts[resource] = int(float(line.split()[-1]))
        elif line.startswith("etcd_db_total_size_in_bytes{"):
            sizes.append(float(line.split()[-1]) > 0)
    return {"counts": counts, "db sizes reported": sizes}


def _outage(api, step, kill, restart, quorum_left: bool) -> None:
    """A store member killed -9 and started again under the running apiserver."""
    kill()
    if quorum_left:
        # Two of three members serve: a write goes through (the client fails over).
        step("write with a member down", _wait(lambda: api.kubectl(
            "create", "configmap", "during", "-n", "kv-a", "--request-timeout=10s")[0] == 0
            or api.http("GET", "/api/v1/namespaces/kv-a/configmaps/during")[0] == 200, 60))
    else:
        down = _wait(lambda: api.http("GET", "/readyz?verbose")[0] != 200, 30)
        st, text = api.http("GET", "/readyz?verbose")
        step("readyz with the store down", [bool(down), st,
                                            [l for l in str(text).splitlines() if "etcd" in l]])
    restart()
    step("ready again", bool(_wait(lambda: api.http("GET", "/readyz")[0] == 200, 60)))
    step("write after the restart", bool(_wait(lambda: api.kubectl(
        "create", "configmap", "after", "-n", "kv-a", "--request-timeout=10s")[0] == 0
        or api.http("GET", "/api/v1/namespaces/kv-a/configmaps/after")[0] == 200, 60)))
    st, left = api.http("GET", "/api/v1/namespaces/kv-a/configmaps")
    step("configmaps after the restart", [st, _names(left["items"])])
