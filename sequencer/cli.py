"""The sequencer's commands of the `isoroll` command line (node, tx, account,
status, block, receipt, keys, and the trading commands of sequencer.cli_trading).
The `isoroll` entry point (isoroll.cli) adds the L1, prover and devnet commands
and runs the node with its L1 services.  Node settings come from a TOML file
(--config), ISOROLL_* environment variables and flags, in that order of
precedence (flags win)."""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Callable, Sequence

from sequencer.core.presets import COLLATERAL_DECIMALS

DEFAULT_URL = "http://127.0.0.1:8547"
UNIT = 10**COLLATERAL_DECIMALS


def parse_collateral(text: str, raw: bool) -> int:
    """'10' -> 10 USDC = 10_000_000 units; with --raw the integer is taken as units."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise SystemExit(f"error: amount {text!r} is not a number") from None
    units = value if raw else value * UNIT
    if units != units.to_integral_value() or units <= 0:
        raise SystemExit(f"error: amount {text!r} must be a positive multiple of 0.000001 "
                         f"(collateral has {COLLATERAL_DECIMALS} decimals)")
    return int(units)


def format_collateral(units: int) -> str:
    return f"{Decimal(units) / UNIT:f}"


def load_key(args) -> str:
    if getattr(args, "key", None):
        return args.key
    if getattr(args, "key_file", None):
        return Path(args.key_file).read_text().strip()
    if os.environ.get("ISOROLL_KEY"):
        return os.environ["ISOROLL_KEY"]
    if os.environ.get("ISOROLL_KEY_FILE"):
        return Path(os.environ["ISOROLL_KEY_FILE"]).read_text().strip()
    raise SystemExit("error: no private key: pass --key 0x.., --key-file FILE, or set ISOROLL_KEY / ISOROLL_KEY_FILE")


def print_json(data) -> None:
    print(json.dumps(data, indent=2))


# --- node / devnet ---------------------------------------------------------------

NODE_FLAGS = [
    ("--mode", "mode", str, "sequencer (admit txs, write blocks) or follower (read-only replica)"),
    ("--sequencer-id", "sequencer_id", str, "sequencers with the same id fence each other (failover)"),
    ("--preset", "preset", str, "protocol preset: devnet or mainnet"),
    ("--data-dir", "data_dir", str, "where snapshots are kept"),
    ("--api-host", "api_host", str, "API bind address"),
    ("--api-port", "api_port", int, "API port"),
    ("--kafka", "kafka_bootstrap_servers", str, "Kafka bootstrap servers host:port[,...]"),
    ("--topic", "kafka_topic", str, "the log topic (one partition)"),
    ("--block-interval-ms", "block_interval_ms", float, "how long a block collects txs"),
    ("--snapshot-interval-blocks", "snapshot_interval_blocks", int, "blocks between snapshots"),
    ("--signature-backend", "signature_backend", str, "coincurve (libsecp256k1) or py-ecc"),
    ("--tx-check-workers", "tx_check_workers", int,
     "processes that parse and signature-check submitted txs (-1: one per extra core, max 4; 0: none)"),
    ("--bridge", "l1_bridge_address", str, "the L1 bridge address (EIP-712 verifyingContract)"),
    ("--log-level", "log_level", str, "DEBUG, INFO, WARNING, ERROR"),
    ("--log-format", "log_format", str, "json or text"),
]


def add_node_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="a TOML config file (see docs/operations.md)")
    for flag, dest, kind, text in NODE_FLAGS:
        p.add_argument(flag, dest=dest, type=kind, default=None, help=text)


def node_config(args):
    from sequencer.node.config import load_config
    flags = {dest: getattr(args, dest) for _, dest, _, _ in NODE_FLAGS}
    return load_config(args.config, flags=flags)


def run_node(config) -> int:
    """A node with its API, without L1 services; the exit code."""
    from sequencer.node.service import run, serve_forever
    return run(serve_forever(config))


def cmd_node(args) -> int:
    from sequencer.node.service import setup_logging
    config = node_config(args)
    setup_logging(config.log_level, config.log_format)
    return args.run_node(config)


# --- client commands ------------------------------------------------------------------

async def with_client(args, action, needs_key: bool = False):
    """Run ``action(client)`` with an SDK client for --url; API and connection
    errors become a message on stderr and exit codes 2 and 3."""
    import httpx
    from sequencer.sdk import ApiError, Client
    key = load_key(args) if needs_key else None
    try:
        async with Client(args.url, key) as client:
            return await action(client)
    except ApiError as exc:
        print(f"error: {exc.status} {exc.code}: {exc.message}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        raise  # stdout's reader went away (`| head`): the entry point ends quietly
    except (OSError, httpx.TransportError) as exc:
        print(f"error: cannot reach the node at {args.url}: {exc}", file=sys.stderr)
        return 3


def cmd_tx_transfer(args) -> int:
    amount = parse_collateral(args.amount, args.raw)

    async def run(client):
        print_json(await client.transfer(args.to, amount, nonce=args.nonce))
        return 0
    return asyncio.run(with_client(args, run, needs_key=True))


def cmd_tx_withdraw(args) -> int:
    amount = parse_collateral(args.amount, args.raw)

    async def run(client):
        print_json(await client.withdraw(amount, nonce=args.nonce))
        return 0
    return asyncio.run(with_client(args, run, needs_key=True))


def cmd_account(args) -> int:
    async def run(client):
        address = args.address
        if address is None:
            from sequencer.core.signing import address_of
            from sequencer.sdk import parse_key
            address = "0x" + address_of(parse_key(load_key(args))).hex()
        data = await client.account(address)
        if args.json:
            print_json(data)
        else:
            print(f"account     {data['address']}")
            print(f"collateral  {format_collateral(data['collateral'])} USDC ({data['collateral']} units)")
            markets = {m["id"]: m for m in await client.markets()} if data.get("positions") else {}
            for p in data.get("positions", []):
                if args.raw:
                    print(f"position    market {p['market']}: "
                          + ", ".join(f"{k} {v}" for k, v in p.items() if k != "market"))
                else:
                    print(describe_position(p, markets[p["market"]]))
            if not data.get("positions"):
                print("positions   none")
            print(f"open orders {len(data.get('openOrders', []))}")
        return 0
    return asyncio.run(with_client(args, run))


def describe_position(p: dict, market: dict) -> str:
    """One position in human units: sizes in the base unit, money in USDC."""
    from sequencer.cli_trading import format_size
    usdc = lambda units: f"{format_collateral(units)} USDC"  # noqa: E731
    side = "long" if p["size"] > 0 else "short" if p["size"] < 0 else "flat"
    liquidation = usdc(p["liquidationPrice"]) if p["liquidationPrice"] else "none"
    return (f"position    {market['symbol']} {side} {format_size(abs(p['size']), market)} "
            f"{market['symbol'].split('-')[0]}, entry {usdc(p['entryPrice'])}, mark {usdc(p['markPrice'])}, "
            f"liquidation {liquidation}, margin {usdc(p['margin'])}, unrealized PnL {usdc(p['unrealizedPnl'])}, "
            f"funding owed {usdc(p['fundingOwed'])}, equity {usdc(p['equity'])}")


def cmd_status(args) -> int:
    async def run(client):
        print_json(await client.status())
        return 0
    return asyncio.run(with_client(args, run))


def cmd_block(args) -> int:
    async def run(client):
        print_json(await client.block(args.number))
        return 0
    return asyncio.run(with_client(args, run))


def cmd_receipt(args) -> int:
    async def run(client):
        print_json(await client.receipt(args.hash))
        return 0
    return asyncio.run(with_client(args, run))


def cmd_keys_new(args) -> int:
    from coincurve import PrivateKey
    from sequencer.core.signing import address_of
    key = PrivateKey().secret
    address = "0x" + address_of(key).hex()
    if args.out:
        path = Path(args.out)
        path.write_text("0x" + key.hex() + "\n")
        path.chmod(0o600)
        print(json.dumps({"address": address, "keyFile": str(path)}))
    else:
        print(json.dumps({"address": address, "privateKey": "0x" + key.hex()}))
    return 0


# --- parser ----------------------------------------------------------------------------

def add_client_flags(p: argparse.ArgumentParser, key: bool = False) -> None:
    p.add_argument("--url", default=os.environ.get("ISOROLL_URL", DEFAULT_URL),
                   help=f"the node's API (env ISOROLL_URL, default {DEFAULT_URL})")
    if key:
        p.add_argument("--key", help="private key hex (prefer ISOROLL_KEY or --key-file: flags show in ps)")
        p.add_argument("--key-file", help="file holding the private key hex (env ISOROLL_KEY_FILE)")


Register = Callable[[Any], None]
"""Adds a command group: ``register(subparsers)``."""


def build_parser(run_node: Callable[[Any], int] = run_node, extensions: Sequence[Register] = (),
                 description: str = __doc__) -> argparse.ArgumentParser:
    """The sequencer's commands, ``node`` running ``run_node(config)``, plus the
    command groups ``extensions`` register (isoroll.cli passes the L1 ones)."""
    from sequencer import cli_trading
    parser = argparse.ArgumentParser(prog="isoroll", description=description)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("node", help="run a sequencer or follower node",
                       description="Run a node against Kafka: snapshot + replay, then sequence or follow.")
    add_node_flags(p)
    p.set_defaults(func=cmd_node, run_node=run_node)

    tx = sub.add_parser("tx", help="sign and submit a transaction").add_subparsers(
        dest="tx", required=True, metavar="KIND")
    p = tx.add_parser("transfer", help="move free collateral to another account")
    add_client_flags(p, key=True)
    p.add_argument("--to", required=True, help="recipient address 0x..")
    p.add_argument("--amount", required=True, help="collateral, e.g. 10 or 0.5 (USDC); with --raw in units")
    p.add_argument("--raw", action="store_true", help="amount is in base units (6 decimals)")
    p.add_argument("--nonce", type=int, help="default: the current time in ms")
    p.set_defaults(func=cmd_tx_transfer)
    p = tx.add_parser("withdraw", help="move free collateral into the withdrawals tree (claim it on L1)")
    add_client_flags(p, key=True)
    p.add_argument("--amount", required=True, help="collateral, e.g. 10 (USDC); with --raw in units")
    p.add_argument("--raw", action="store_true")
    p.add_argument("--nonce", type=int)
    p.set_defaults(func=cmd_tx_withdraw)

    p = sub.add_parser("account", help="show an account's balances, positions and orders")
    add_client_flags(p, key=True)
    p.add_argument("address", nargs="?", help="0x.. (default: the address of --key)")
    p.add_argument("--json", action="store_true", help="print the API's JSON")
    p.add_argument("--raw", action="store_true", help="positions in the API's integer units")
    p.set_defaults(func=cmd_account)

    p = sub.add_parser("status", help="the node's status, head block and EIP-712 domain")
    add_client_flags(p)
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("block", help="a block with its records and receipts")
    add_client_flags(p)
    p.add_argument("number", type=int)
    p.set_defaults(func=cmd_block)

    p = sub.add_parser("receipt", help="a tx receipt by hash")
    add_client_flags(p)
    p.add_argument("hash")
    p.set_defaults(func=cmd_receipt)

    keys = sub.add_parser("keys", help="key management").add_subparsers(dest="keys", required=True, metavar="ACTION")
    p = keys.add_parser("new", help="create a secp256k1 key; print its address")
    p.add_argument("--out", help="write the key to this file (mode 600) instead of printing it")
    p.set_defaults(func=cmd_keys_new)
    for register in (cli_trading.register, *extensions):
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
