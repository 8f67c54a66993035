"""The `isoroll` command line.  `isoroll --help` lists the commands; each has
its own --help.  The sequencer's commands come from sequencer.cli, the L1 ones
from l1_bridge.cli, the proofs from prover.cli; `isoroll node` runs the node
with its L1 services (isoroll.service) and `isoroll devnet` everything on one
machine (isoroll.devnet)."""
from __future__ import annotations

import argparse
import os
import select
import signal
import sys

from l1_bridge import cli as l1_cli
from prover import cli as prover_cli
from sequencer import cli as sequencer_cli
from sequencer.lab import cli as lab_cli


def cmd_devnet(args) -> int:
    from isoroll.devnet import run_devnet
    return run_devnet(args)


def register_devnet(sub) -> None:
    p = sub.add_parser("devnet", help="start Kafka, anvil and a node on this machine, print dev accounts",
                       description="Start a single-node Kafka broker (KRaft, 127.0.0.1), anvil with the bridge "
                                   "and a sequencer; print the API address and funded dev accounts with their keys.")
    p.add_argument("--data-dir", default=".devnet", help="devnet state (Kafka data, snapshots)")
    p.add_argument("--api-port", type=int, default=8547)
    p.add_argument("--kafka-port", type=int, default=9092)
    p.add_argument("--accounts", type=int, default=10, help="number of funded dev accounts")
    p.add_argument("--fresh", action="store_true", help="wipe the devnet's data first")
    p.add_argument("--censor", action="store_true",
                   help="the operator censors the L1 inbox: deposits, forced withdrawals and forced closes made "
                        "after the start are never taken (to drill force-withdraw -> freeze -> escape -> refund)")
    p.add_argument("--fault-output", type=int, default=None, metavar="N",
                   help="the proposer posts a wrong state root for output N (once), to watch an unprivileged "
                        "`isoroll verifier --key <dev key>` prove it wrong in a dispute game (docs/fraud-proofs.md)")
    p.add_argument("--keep-kafka", action="store_true", help="leave the broker running on exit")
    p.add_argument("--no-oracle", action="store_true", help="no price feed (post prices with `isoroll oracle`)")
    p.add_argument("--oracle-csv", metavar="FILE", help="replay this price CSV in a loop instead of the random walk "
                                                         "(format: `isoroll oracle --help`)")
    p.add_argument("--oracle-interval", type=float, default=1.0, help="seconds between prices [1]")
    p.add_argument("--oracle-volatility-ppm", type=int, default=1000, help="random walk: one step's move, ppm [1000]")
    p.set_defaults(func=cmd_devnet)


def run_node(config) -> int:
    from isoroll.service import run_node as run
    return run(config)


def build_parser() -> argparse.ArgumentParser:
    return sequencer_cli.build_parser(run_node=run_node, description=__doc__,
                                      extensions=(register_devnet, l1_cli.register, prover_cli.register,
                                                  lab_cli.register))


def is_stdout_closed() -> bool:
    """Whether the reader of stdout went away (a pipe whose reader closed polls POLLERR)."""
    poll = select.poll()
    poll.register(sys.stdout.fileno(), select.POLLOUT)
    return any(events & select.POLLERR for _, events in poll.poll(0))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args) or 0
        sys.stdout.flush()  # here, not at exit, where a closed pipe would print a traceback
        return code
    except BrokenPipeError:
        # `isoroll l1 status | head`: the reader has what it wanted; end quietly like other
        # Unix tools (exit 128 + SIGPIPE), with no second error when Python flushes stdout.
        # SIGPIPE itself stays ignored: the node and the devnet write to sockets.
        if not is_stdout_closed():
            raise
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
