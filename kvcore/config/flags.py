"""The flag table: every flag of etcd 3.5.1 (plus kvcore's own), its default as etcd
prints it, its parser (kvcore/config/goflags.py), its help line and its support.

Support says what kvcore does with the flag:
  ""        implemented as etcd does it;
  "go"      only meaningful for Go's runtime: accepted, one log line when set;
  "noop"    tunes etcd internals kvcore does not have (bbolt, v2 proxy): accepted,
            one log line when set to something else than its default;
  "refuse"  not supported yet: a value other than the default stops the start
            with a clear message (rather than being silently ignored);
  "absent"  not supported yet but safe to run without (the v2 API): accepted, with
            an error line in the log saying so.
To implement a flag, clear its support here and add its checks to validate.py.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

from kvcore.config import goflags as g


class Flag(NamedTuple):
    name: str
    default: Any          # etcd's default, in the flag's text form (parsed by `parse`)
    parse: Callable[[Any], Any]
    help: str
    group: str
    support: str = ""
    hidden: bool = False  # registered by etcd but not printed by --help

    @property
    def attr(self) -> str:
        return self.name.replace("-", "_")

    @property
    def is_bool(self) -> bool:
        return self.parse is g.parse_bool


S, B, U, I, D = g.parse_string, g.parse_bool, g.parse_uint, g.parse_int, g.parse_duration
URLS, STRS = g.parse_urls, g.parse_strings

_TABLE = [
    # name, default, parser, help, group, support
    ("name", "default", S, "Human-readable name for this member.", "Member"),
    ("data-dir", "", S, "Path to the data directory (default '${name}.etcd').", "Member"),
    ("wal-dir", "", S, "Path to the dedicated wal directory.", "Member"),
    ("snapshot-count", "100000", U, "Number of committed transactions to trigger a snapshot "
     "to disk.", "Member"),
    ("heartbeat-interval", "100", U, "Time (in milliseconds) of a heartbeat interval.", "Member"),
    ("election-timeout", "1000", U, "Time (in milliseconds) for an election to timeout.",
     "Member"),
    ("initial-election-tick-advance", "true", B, "Whether to fast-forward initial election "
     "ticks on boot for faster election.", "Member", "noop"),
    ("listen-peer-urls", "http://localhost:2380", URLS, "List of URLs to listen on for peer "
     "traffic.", "Member"),
    ("listen-client-urls", "http://localhost:2379", URLS, "List of URLs to listen on for "
     "client traffic.", "Member"),
    ("max-snapshots", "5", U, "Maximum number of snapshot files to retain (0 is unlimited).",
     "Member"),
    ("max-wals", "5", U, "Maximum number of wal files to retain (0 is unlimited).", "Member"),
    ("quota-backend-bytes", "0", I, "Raise alarms when backend size exceeds the given quota "
     "(0 defaults to low space quota).", "Member"),
    ("backend-bbolt-freelist-type", "map", S, "BackendFreelistType specifies the type of "
     "freelist that boltdb backend uses (kvcore's backend is LMDB).", "Member", "noop"),
    ("backend-batch-interval", "0s", D, "BackendBatchInterval is the maximum time before "
     "commit the backend transaction (kvcore commits once per applied batch).", "Member",
     "noop"),
    ("backend-batch-limit", "0", I, "BackendBatchLimit is the maximum operations before "
     "commit the backend transaction (kvcore commits once per applied batch).", "Member",
     "noop"),
    ("max-txn-ops", "128", U, "Maximum number of operations permitted in a transaction.",
     "Member"),
    ("max-request-bytes", "1572864", U, "Maximum client request size in bytes the server "
     "will accept.", "Member"),
    ("grpc-keepalive-min-time", "5s", D, "Minimum duration interval that a client should "
     "wait before pinging server.", "Member"),
    ("grpc-keepalive-interval", "2h", D, "Frequency duration of server-to-client ping to "
     "check if a connection is alive (0 to disable).", "Member"),
    ("grpc-keepalive-timeout", "20s", D, "Additional duration of wait before closing a "
     "non-responsive connection (0 to disable).", "Member"),
    ("max-concurrent-streams", "0", U, "Maximum concurrent streams that each client can open "
     "at a time (etcd 3.5.5+; 0: kvcore's engine default, 1000).", "Member", "", True),
    ("socket-reuse-port", "false", B, "Enable to set socket option SO_REUSEPORT on listeners "
     "allowing rebinding of a port already in use.", "Member"),
    ("socket-reuse-address", "false", B, "Enable to set socket option SO_REUSEADDR on "
     "listeners allowing binding to an address in TIME_WAIT state.", "Member"),
    ("raft-read-timeout", "5s", D, "Read timeout set on each rafthttp connection",
     "Member", "noop", True),
    ("raft-write-timeout", "5s", D, "Write timeout set on each rafthttp connection",
     "Member", "noop", True),

    ("initial-advertise-peer-urls", "http://localhost:2380", URLS, "List of this member's "
     "peer URLs to advertise to the rest of the cluster.", "Clustering"),
    ("initial-cluster", "", S, "Initial cluster configuration for bootstrapping (default "
     "'${name}=${initial-advertise-peer-urls}').", "Clustering"),
    ("initial-cluster-state", "new", g.selective("new", "existing"), "Initial cluster state "
     "('new' or 'existing').", "Clustering"),
    ("initial-cluster-token", "etcd-cluster", S, "Initial cluster token for the etcd cluster "
     "during bootstrap.", "Clustering"),
    ("advertise-client-urls", "http://localhost:2379", URLS, "List of this member's client "
     "URLs to advertise to the public.", "Clustering"),
    ("discovery", "", S, "Discovery URL used to bootstrap the cluster.", "Clustering"),
    ("discovery-fallback", "proxy", g.selective("proxy", "exit"), "Expected behavior ('exit' "
     "or 'proxy') when discovery services fails.", "Clustering"),
    ("discovery-proxy", "", S, "HTTP proxy to use for traffic to discovery service.",
     "Clustering"),
    ("discovery-srv", "", S, "DNS srv domain used to bootstrap the cluster.", "Clustering"),
    ("discovery-srv-name", "", S, "Suffix to the dns srv name queried when bootstrapping.",
     "Clustering"),
    ("strict-reconfig-check", "true", B, "Reject reconfiguration requests that would cause "
     "quorum loss.", "Clustering"),
    ("pre-vote", "true", B, "Enable to run an additional Raft election phase.", "Clustering"),
    ("auto-compaction-retention", "0", S, "Auto compaction retention length. 0 means disable "
     "auto compaction.", "Clustering"),
    ("auto-compaction-mode", "periodic", S, "Interpret 'auto-compaction-retention' one of: "
     "periodic|revision. 'periodic' for duration based retention, defaulting to hours if no "
     "time unit is provided (e.g. '5m'). 'revision' for revision number based retention.",
     "Clustering"),
    ("enable-v2", "false", B, "Accept etcd V2 client requests.", "Clustering"),
    ("experimental-enable-v2v3", "", S, "Serve v2 requests through the v3 backend under a "
     "given prefix. Deprecated and to be decommissioned in v3.6.", "Clustering"),
    ("v2-deprecation", "not-yet", g.selective("not-yet", "write-only", "write-only-drop-data",
                                              "gone", quote=True),
     "Phase of v2store deprecation (kvcore keeps no v2 store).", "Clustering"),

    ("cert-file", "", S, "Path to the client server TLS cert file.", "Security"),
    ("key-file", "", S, "Path to the client server TLS key file.", "Security"),
    ("client-cert-file", "", S, "Path to an explicit peer client TLS cert file otherwise cert "
     "file will be used when client auth is required.", "Security", "", True),
    ("client-key-file", "", S, "Path to an explicit peer client TLS key file otherwise key "
     "file will be used when client auth is required.", "Security", "", True),
    ("client-cert-auth", "false", B, "Enable client cert authentication.", "Security"),
    ("client-crl-file", "", S, "Path to the client certificate revocation list file.",
     "Security"),
    ("client-cert-allowed-hostname", "", S, "Allowed TLS hostname for client cert "
     "authentication.", "Security"),
    ("trusted-ca-file", "", S, "Path to the client server TLS trusted CA cert file.",
     "Security"),
    ("auto-tls", "false", B, "Client TLS using generated certificates.", "Security"),
    ("peer-cert-file", "", S, "Path to the peer server TLS cert file.", "Security"),
    ("peer-key-file", "", S, "Path to the peer server TLS key file.", "Security"),
    ("peer-client-cert-file", "", S, "Path to an explicit peer client TLS cert file.",
     "Security", "", True),
    ("peer-client-key-file", "", S, "Path to an explicit peer client TLS key file.",
     "Security", "", True),
    ("peer-client-cert-auth", "false", B, "Enable peer client cert authentication.",
     "Security"),
    ("peer-trusted-ca-file", "", S, "Path to the peer server TLS trusted CA file.",
     "Security"),
    ("peer-cert-allowed-cn", "", S, "Required CN for client certs connecting to the peer "
     "endpoint.", "Security"),
    ("peer-cert-allowed-hostname", "", S, "Allowed TLS hostname for inter peer "
     "authentication.", "Security"),
    ("peer-auto-tls", "false", B, "Peer TLS using self-generated certificates if "
     "--peer-key-file and --peer-cert-file are not provided.", "Security"),
    ("self-signed-cert-validity", "1", U, "The validity period of the client and peer "
     "certificates that are automatically generated, in years.", "Security"),
    ("peer-crl-file", "", S, "Path to the peer certificate revocation list file.",
     "Security"),
    ("cipher-suites", "", STRS, "Comma-separated list of supported TLS cipher suites between "
     "client/server and peers.", "Security"),
    ("tls-min-version", "", S, "Minimum TLS version supported by etcd (etcd 3.5.3+): TLS1.2, "
     "TLS1.3.", "Security", "", True),
    ("tls-max-version", "", S, "Maximum TLS version supported by etcd (etcd 3.5.3+): TLS1.2, "
     "TLS1.3 (empty: TLS1.2, as etcd 3.5.1).", "Security", "", True),
    ("cors", "*", g.parse_cors, "Comma-separated whitelist of origins for CORS, or "
     "cross-origin resource sharing, (empty or * means allow all).", "Security"),
    ("host-whitelist", "*", STRS, "Acceptable hostnames from HTTP client requests, if server "
     "is not secure (empty or * means allow all).", "Security"),
    ("experimental-peer-skip-client-san-verification", "false", B, "Skip verification of SAN "
     "field in client certificate for peer connections.", "Security"),

    ("auth-token", "simple", S, "Specify a v3 authentication token type and its options "
     "('simple' or 'jwt').", "Auth"),
    ("bcrypt-cost", "10", U, "Specify the cost / strength of the bcrypt algorithm for hashing "
     "auth passwords. Valid values are between 4 and 31.", "Auth"),
    ("auth-token-ttl", "300", U, "Time (in seconds) of the auth-token-ttl.", "Auth"),

    ("enable-pprof", "false", B, "Enable runtime profiling data via HTTP server (Go's pprof; "
     "kvcore is not a Go program).", "Profiling and Monitoring", "go"),
    ("metrics", "basic", S, "Set level of detail for exported metrics, specify 'extensive' "
     "to include server side grpc histogram metrics.", "Profiling and Monitoring"),
    ("listen-metrics-urls", "", URLS, "List of URLs to listen on for the metrics and health "
     "endpoints.", "Profiling and Monitoring"),

    ("logger", "zap", S, "'zap' for structured (JSON) logging, or 'console' (kvcore) for "
     "human-readable lines.", "Logging"),
    ("log-outputs", "default", STRS, "Specify 'stdout' or 'stderr' to skip journald logging "
     "even when running under systemd, or list of comma separated output targets.",
     "Logging"),
    ("log-level", "info", S, "Configures log level. Only supports debug, info, warn, error, "
     "panic, or fatal.", "Logging"),
    ("enable-log-rotation", "false", B, "Enable log rotation of a single log-outputs file "
     "target.", "Logging"),
    ("log-rotation-config-json", '{"maxsize": 100, "maxage": 0, "maxbackups": 0, '
     '"localtime": false, "compress": false}', S, "Configures log rotation if enabled with a "
     "JSON logger config. MaxSize(MB), MaxAge(days,0=no limit), MaxBackups(0=no limit), "
     "LocalTime(use computers local time), Compress(gzip)", "Logging"),

    ("experimental-enable-distributed-tracing", "false", B, "Enable experimental distributed "
     "tracing (not supported yet: no spans are exported).", "Experimental distributed tracing",
     "noop"),
    ("experimental-distributed-tracing-address", "localhost:4317", S, "Distributed tracing "
     "collector address.", "Experimental distributed tracing", "noop"),
    ("experimental-distributed-tracing-service-name", "etcd", S, "Distributed tracing service "
     "name, must be same across all etcd instances.", "Experimental distributed tracing",
     "noop"),
    ("experimental-distributed-tracing-instance-id", "", S, "Distributed tracing instance ID, "
     "must be unique per each etcd instance.", "Experimental distributed tracing", "noop"),

    ("proxy", "off", g.selective("off", "readonly", "on"), "Proxy mode setting ('off', "
     "'readonly' or 'on').", "v2 Proxy"),
    ("proxy-failure-wait", "5000", U, "Time (in milliseconds) an endpoint will be held in a "
     "failed state.", "v2 Proxy"),
    ("proxy-refresh-interval", "30000", U, "Time (in milliseconds) of the endpoints refresh "
     "interval.", "v2 Proxy"),
    ("proxy-dial-timeout", "1000", U, "Time (in milliseconds) for a dial to timeout.",
     "v2 Proxy"),
    ("proxy-write-timeout", "5000", U, "Time (in milliseconds) for a write to timeout.",
     "v2 Proxy"),
    ("proxy-read-timeout", "0", U, "Time (in milliseconds) for a read to timeout.",
     "v2 Proxy"),

    ("experimental-initial-corrupt-check", "false", B, "Enable to check data corruption "
     "before serving any client/peer traffic.", "Experimental feature"),
    ("experimental-corrupt-check-time", "0s", D, "Duration of time between cluster corruption "
     "check passes.", "Experimental feature"),
    ("experimental-compact-hash-check-enabled", "false", B, "Enable leader to periodically "
     "check followers compaction hashes (etcd 3.5.7+; not performed yet).",
     "Experimental feature", "absent", True),
    ("experimental-compact-hash-check-time", "1m", D, "Duration of time between leader checks "
     "followers compaction hashes (etcd 3.5.7+).", "Experimental feature", "absent", True),
    ("experimental-enable-lease-checkpoint", "true", B, "Persist leases' remaining TTL through "
     "the log so long lived leases are not renewed indefinitely by leader changes (etcd's "
     "default: false).", "Experimental feature"),
    ("experimental-lease-checkpoint-interval", "5m", D, "How often leases' remaining TTL is "
     "checkpointed.", "Experimental feature", "", True),
    ("experimental-compaction-batch-limit", "1000", I, "Sets the maximum revisions deleted in "
     "each compaction batch.", "Experimental feature", "noop"),
    ("experimental-watch-progress-notify-interval", "10m", D, "Duration of periodical watch "
     "progress notification.", "Experimental feature"),
    ("experimental-warning-apply-duration", "100ms", D, "Warning is generated if requests "
     "take more than this duration.", "Experimental feature"),
    ("experimental-txn-mode-write-with-shared-buffer", "true", B, "Enable the write "
     "transaction to use a shared buffer in its readonly check operations.",
     "Experimental feature", "noop"),
    ("experimental-bootstrap-defrag-threshold-megabytes", "0", U, "Enable the defrag during "
     "etcd server bootstrap on condition that it will free at least the provided threshold "
     "of disk space.", "Experimental feature", "noop"),
    ("experimental-downgrade-check-time", "5s", D, "Duration of time between two downgrade "
     "status check.", "Experimental feature", "noop", True),
    ("experimental-memory-mlock", "false", B, "Enable to enforce etcd pages (in particular "
     "bbolt) to stay in RAM.", "Experimental feature", "noop", True),
    ("experimental-snapshot-catchup-entries", "5000", U, "Entries kept after a snapshot for "
     "slow followers.", "Experimental feature", "", True),

    ("force-new-cluster", "false", B, "Force to create a new one-member cluster.",
     "Unsafe feature"),
    ("unsafe-no-fsync", "false", B, "Disables fsync, unsafe, will cause data loss.",
     "Unsafe feature"),

    ("enable-grpc-gateway", "true", B, "Enable GRPC gateway.", "Experimental feature", "",
     True),
    ("enable-ui", "true", B, "Serve the web console at /ui/ on the client URLs (same TLS "
     "and auth as the JSON gateway).", "kvcore"),
    ("workers", "0", U, "Worker processes terminating client connections (0 = one per CPU).",
     "kvcore"),
    ("grpc-engine", "native", g.selective("native", "grpcio"), "gRPC server engine (native: "
     "libnghttp2 + Cython; grpcio: reference).", "kvcore"),
]

FLAGS: dict[str, Flag] = {row[0]: Flag(*row[:5], *row[5:]) for row in _TABLE}
