"""Matching plus settlement in process, on one core (issue 3 benchmark).

Runs a seeded stream of signed orders (limit orders around the mark, crossing
immediate-or-cancel orders, cancels) through ``Exchange.admit`` with the
rules applied to the state exactly as an executor applies the log, and
reports orders per second, wall clock and per CPU second of this process
(the second is what one core does when the machine is shared).  Signatures are made before the clock starts and
not checked in the main figure (``verify_signatures=False``: an executor
replaying its own log); the libsecp256k1 recovery rate of the same orders is
measured separately, and a second run with verification on gives the
end-to-end in-process rate.

    .venv/bin/python bench/bench_engine.py [--quick] [--orders N] [--json]
"""
from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import msgspec  # noqa: E402

from sequencer.core import eip712, signing  # noqa: E402
from sequencer.core.hashing import keccak  # noqa: E402
from sequencer.core.markets import DEVNET_MARKETS, DEVNET_ORACLE_KEYS, USDC  # noqa: E402
from sequencer.core.matching import Exchange  # noqa: E402
from sequencer.core.presets import DEVNET  # noqa: E402
from sequencer.core.records import CancelOrder, OraclePrice, PlaceOrder, Trade  # noqa: E402
from sequencer.core.transition import Context, RuleError, compute_genesis_state  # noqa: E402

BTC = 1
MARK = 60_000 * USDC
T0 = 1_700_000_000_000
TRADERS = 200
BLOCK = 500
"""Records per block: the journal is committed (dropped) at each block end."""


def make_context(verify: bool) -> Context:
    domain = eip712.Domain(DEVNET.chain_id, bytes.fromhex("5fbdb2315678afecb367f032d93f642f64180aa3"))
    return Context(preset=DEVNET, domain_separator=eip712.compute_domain_separator(domain),
                   recover=signing.get_recover("coincurve"), verify_signatures=verify)


def sign(record, key: bytes, separator: bytes):
    digest = eip712.compute_digest(separator, eip712.get_primary_type(record), record)
    return msgspec.structs.replace(record, signature=signing.sign_digest(digest, key))


def make_workload(n: int, seed: int, separator: bytes):
    """(keys, records): ~65% resting limit orders, ~25% crossing IOC orders, ~10% cancels."""
    rng = random.Random(seed)
    keys = [keccak(b"bench trader %d" % i) for i in range(TRADERS)]
    addresses = [signing.address_of(k) for k in keys]
    nonces = [0] * TRADERS
    open_orders: list[tuple[int, int]] = []
    records = []
    expiry = T0 + 3_600_000
    step = DEVNET_MARKETS[BTC].step_size
    for _ in range(n):
        i = rng.randrange(TRADERS)
        nonces[i] += 1
        roll = rng.random()
        if roll < 0.10 and open_orders:
            owner, order_nonce = open_orders.pop(rng.randrange(len(open_orders)))
            nonces[owner] += 1
            records.append(sign(CancelOrder(addresses[owner], order_nonce, nonces[owner], expiry, b""),
                                keys[owner], separator))
            continue
        is_buy = rng.random() < 0.5
        size = rng.randint(1, 20) * step
        if roll < 0.35:   # crossing immediate-or-cancel
            price = MARK + (50 if is_buy else -50) * USDC
            tif = 1
        else:             # resting limit order a little away from the mark
            price = MARK + (-rng.randint(1, 40) if is_buy else rng.randint(1, 40)) * USDC
            tif = 0
            open_orders.append((i, nonces[i]))
        records.append(sign(PlaceOrder(addresses[i], BTC, is_buy, price, size, 10, tif, False, nonces[i],
                                       expiry, b""), keys[i], separator))
    return addresses, records


def oracle(ctx: Context, timestamp_ms: int) -> OraclePrice:
    record = OraclePrice(BTC, MARK, timestamp_ms, ())
    digest = eip712.compute_digest(ctx.domain_separator, "OraclePrice", record)
    return msgspec.structs.replace(record, signatures=tuple(signing.sign_digest(digest, k)
                                                           for k in DEVNET_ORACLE_KEYS[:2]))


def run_engine(addresses, records, ctx: Context) -> dict:
    state = compute_genesis_state([(a, 10**9 * USDC) for a in addresses])
    exchange = Exchange(DEVNET_MARKETS)
    exchange.on_oracle_price(state, oracle(ctx, T0), T0, ctx)
    trades = refused = 0
    now = T0
    start, cpu_start = time.perf_counter(), time.process_time()
    for i, record in enumerate(records):
        now += 1
        if i % BLOCK == 0:  # a block boundary: the block builder commits the journal
            state.commit(0)
            state.dirty.clear()
        try:
            out = exchange.admit(state, record, now, ctx)
        except RuleError:
            refused += 1
            continue
        for r in out:
            if type(r) is Trade:
                trades += 1
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return {"orders": len(records), "seconds": round(elapsed, 3), "orders_per_s": round(len(records) / elapsed),
            "cpu_seconds": round(cpu, 3), "orders_per_cpu_s": round(len(records) / cpu),
            "trades": trades, "refused": refused, "book_levels": {k: len(v) for k, v in exchange.book(BTC, 10**6).items()
                                                                  if k != "market"}}


def run_recover(records, ctx: Context) -> dict:
    digests = [(eip712.compute_digest(ctx.domain_separator, eip712.get_primary_type(r), r), r.signature)
               for r in records]
    recover = signing.get_recover("coincurve")
    start, cpu_start = time.perf_counter(), time.process_time()
    for digest, signature in digests:
        recover(digest, signature)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return {"recoveries": len(digests), "recoveries_per_s": round(len(digests) / elapsed),
            "recoveries_per_cpu_s": round(len(digests) / cpu)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small run (5,000 orders) for CI")
    parser.add_argument("--orders", type=int, default=None, help="orders in the stream (default 50,000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    n = args.orders or (5_000 if args.quick else 50_000)
    fast, checked = make_context(False), make_context(True)
    addresses, records = make_workload(n, args.seed, fast.domain_separator)
    result = {
        "python": platform.python_version(), "machine": platform.machine(),
        "engine": run_engine(addresses, records, fast),
        "secp256k1": run_recover(records, fast),
        "engine_with_signature_checks": run_engine(addresses, records, checked),
    }
    if args.json:
        print(json.dumps(result))
        return 0
    e, s, c = result["engine"], result["secp256k1"], result["engine_with_signature_checks"]
    print(f"matching + settlement, one core: {e['orders_per_s']:,} orders/s wall, "
          f"{e['orders_per_cpu_s']:,} per CPU second "
          f"({e['orders']:,} orders, {e['trades']:,} trades, {e['refused']:,} refused, {e['seconds']} s)")
    print(f"signature checks (libsecp256k1 recovery): {s['recoveries_per_s']:,} /s wall, "
          f"{s['recoveries_per_cpu_s']:,} per CPU second")
    print(f"matching + settlement with signature checks: {c['orders_per_s']:,} orders/s wall, "
          f"{c['orders_per_cpu_s']:,} per CPU second")
    print(f"resting levels at the end: {e['book_levels']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
