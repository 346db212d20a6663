"""Bootstrapping a new cluster through discovery, as etcd 3.4/3.5: ``--discovery URL``
(the v2 discovery protocol, v2.py) or ``--discovery-srv DOMAIN`` (DNS SRV records,
srv.py).

One entry point, ``bootstrap(cfg)``, called by the member before it opens its data:
it turns the discovery flags into the ``initial_cluster`` (and, for --discovery, the
``initial_cluster_token``: etcd derives the member IDs from the discovery URL) that
the rest of the start uses as if they had been given. A member that already has a
write-ahead log ignores discovery, as etcd does (its token still names its ID). A
failure logs etcd's lines and exits with etcd's code (1).

It also decides, as etcd's etcdmain does, when this process is not a member but etcd's
v2 proxy (kvcore/httpproxy/): --proxy on|readonly with an empty data dir, a data dir
holding proxy/, or --discovery-fallback proxy (etcd's default) when discovery finds
the cluster full.
"""
from __future__ import annotations

import logging
import os
import re
import signal
import sys

from kvcore import logs
from kvcore.discovery import v2

log = logging.getLogger("kvcore.discovery")

__all__ = ["bootstrap"]


def _wal_dir(cfg) -> str:
    return cfg.wal_dir or os.path.join(cfg.data_dir, "member", "wal")


def _data_dir_type(cfg) -> str:
    """etcd's identifyDataDirOrDie: "member", "proxy" or "empty"."""
    try:
        names = os.listdir(cfg.data_dir)
    except FileNotFoundError:
        return "empty"
    m, p = "member" in names, "proxy" in names
    if m and p:
        log.critical("invalid datadir; both member and proxy directories exist")
        sys.exit(1)
    return "member" if m else "proxy" if p else "empty"


def bootstrap(cfg) -> None:
    """Settle cfg.initial_cluster from discovery, or exit(1) with etcd's messages; or
    become etcd's v2 proxy (--proxy, a full discovery cluster, a proxy data dir) and
    never return."""
    which = _data_dir_type(cfg)
    if which == "proxy" or (which == "empty" and cfg.proxy != "off"):
        if which != "empty":
            log.info("server has been already initialized", extra=logs.fields(
                data_dir=cfg.data_dir, dir_type=which))
        _run_proxy(cfg)
    if not cfg.discovery and not cfg.discovery_srv:
        return
    # Until the member runs, Ctrl-C ends the wait the way a Go program ends (no traceback).
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    initialized = os.path.exists(_wal_dir(cfg))
    if cfg.discovery:
        cfg.initial_cluster_token = cfg.discovery
        if initialized:
            log.warning("discovery token is ignored since cluster already initialized; valid "
                        "logs are found", extra=logs.fields(bootstrap_dir=_wal_dir(cfg)))
            return
        _join_v2(cfg)
    elif not initialized:
        _from_srv(cfg)


def _join_v2(cfg) -> None:
    from kvcore.server.membership import member_id
    own = ",".join(f"{cfg.name}={u}" for u in sorted(cfg.initial_advertise_peer_urls))
    mid = member_id(cfg.initial_advertise_peer_urls, cfg.discovery)
    try:
        bad = _go_url_error(cfg.discovery)
        if bad:
            raise v2.Failed(bad)
        d = v2.Discovery(cfg.discovery, cfg.discovery_proxy, mid)
        found = d.join_cluster(own)
        urls = v2.parse_urls_map(found)
    except v2.Failed as e:
        _exit_v2(cfg, str(e))
    all_urls = [u for us in urls.values() for u in us]
    if len(set(all_urls)) != len(all_urls):
        _fail(cfg, f"discovery cluster {_urls_map_str(urls)} has duplicate url")
    cfg.initial_cluster = _urls_map_str(urls)
    log.info("bootstrapping the cluster from the discovery service", extra=logs.fields(
        discovery_url=cfg.discovery, initial_cluster=cfg.initial_cluster))


def _from_srv(cfg) -> None:
    from kvcore.discovery import srv
    entries, errors = srv.cluster_names(cfg)
    err = "; ".join(errors)    # Go's multierr.Combine
    if errors:
        causes = {"errorCauses": [{"error": e} for e in errors]} if len(errors) > 1 else {}
        log.warning("failed to resolve during SRV discovery",
                    extra={"fields": {"error": err, **causes}})
    if not entries:
        _fail(cfg, f"error setting up initial cluster: {err}")
    for s in entries:
        log.info("got bootstrap from DNS for etcd-server", extra=logs.fields(node=s))
    try:
        urls = v2.parse_urls_map(",".join(entries))
    except ValueError as e:
        _fail(cfg, f"error setting up initial cluster: {e}")
    if cfg.name not in urls:
        _fail(cfg, f'error setting up initial cluster: cannot find local etcd member '
                   f'"{cfg.name}" in SRV records')
    bad = srv.advertise_mismatch(cfg.name, cfg.initial_advertise_peer_urls, urls[cfg.name])
    if bad:
        _fail(cfg, bad)
    cfg.initial_cluster = _urls_map_str(urls)


def _run_proxy(cfg) -> None:
    """Become etcd's v2 proxy (kvcore/httpproxy/) until SIGTERM/SIGINT; never returns.
    Without a cluster file yet, the cluster comes from the discovery service (or SRV
    records) if one is given, else from --initial-cluster."""
    from kvcore.httpproxy.server import serve
    from kvcore.loop import run_loop

    cluster_file = os.path.join(cfg.data_dir, "proxy", "cluster")
    if os.path.exists(cluster_file):
        if cfg.discovery:
            log.warning("discovery token ignored since the proxy has already been "
                        "initialized; valid cluster file found",
                        extra=logs.fields(cluster_file=cluster_file))
        if cfg.discovery_srv:
            log.warning("DNS SRV discovery ignored since the proxy has already been "
                        "initialized; valid cluster file found",
                        extra=logs.fields(cluster_file=cluster_file))
    else:
        try:
            if cfg.discovery:
                cfg.initial_cluster = v2.get_cluster(cfg.discovery, cfg.discovery_proxy)
            elif cfg.discovery_srv:
                from kvcore.discovery import srv
                entries, errors = srv.cluster_names(cfg)
                if not entries:
                    raise v2.Failed("; ".join(errors))
                cfg.initial_cluster = ",".join(entries)
        except v2.Failed as e:
            log.critical("discovery failed", extra=logs.fields(
                error=f"error setting up initial cluster: {e}"))
            sys.exit(1)
    run_loop(serve(cfg))
    sys.exit(0)


def _urls_map_str(urls: dict) -> str:
    """etcd's URLsMap.String(): name=url pairs sorted."""
    return ",".join(sorted(f"{n}={u}" for n, us in urls.items() for u in us))


def _fail(cfg, err: str) -> None:
    """A start error outside the discovery protocol: etcd's "failed to start" then
    its fatal "discovery failed"."""
    log.warning("failed to start kvcore", extra=logs.fields(error=err))
    log.critical("discovery failed", extra=logs.fields(error=err))
    sys.exit(1)


def _exit_v2(cfg, cause: str) -> None:
    """etcd's etcdmain handling of a DiscoveryError (always exit code 1)."""
    err = f"failed to join discovery cluster ({cause})"
    if cause == v2.ERR_FULL_CLUSTER:
        if cfg.discovery_fallback == "proxy":
            log.warning("discovery cluster is full, falling back to proxy",
                        extra=logs.fields(fallback_proxy="proxy", error=err))
            _run_proxy(cfg)
    else:
        log.warning("failed to start kvcore", extra=logs.fields(error=err))
    if cause == v2.ERR_DUPLICATE_ID:
        log.warning("member has been registered with discovery service", extra=logs.fields(
            name=cfg.name, discovery_token=cfg.discovery, error=cause))
        log.warning("but could not find valid cluster configuration",
                    extra=logs.fields(data_dir=cfg.data_dir))
        log.warning("check data dir if previous bootstrap succeeded")
        log.warning("or use a new discovery token if previous bootstrap failed")
    elif cause == v2.ERR_DUPLICATE_NAME:
        log.warning("member with duplicated name has already been registered",
                    extra=logs.fields(discovery_token=cfg.discovery, error=cause))
        log.warning("cURL the discovery token URL for details")
        log.warning("do not reuse discovery token; generate a new one to bootstrap a cluster")
    else:
        log.warning("failed to bootstrap; discovery token was already used",
                    extra=logs.fields(discovery_token=cfg.discovery, error=err))
        log.warning("do not reuse discovery token; generate a new one to bootstrap a cluster")
    sys.exit(1)


_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})(.{0,2})", re.S)


def _go_url_error(durl: str) -> str:
    """The error Go's url.Parse gives the discovery URL ("" when it parses)."""
    m = _BAD_ESCAPE.search(durl)
    if m:
        return f'parse "{durl}": invalid URL escape "%{m.group(1)}"'
    from urllib.parse import urlsplit
    try:
        urlsplit(durl).port
    except ValueError:
        port = urlsplit(durl).netloc.rpartition(":")[2]
        return f'parse "{durl}": invalid port ":{port}" after host'
    return ""
