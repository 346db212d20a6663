"""etcd's v2 proxy (--proxy on|readonly): an HTTP reverse proxy to the cluster's
client URLs.

  server.py    the proxy's HTTP handler, its upstream client and ``serve(cfg)``
  director.py  the endpoints in use (refresh, failure wait)
  cluster.py   the cluster's client URLs, learned from its peer URLs
"""
