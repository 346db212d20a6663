"""etcd's HTTP surface on the client port.

  server.py   the engine's HTTP handler: /version, /health, /metrics, /debug/vars,
              the /v3/ (and /v3beta/) JSON gateway, CORS
  routes.py   the google.api.http routes of etcd's protos
  codec.py    JSON <-> protobuf as etcd's gateway marshals it, with Go's errors
  streams.py  streaming routes: a chunked stream of {"result":...} objects
  errors.py   gRPC code -> HTTP status, grpc-gateway's error body
"""
from kvcore.gateway.server import Gateway

__all__ = ["Gateway"]
