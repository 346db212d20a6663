"""Flag errors of `grpc-proxy start` and `gateway start` (cobra and pflag, where the
member's flags go through Go's flag package): the first line and the exit code, kvcore
against etcd 3.5.1."""
import subprocess
import sys

import pytest

from tests import etcd351

CASES = ["grpc-proxy start --bogus", "grpc-proxy start --endpoints",
         "grpc-proxy start --max-send-bytes=abc", "grpc-proxy start --max-recv-bytes=1e3",
         "grpc-proxy start --debug=maybe", "gateway start --nope",
         "gateway start --listen-addr", "gateway start --retry-delay=xyz",
         "gateway start --retry-delay=5q", "gateway start --insecure-discovery=2"]


def _first_line(argv: list) -> tuple:
    p = subprocess.run(argv, capture_output=True, text=True, timeout=20,
                       stdin=subprocess.DEVNULL)
    return p.returncode, (p.stdout + p.stderr).splitlines()[0]


@pytest.mark.parametrize("args", CASES)
def test_subcommand_flag_error_as_etcd(args):
    etcd = _first_line([etcd351.ETCD, *args.split()])
    kv = _first_line([sys.executable, "-m", "kvcore", *args.split()])
    assert etcd[1].startswith("Error: ")
    assert kv == etcd
