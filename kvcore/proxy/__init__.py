"""``kvcore grpc-proxy start``: a stateless L7 proxy in front of a cluster, as etcd's.

* flags.py    -- etcd's ``grpc-proxy start`` flags (cobra/pflag style) -> ProxyConfig
* upstream.py -- one gRPC channel to the cluster (failover between endpoints) and
                 forwarders of raw request bytes for unary and streaming methods
* watch.py    -- identical watches from many clients on one upstream watch
* kv.py, cache.py -- serializable ranges cached and invalidated as etcd's proxy does
* lease.py    -- keep-alives of one lease from many clients sent up once
* cluster.py  -- Cluster.MemberList answered with the proxy itself or the proxies
                 registered under --resolver-prefix (grpcproxy/cluster.go)
* register.py -- --resolver-prefix/--resolver-ttl: the proxy's leased registration
* namespace.py -- --namespace: KV, Watch and LeaseTimeToLive keys prefixed/stripped
* server.py   -- the MethodTable served by the same engine as a member, /health, /metrics
"""
