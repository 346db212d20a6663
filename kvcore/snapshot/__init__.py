"""kvcore's state in etcd 3.5's backend schema: export (snapshots, Hash), import (restore)."""
