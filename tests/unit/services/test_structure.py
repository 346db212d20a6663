"""The layering the server's structure promises (docs/architecture.md)."""
import subprocess
import sys

from hypothesis import given, strategies as st

from kvcore.api import rpc_pb2
from kvcore.server import entry
from kvcore.services import SERVICES, register_all
from kvcore.services.lease import _ID_TAG, _varint
from kvcore.services.registry import Registry


def test_worker_does_not_import_the_server_or_the_services():
    code = ("import sys, kvcore.worker.process\n"
            "bad = sorted(m for m in sys.modules if m.startswith(('kvcore.server', "
            "'kvcore.services')))\n"
            "print(' '.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == ""


class _Cfg:
    experimental_enable_lease_checkpoint = True


class _Ctx:
    """Only what services read while registering."""
    cfg = _Cfg()


def test_every_op_has_exactly_one_applier():
    reg = Registry()
    register_all(_Ctx(), reg)
    ops = {v for k, v in vars(entry).items() if k.startswith("OP_")}
    assert set(reg.appliers) == ops
    assert len(SERVICES) == len({name for name, _ in SERVICES})


@given(st.integers(0, 2**40), st.integers(1, 2**63 - 1))
def test_lease_id_appended_to_a_grant_request_is_the_id_decoded(ttl, lease_id):
    req = rpc_pb2.LeaseGrantRequest(TTL=ttl).SerializeToString()
    got = rpc_pb2.LeaseGrantRequest.FromString(req + _ID_TAG + _varint(lease_id))
    assert (got.TTL, got.ID) == (ttl, lease_id)
