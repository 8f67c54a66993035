"""Trading end to end: signed PlaceOrders through the API and Kafka (issue 3, Benchmark).

One run, against one bench broker on 127.0.0.1 and a node subprocess (devnet preset,
``--accounts`` funded dev accounts), on the devnet BTC-USD market:

  oracle     a fresh OraclePrice (POST /v1/oracle, signed by k of n devnet oracle
             keys) before the orders and again before every phase, so the price
             never goes stale (devnet max age 60 s)
  recovery   the single-core libsecp256k1 recovery rate, same run
             (bench_ingest.recovery_reference, over Transfers: the same recovery call)
  single     POST /v1/tx, closed loop, ``--concurrency`` requests in flight
  batch      POST /v1/txs, batches of ``--batch`` orders, ``--batch-clients`` in flight
  latency    POST /v1/tx open loop at ``--rate`` orders/s (bench_ingest.open_loop):
             latency = receipt time - scheduled send time

Orders: GTC limit orders, pre-signed before any timing.  Order k is sent by dev
account k % accounts (even accounts buy, odd accounts sell, so consecutive orders
alternate sides and no account can meet its own order) at the oracle price plus a
seeded offset of -spread..+spread ticks, 1 to 3 steps, leverage 10.  A good share
crosses the resting book; the receipts' fills give the fill ratio.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import msgspec

from bench.bench_ingest import closed_loop, open_loop, recovery_reference
from bench.common import (BenchBroker, CpuMeter, NodeProcess, child_pids, delete_topic, domain_separator, fmt_rate,
                          http_get, plan_transfers, say, sign_transfers)

_json_decode = msgspec.json.Decoder()
MARKET = 1  # devnet BTC-USD


@dataclass
class Settings:
    accounts: int = 2048
    single_orders: int = 4_000
    concurrency: int = 64
    batch_orders: int = 20_000
    batch: int = 500
    batch_clients: int = 4
    rate: float = 1_000.0
    latency_seconds: float = 5.0
    recover_n: int = 10_000
    spread_ticks: int = 10
    leverage: int = 10
    seed: int = 7
    phase_timeout: float = 120.0
    profile_node: bool = False
    node_settings: dict = field(default_factory=dict)

    @classmethod
    def full(cls) -> "Settings":
        return cls(single_orders=20_000, batch_orders=100_000, latency_seconds=20.0, recover_n=50_000)


# --- pre-signed orders ------------------------------------------------------------------------------

def _sign_orders_chunk(args) -> list[bytes]:
    """Worker: [(account index, is_buy, price, size, nonce)] -> JSON tx bodies."""
    accounts_n, items, leverage, expiry, separator = args
    from sequencer.core import eip712
    from sequencer.core.records import PlaceOrder
    from sequencer.core.signing import sign_digest
    from sequencer.executor.genesis import get_dev_accounts
    accounts = get_dev_accounts(accounts_n)
    enc = msgspec.json.Encoder()
    out = []
    for idx, is_buy, price, size, nonce in items:
        key, account = accounts[idx]
        record = PlaceOrder(account, MARKET, is_buy, price, size, leverage, 0, False, nonce, expiry, b"")
        sig = sign_digest(eip712.compute_digest(separator, "PlaceOrder", record), key)
        out.append(enc.encode({"type": "PlaceOrder", "message": {
            "account": "0x" + account.hex(), "market": MARKET, "isBuy": is_buy, "price": price, "size": size,
            "leverage": leverage, "timeInForce": 0, "reduceOnly": False, "nonce": nonce, "expiry": expiry},
            "signature": "0x" + sig.hex()}))
    return out


def plan_orders(count: int, s: Settings, mid: int, tick: int, step: int) -> list[tuple]:
    rng = random.Random(s.seed)
    plan = []
    for k in range(count):
        idx = k % s.accounts
        price = mid + tick * rng.randint(-s.spread_ticks, s.spread_ticks)
        plan.append((idx, idx % 2 == 0, price, step * rng.randint(1, 3), 1 + k // s.accounts))
    return plan


def sign_orders(plan: list[tuple], s: Settings, expiry: int) -> list[bytes]:
    from concurrent.futures import ProcessPoolExecutor
    workers = os.cpu_count() or 1
    sep = domain_separator()
    step = max(1, -(-len(plan) // (workers * 4)))
    chunks = [(s.accounts, plan[i:i + step], s.leverage, expiry, sep) for i in range(0, len(plan), step)]
    out: list[bytes] = []
    with ProcessPoolExecutor(workers) as pool:
        for part in pool.map(_sign_orders_chunk, chunks):
            out.extend(part)
    return out


# --- receipts -----------------------------------------------------------------------------------------

class Tally:
    """Counts acked orders and what they did: crossed on arrival (took fills as the
    taker) and the trades made; errors by code."""

    def __init__(self) -> None:
        self.crossed = 0
        self.filled_any = 0
        self.trades = 0
        self.acked = 0

    def receipt(self, r: dict, errors: Counter) -> int:
        if r.get("status") != "ok":
            # a committed failure: "error" is "code: message"; a refusal also has "code"
            errors[r.get("code") or str(r.get("error") or "failed").split(":")[0]] += 1
            return 0
        self.acked += 1
        fills = r.get("fills") or []
        if fills:
            self.crossed += 1
            self.trades += len(fills)
        if (r.get("order") or {}).get("filled"):
            self.filled_any += 1
        return 1

    def single(self, status: int, data: bytes, errors: Counter) -> int:
        try:
            body = _json_decode.decode(data)
        except msgspec.DecodeError:
            errors[f"http_{status}"] += 1
            return 0
        if status != 200:
            errors[(body.get("error") or {}).get("code", f"http_{status}")] += 1
            return 0
        return self.receipt(body, errors)

    def batch(self, status: int, data: bytes, errors: Counter) -> int:
        if status != 200:
            errors[f"http_{status}"] += 1
            return 0
        return sum(self.receipt(r, errors) for r in _json_decode.decode(data)["receipts"])

    def describe(self) -> dict:
        n = max(1, self.acked)
        return {"crossed": self.crossed, "crossed_ratio": self.crossed / n, "filled_any_ratio": self.filled_any / n,
                "trades": self.trades}


# --- oracle --------------------------------------------------------------------------------------------

async def post_oracle(port: int, price: int) -> dict:
    from bench.common import RawConnection
    from sequencer.core.markets import DEVNET_ORACLE_KEYS, ORACLE_SETS
    from sequencer.oracle import sign_oracle_price
    quorum = ORACLE_SETS["devnet"].quorum
    record = sign_oracle_price(domain_separator(), MARKET, price, int(time.time() * 1000) - 1,
                               DEVNET_ORACLE_KEYS[:quorum])
    body = msgspec.json.encode({"market": MARKET, "price": price, "timestamp": record.timestamp_ms,
                                "signatures": ["0x" + sig.hex() for sig in record.signatures]})
    conn = RawConnection(port)
    try:
        status, data = await conn.request("POST", "/v1/oracle", body)
    finally:
        await conn.close()
    if status != 200:
        raise RuntimeError(f"POST /v1/oracle answered {status}: {data[:300]!r}")
    return _json_decode.decode(data)


async def book_summary(port: int) -> dict:
    _, data = await http_get(port, f"/v1/markets/{MARKET}/book?depth=500")
    book = _json_decode.decode(data)
    return {"bid_levels": len(book.get("bids", [])), "ask_levels": len(book.get("asks", [])),
            "resting_orders": sum(lv[2] for lv in book.get("bids", []) + book.get("asks", [])),
            "best_bid": (book.get("bids") or [[None]])[0][0], "best_ask": (book.get("asks") or [[None]])[0][0]}


# --- the run ----------------------------------------------------------------------------------------------

async def run(s: Settings, broker: BenchBroker) -> dict:
    from sequencer.core.markets import DEVNET_MARKETS
    from sequencer.oracle import DEFAULT_START_PRICES
    params = DEVNET_MARKETS[MARKET]
    mid = DEFAULT_START_PRICES[params.symbol]
    results: dict = {"settings": dict(vars(s)), "price": mid}
    await broker.warm_up()
    n_warm = 500
    n_lat = int(s.rate * s.latency_seconds)
    total = n_warm + s.single_orders + s.batch_orders + n_lat
    say(f"pre-signing {total:,} PlaceOrders over {s.accounts} dev accounts (BTC-USD at {mid / 1e6:,.0f}, "
        f"+-{s.spread_ticks} ticks, 1-3 steps, leverage {s.leverage}) ...")
    t = time.perf_counter()
    expiry = int((time.time() + 50 * 60) * 1000)
    bodies = sign_orders(plan_orders(total, s, mid, params.tick_size, params.step_size), s, expiry)
    say(f"  signed in {time.perf_counter() - t:.1f}s")
    warm, single = bodies[:n_warm], bodies[n_warm:n_warm + s.single_orders]
    batch = bodies[n_warm + s.single_orders:n_warm + s.single_orders + s.batch_orders]
    lat = bodies[n_warm + s.single_orders + s.batch_orders:]

    say("reference: libsecp256k1 recovery (bench_ingest.recovery_reference) ...")
    transfers = sign_transfers(plan_transfers(s.recover_n, s.accounts), s.accounts, expiry=expiry)
    ref = recovery_reference(transfers, s.recover_n)
    results["recovery"] = ref
    say(f"  recover 1 core {fmt_rate(ref['recover_1core'])}, bare libsecp256k1 call {fmt_rate(ref['secp_bare'])}, "
        f"node precheck path {fmt_rate(ref['precheck_1core'])}")

    topic = f"isoroll.bench.trading.{uuid.uuid4().hex[:8]}"
    node = NodeProcess(broker.bootstrap, topic, s.accounts, s.node_settings, profile=s.profile_node)
    try:
        say(f"starting the node (subprocess, topic {topic}) ...")
        await node.start()
        pids = {"node": node.pid, "node workers": child_pids(node.pid), "client": os.getpid(), "kafka": broker.pid}
        r = await post_oracle(node.port, mid)
        say(f"oracle price {mid / 1e6:,.0f} posted (block {r.get('block')}, {len(r.get('liquidations', []))} "
            f"liquidations)")

        def batches(xs):
            return [b'{"txs":[' + b",".join(xs[i:i + s.batch]) + b"]}" for i in range(0, len(xs), s.batch)]

        warm_tally = Tally()
        await closed_loop(node.port, "raw", "/v1/txs", batches(warm), 1, warm_tally.batch, s.phase_timeout)
        results["warm"] = warm_tally.describe() | {"acked": warm_tally.acked}

        # single-order API
        await post_oracle(node.port, mid)
        say(f"single-order API: {len(single):,} orders, {s.concurrency} in flight ...")
        tally = Tally()
        with CpuMeter(pids) as cpu:
            r = await closed_loop(node.port, "raw", "/v1/tx", single, s.concurrency, tally.single, s.phase_timeout)
        r.update(cpu_cores=cpu.cores(), **tally.describe())
        results["single"] = r
        say(f"  {fmt_rate(r['rate'])} acked ({r['acked']:,} in {r['elapsed']:.1f}s), request p50 "
            f"{r['req_p50_ms']:.1f} ms p99 {r['req_p99_ms']:.1f} ms; crossed {r['crossed_ratio']:.0%} "
            f"({r['trades']:,} trades); CPU cores: {cpu.describe()}; errors {r['errors']}")

        # batch API
        await post_oracle(node.port, mid)
        bb = batches(batch)
        say(f"batch API: {len(batch):,} orders in {len(bb)} batches of {s.batch}, {s.batch_clients} clients ...")
        tally = Tally()
        with CpuMeter(pids) as cpu:
            r = await closed_loop(node.port, "raw", "/v1/txs", bb, s.batch_clients, tally.batch, s.phase_timeout)
        r.update(cpu_cores=cpu.cores(), **tally.describe())
        results["batch"] = r
        say(f"  {fmt_rate(r['rate'])} acked ({r['acked']:,} in {r['elapsed']:.1f}s), batch p50 "
            f"{r['req_p50_ms']:.0f} ms p99 {r['req_p99_ms']:.0f} ms; crossed {r['crossed_ratio']:.0%} "
            f"({r['trades']:,} trades); CPU cores: {cpu.describe()}; errors {r['errors']}")

        # open-loop latency
        await post_oracle(node.port, mid)
        await asyncio.sleep(0.5)
        say(f"latency: open loop at {s.rate:,.0f} orders/s for {s.latency_seconds:.0f}s ({len(lat):,} orders) ...")
        with CpuMeter(pids) as cpu:
            r = await open_loop(node.port, "raw", lat, s.rate)
        r["cpu_cores"] = cpu.cores()
        results["latency"] = r
        say(f"  achieved {fmt_rate(r['achieved'])}; submit->receipt p50 {r['p50_ms']:.1f} ms, p90 "
            f"{r['p90_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, max {r['max_ms']:.0f} ms; send lag p99 "
            f"{r['send_lag_p99_ms']:.1f} ms; {r['connections']} connections; CPU cores: {cpu.describe()}; "
            f"errors {r['errors']}")
        results["book"] = await book_summary(node.port)
        say(f"book at the end: {results['book']}")
    finally:
        node.stop()
        await delete_topic(broker.bootstrap, topic)
    return results


def summary(res: dict) -> list[str]:
    rec = res["recovery"]["recover_1core"]
    sg, b, lat = res["single"], res["batch"], res["latency"]
    return [
        f"trading e2e, batch API   {fmt_rate(b['rate']):>10} orders  = {b['rate'] / rec:.2f} x recovery "
        f"({fmt_rate(rec)}); crossed on arrival {b['crossed_ratio']:.0%}",
        f"trading e2e, single API  {fmt_rate(sg['rate']):>10} orders  ({res['settings']['concurrency']} in flight); "
        f"crossed on arrival {sg['crossed_ratio']:.0%}",
        f"trading e2e, open loop at {res['settings']['rate']:,.0f} orders/s ({lat['achieved']:,.0f}/s acked): "
        f"p50 {lat['p50_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms",
    ]


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m bench trading", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--full", action="store_true", help="bigger counts and a longer open-loop phase")
    p.add_argument("--accounts", type=int)
    p.add_argument("--concurrency", type=int)
    p.add_argument("--batch", type=int)
    p.add_argument("--batch-clients", type=int)
    p.add_argument("--rate", type=float, help="offered orders/s of the open-loop phase (default 1,000)")
    p.add_argument("--latency-seconds", type=float)
    p.add_argument("--single-orders", type=int)
    p.add_argument("--batch-orders", type=int)
    p.add_argument("--spread-ticks", type=int, help="prices are the oracle price +- this many ticks")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="a node setting for the run (e.g. block_interval_ms=1), as ISOROLL_NAME")
    p.add_argument("--profile-node", action="store_true",
                   help="run the node under cProfile (slower) and print its top functions at the end")
    args = p.parse_args(argv)
    s = Settings.full() if args.full else Settings()
    for name in ("accounts", "concurrency", "batch", "batch_clients", "rate", "latency_seconds",
                 "single_orders", "batch_orders", "spread_ticks"):
        if getattr(args, name) is not None:
            setattr(s, name, getattr(args, name))
    if s.accounts % 2:
        p.error("--accounts must be even (even accounts buy, odd accounts sell)")
    s.node_settings = dict(item.split("=", 1) for item in args.set)
    s.profile_node = args.profile_node
    import logging
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    with BenchBroker() as broker:
        res = asyncio.run(run(s, broker))
    say("")
    say("== trading summary ==")
    for line in summary(res):
        say("  " + line)
    return res
