"""`python -m isoroll.cli ...` without paying Python's start and the imports
(web3, eth-account: ~1 s) for every command: this process imports the CLI's
modules once, then forks a child per command (one JSON line on stdin:
``{"args": [...], "stdout": path, "stderr": path}``).  The child runs
isoroll/cli.py as ``__main__`` (runpy, the path ``python -m`` takes) with its
stdin on /dev/null and its stdout and stderr on the given files, and ends as
that interpreter would (``sys.exit(main())``, a traceback and exit 1 on an
uncaught exception, the flush at exit).  Per command this prints
``{"pid": N}`` when the child starts and ``{"code": C}`` when it ended
(C negative: killed by signal -C).  tests/e2e/test_l1_cli.py drives it."""
from __future__ import annotations

import json
import os
import runpy
import sys
import threading

# What isoroll/cli.py imports (not isoroll.cli itself: runpy runs it afresh in each
# child), and web3 / eth-account, which the L1 commands import when they run.
import l1_bridge.cli  # noqa: F401
import l1_bridge.client  # noqa: F401
import l1_bridge.verifier  # noqa: F401
import prover.trace  # noqa: F401  (the verifier's games)
import prover.cli  # noqa: F401
import sequencer.cli  # noqa: F401
import sequencer.lab.cli  # noqa: F401

assert threading.active_count() == 1, "no threads may run in a process that forks"


def serve() -> dict | None:
    """The parent's loop; returns the request in a child, None at the end of stdin."""
    replies = sys.stdout
    for line in sys.stdin:
        request = json.loads(line)
        replies.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            return request
        print(json.dumps({"pid": pid}), file=replies, flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"code": os.waitstatus_to_exitcode(status)}), file=replies, flush=True)
    return None


request = serve()
if request is not None:  # the child: one command, as `python -m isoroll.cli ARGS`
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(os.open(request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), 1)
    os.dup2(os.open(request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), 2)
    sys.argv = ["isoroll", *request["args"]]
    runpy.run_module("isoroll.cli", run_name="__main__", alter_sys=True)
