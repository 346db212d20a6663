"""What every command does around its load: probe the endpoints first, then print (and
write) the result and turn it into the exit code."""
from __future__ import annotations

import sys

from . import client, etcdapi, report
from .exitcodes import EXIT_ALL_FAILED, EXIT_OK, EXIT_RUN, EXIT_USAGE, err


def prepare(a, endpoints=None):
    """Probe the endpoints; returns (endpoints, token) or an exit code."""
    eps = endpoints or a.endpoint_list
    try:
        eps, token, _ = etcdapi.run_sync(
            etcdapi.prepare(eps, a.user, a.target_leader), timeout=60)
        return eps, token
    except client.EndpointError as e:
        err(str(e))
        return EXIT_USAGE
    except client.CallError as e:
        msg, code = etcdapi.explain_call_error(e, bool(a.user))
        err(msg)
        return code
    except TimeoutError:
        err("the endpoints did not answer the probe within 60 s")
        return EXIT_USAGE


def emit(a, res: dict) -> int:
    res.setdefault("subcommand", a.cmd)
    to_stdout = a.json_out == "-"
    print(report.table(res), file=sys.stderr if to_stdout else sys.stdout)
    if a.json_out:
        text = report.to_json(res)
        if to_stdout:
            print(text)
        else:
            with open(a.json_out, "w") as f:
                f.write(text + "\n")
    return exit_code_for(res, bool(a.user))


def exit_code_for(res: dict, user_given: bool) -> int:
    lost = [k for k in res.get("errors", {}) if k.startswith("not sent: every connection closed")]
    if lost:
        err(f"the server went away during the run; {res['errors'][lost[0]]} requests were not "
            f"sent ({lost[0].split('(', 1)[-1].rstrip(')')})")
        return EXIT_RUN
    if res.get("ok", 0) > 0:
        return EXIT_OK
    if res.get("errors"):
        kind, _ = max(res["errors"].items(), key=lambda kv: kv[1])
        status = next((c for c, n in client.h2.GRPC_STATUS_NAMES.items()
                       if kind.startswith(n + ":")), 2)
        msg, code = etcdapi.explain_call_error(
            client.CallError(status, kind.split(": ", 1)[-1]), user_given)
        err("no request succeeded; " + msg)
        return code if code != 4 else EXIT_ALL_FAILED
    return EXIT_RUN
