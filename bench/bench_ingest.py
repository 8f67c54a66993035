"""Ingest: signed txs acknowledged per second through the API (issue 2, Benchmark).

One run measures, against one bench broker on 127.0.0.1:
  recovery   single-core libsecp256k1 recovery rate (get_recover("coincurve")) over
             pre-made EIP-712 digests/signatures, and whether 2 threads go faster
             (does coincurve release the GIL?)
  single     POST /v1/tx, closed loop, ``--concurrency`` requests in flight
  batch      POST /v1/txs, batches of ``--batch`` txs, ``--batch-clients`` in flight
  latency    POST /v1/tx open loop at ``--rate`` tx/s: each tx is scheduled at a fixed
             time regardless of answers; latency = receipt time - scheduled time
  kafka      aiokafka alone (BlockWriter, acks=all, one transaction per block, sequential
             like the node) writing blocks of the byte size the node wrote: the log's limit

The node runs as a subprocess (`isoroll node`) so it has its own core; the load
generator is this process.  All txs are signed before any timing.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import msgspec

from bench.common import (BenchBroker, CpuMeter, NodeProcess, Signed, bench_domain, child_pids, delete_topic,
                          domain_separator,
                          fmt_rate, make_connection, percentile, plan_transfers, say, sign_transfers)

_json_decode = msgspec.json.Decoder()


@dataclass
class Settings:
    accounts: int = 4096
    single_txs: int = 6_000
    concurrency: int = 64
    batch_txs: int = 25_000
    batch: int = 500
    batch_clients: int = 4
    rate: float = 2_000.0
    latency_seconds: float = 5.0
    low_rate: float = 500.0
    """A second open-loop point below the node's capacity: the latency floor."""
    recover_n: int = 20_000
    kafka_seconds: float = 3.0
    client: str = "raw"
    node_settings: dict = field(default_factory=dict)
    aiokafka_backoff_ms: float | None = None
    phase_timeout: float = 120.0

    @classmethod
    def full(cls) -> "Settings":
        return cls(single_txs=30_000, batch_txs=100_000, latency_seconds=20.0, recover_n=100_000,
                   kafka_seconds=10.0)


# --- reference (a): recovery rate ---------------------------------------------------------------

def recovery_reference(signed: list[Signed], n: int) -> dict:
    from sequencer.core import eip712
    from sequencer.core.encoding import decode_record
    from sequencer.core.signing import get_recover
    recover = get_recover("coincurve")
    sep = domain_separator()
    sample = signed[:n]
    records = [decode_record(s.record_bytes) for s in sample]
    pairs = [(eip712.compute_digest(sep, "Transfer", r), r.signature) for r in records]
    for digest, sig in pairs[:500]:  # warm up
        recover(digest, sig)
    t = time.perf_counter()
    for digest, sig in pairs:
        recover(digest, sig)
    one = len(pairs) / (time.perf_counter() - t)

    # Two threads over halves of the same work: ~2x means the C call releases the GIL
    # and the Python around it is small; ~1x means the GIL serialises it.
    half = len(pairs) // 2

    def work(part):
        for digest, sig in part:
            recover(digest, sig)

    threads = [threading.Thread(target=work, args=(pairs[:half],)), threading.Thread(target=work, args=(pairs[half:],))]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    two = len(pairs) / (time.perf_counter() - t)

    # The bare libsecp256k1 call (no parse_signature, no keccak of the public key).
    from coincurve import PublicKey
    raw = [(d, s[:64] + bytes([s[64] - 27])) for d, s in pairs]
    t = time.perf_counter()
    for d, s in raw:
        PublicKey.from_signature_and_message(s, d, hasher=None).format(compressed=False)
    bare = len(raw) / (time.perf_counter() - t)

    # What the node does per tx before the builder, outside HTTP: parse the JSON tx,
    # hash the record, compute the digest, recover - single core.
    # (sequencer.core.txcheck.check_tx, what the node's tx check workers run.)
    from sequencer.core.txcheck import check_tx
    bodies = [s.body for s in sample]
    domain = bench_domain()
    t = time.perf_counter()
    for body in bodies:
        check_tx(body, domain, sep, recover)
    precheck = len(bodies) / (time.perf_counter() - t)
    return {"recover_1core": one, "recover_2threads": two, "secp_bare": bare, "precheck_1core": precheck}


# --- load phases ------------------------------------------------------------------------------------

def count_single(status: int, data: bytes, errors: Counter) -> int:
    if status == 200 and b'"status":"ok"' in data:
        return 1
    try:
        errors[_json_decode.decode(data)["error"]["code"]] += 1
    except Exception:
        errors[f"http_{status}"] += 1
    return 0


def count_batch(status: int, data: bytes, errors: Counter) -> int:
    if status != 200:
        errors[f"http_{status}"] += 1
        return 0
    ok = 0
    for receipt in _json_decode.decode(data)["receipts"]:
        if receipt["status"] == "ok":
            ok += 1
        else:
            errors[(receipt.get("code") or receipt.get("error") or "failed").split(":")[0]] += 1
    return ok


async def closed_loop(port: int, kind: str, path: str, bodies: list[bytes], concurrency: int,
                      counter, timeout: float) -> dict:
    """``concurrency`` connections, each sending its next body as soon as its
    previous answer arrived, until the bodies are used up or ``timeout``."""
    conns = [await make_connection(kind, port).open() for _ in range(concurrency)]
    it = iter(bodies)
    errors: Counter = Counter()
    acked = 0
    latencies: list[float] = []
    deadline = time.perf_counter() + timeout

    async def worker(conn) -> None:
        nonlocal acked
        for body in it:
            if time.perf_counter() > deadline:
                return
            t = time.perf_counter()
            status, data = await conn.request("POST", path, body)
            latencies.append(time.perf_counter() - t)
            acked += counter(status, data, errors)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in conns))
    elapsed = time.perf_counter() - t0
    for c in conns:
        await c.close()
    return {"acked": acked, "elapsed": elapsed, "rate": acked / elapsed, "errors": dict(errors),
            "req_p50_ms": percentile(latencies, 50) * 1e3, "req_p99_ms": percentile(latencies, 99) * 1e3,
            "requests": len(latencies)}


async def open_loop(port: int, kind: str, bodies: list[bytes], rate: float, pool: int = 64,
                    max_connections: int = 512) -> dict:
    """Send body i at t0 + i/rate whatever happened before; latency from the
    scheduled time to the receipt (so a late send counts against the node).
    Connections: ``pool`` opened up front, more on demand up to
    ``max_connections``; past that a tx waits for a free one (still timed from
    its scheduled send)."""
    idle = [await make_connection(kind, port).open() for _ in range(pool)]
    opened = len(idle)
    freed = asyncio.Condition()
    errors: Counter = Counter()
    latencies: list[float] = []
    send_lag: list[float] = []
    acked = 0
    tasks = set()

    async def send(scheduled: float, body: bytes) -> None:
        nonlocal acked, opened
        if not idle and opened < max_connections:
            opened += 1
            conn = await make_connection(kind, port).open()
        else:
            async with freed:
                await freed.wait_for(lambda: bool(idle))
                conn = idle.pop()
        send_lag.append(time.perf_counter() - scheduled)
        status, data = await conn.request("POST", "/v1/tx", body)
        latencies.append(time.perf_counter() - scheduled)
        acked += count_single(status, data, errors)
        idle.append(conn)
        async with freed:
            freed.notify()

    t0 = time.perf_counter() + 0.05
    for i, body in enumerate(bodies):
        scheduled = t0 + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(send(scheduled, body))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.gather(*list(tasks))
    elapsed = time.perf_counter() - t0
    for c in idle:
        await c.close()
    return {"acked": acked, "offered": len(bodies), "elapsed": elapsed, "achieved": acked / elapsed,
            "p50_ms": percentile(latencies, 50) * 1e3, "p90_ms": percentile(latencies, 90) * 1e3,
            "p99_ms": percentile(latencies, 99) * 1e3, "max_ms": max(latencies) * 1e3,
            "send_lag_p99_ms": percentile(send_lag, 99) * 1e3, "connections": opened, "errors": dict(errors)}


async def log_offset(node: NodeProcess) -> int:
    from bench.common import http_get
    _, body = await http_get(node.port, "/v1/status")
    return _json_decode.decode(body)["logOffset"]


async def block_sizes(bootstrap: str, topic: str, start: int, end: int) -> list[tuple[int, int]]:
    """[(message bytes, records)] of the node's log in [start, end)."""
    from sequencer.core.encoding import decode_block
    from sequencer.log.kafka import BlockReader, LogConfig
    out = []
    async with BlockReader(LogConfig(bootstrap_servers=bootstrap, topic=topic), start) as reader:
        while await reader.position() < end:
            for m in await reader.read(timeout_ms=500):
                if m.offset < end:
                    out.append((len(m.value), len(decode_block(m.value).records)))
    return out


# --- reference (b): aiokafka alone ------------------------------------------------------------------

async def kafka_reference(bootstrap: str, block_bytes: int, seconds: float,
                          backoff_override: float | None = None) -> dict:
    """Commit blocks of ``block_bytes`` bytes one after another, one transaction
    each, acks=all, through the node's own BlockWriter: the log's own limit.

    ``backoff_override``: the experiment with aiokafka's
    ``producer.sender.BACKOFF_OVERRIDE`` (20 ms: the sleep after the broker answers
    AddPartitionsToTxn with CONCURRENT_TRANSACTIONS because the previous
    transaction's markers are not written yet) set to this many seconds."""
    from aiokafka.producer import sender as aiokafka_sender
    from sequencer.log.kafka import BlockWriter, LogConfig, ensure_topic
    saved = aiokafka_sender.BACKOFF_OVERRIDE
    if backoff_override is not None:
        aiokafka_sender.BACKOFF_OVERRIDE = backoff_override
    topic = f"isoroll.bench.kafka-ref.{uuid.uuid4().hex[:8]}"
    config = LogConfig(bootstrap_servers=bootstrap, topic=topic,
                       transactional_id=f"isoroll-bench-ref-{uuid.uuid4().hex[:8]}", client_id="isoroll-bench-ref")
    await ensure_topic(config)
    payload = os.urandom(max(1, block_bytes))
    latencies = []
    try:
        async with BlockWriter(config) as writer:
            for _ in range(20):  # warm up (metadata, coordinator, first transactions)
                await writer.write(payload)
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                t = time.perf_counter()
                await writer.write(payload)
                latencies.append(time.perf_counter() - t)
            elapsed = time.perf_counter() - t0
    finally:
        aiokafka_sender.BACKOFF_OVERRIDE = saved
        await delete_topic(bootstrap, topic)
    return {"backoff_override": backoff_override, "block_bytes": block_bytes, "commits": len(latencies), "commits_per_s": len(latencies) / elapsed,
            "mb_per_s": len(latencies) * block_bytes / elapsed / 1e6,
            "p50_ms": percentile(latencies, 50) * 1e3, "p99_ms": percentile(latencies, 99) * 1e3}


# --- the run --------------------------------------------------------------------------------------------

def block_stats(sizes: list[tuple[int, int]]) -> dict:
    if not sizes:
        return {"blocks": 0, "avg_bytes": 0, "avg_records": 0, "bytes_per_record": 0}
    total_b = sum(b for b, _ in sizes)
    total_r = sum(r for _, r in sizes)
    return {"blocks": len(sizes), "avg_bytes": total_b / len(sizes), "avg_records": total_r / len(sizes),
            "bytes_per_record": total_b / max(1, total_r)}


async def run(settings: Settings, broker: BenchBroker) -> dict:
    s = settings
    results: dict = {"settings": {k: v for k, v in vars(s).items()}}
    n_lat = int(s.rate * s.latency_seconds)
    n_low = int(s.low_rate * s.latency_seconds)
    n_warm = 3_000
    total = n_warm + s.single_txs + s.batch_txs + n_lat + n_low
    say(f"pre-signing {total:,} Transfers over {s.accounts} dev accounts ...")
    t = time.perf_counter()
    expiry = int((time.time() + 6 * 3600) * 1000)
    signed = sign_transfers(plan_transfers(total, s.accounts), s.accounts, expiry=expiry)
    say(f"  signed in {time.perf_counter() - t:.1f}s")
    warm = signed[:n_warm]
    single = signed[n_warm:n_warm + s.single_txs]
    batch = signed[n_warm + s.single_txs:n_warm + s.single_txs + s.batch_txs]
    lat = signed[n_warm + s.single_txs + s.batch_txs:n_warm + s.single_txs + s.batch_txs + n_lat]
    low = signed[n_warm + s.single_txs + s.batch_txs + n_lat:]

    await broker.warm_up()
    say("reference (a): libsecp256k1 recovery ...")
    ref = recovery_reference(signed, s.recover_n)
    results["recovery"] = ref
    say(f"  recover 1 core {fmt_rate(ref['recover_1core'])}, 2 threads {fmt_rate(ref['recover_2threads'])}, "
        f"bare libsecp256k1 call {fmt_rate(ref['secp_bare'])}, node precheck path {fmt_rate(ref['precheck_1core'])}")

    topic = f"isoroll.bench.ingest.{uuid.uuid4().hex[:8]}"
    node = NodeProcess(broker.bootstrap, topic, s.accounts, s.node_settings,
                       aiokafka_backoff_ms=s.aiokafka_backoff_ms, profile=getattr(s, "profile_node", False))
    try:
        say(f"starting the node (subprocess, topic {topic}, settings {s.node_settings or 'default'}"
            f"{'' if s.aiokafka_backoff_ms is None else f', aiokafka BACKOFF_OVERRIDE {s.aiokafka_backoff_ms} ms'}) ...")
        await node.start()
        pids = {"node": node.pid, "node workers": child_pids(node.pid), "client": os.getpid(), "kafka": broker.pid}
        join = lambda xs: [x.body for x in xs]  # noqa: E731

        def batches(xs):
            bodies = join(xs)
            return [b'{"txs":[' + b",".join(bodies[i:i + s.batch]) + b"]}" for i in range(0, len(bodies), s.batch)]

        # Warm-up (not measured): 1,000 txs in batches, then 2,000 single txs, so the
        # broker's JIT has compiled the paths the node uses and the node's caches are hot.
        await closed_loop(node.port, s.client, "/v1/txs", batches(warm[:1_000]), 2, count_batch, s.phase_timeout)
        await closed_loop(node.port, s.client, "/v1/tx", join(warm[1_000:]), s.concurrency, count_single,
                          s.phase_timeout)

        # single-tx API
        say(f"single-tx API: {len(single):,} txs, {s.concurrency} in flight, client {s.client} ...")
        o0 = await log_offset(node)
        with CpuMeter(pids) as cpu:
            r = await closed_loop(node.port, s.client, "/v1/tx", join(single), s.concurrency, count_single,
                                  s.phase_timeout)
        r["cpu_cores"] = cpu.cores()
        r["blocks"] = block_stats(await block_sizes(broker.bootstrap, topic, o0, await log_offset(node)))
        results["single"] = r
        say(f"  {fmt_rate(r['rate'])} acked ({r['acked']:,} in {r['elapsed']:.1f}s), request p50 "
            f"{r['req_p50_ms']:.1f} ms p99 {r['req_p99_ms']:.1f} ms, {r['blocks']['avg_records']:.0f} txs/block; "
            f"CPU cores: {cpu.describe()}; errors {r['errors']}")

        # batch API
        bodies = batches(batch)
        say(f"batch API: {len(batch):,} txs in {len(bodies)} batches of {s.batch}, {s.batch_clients} clients ...")
        o0 = await log_offset(node)
        with CpuMeter(pids) as cpu:
            r = await closed_loop(node.port, s.client, "/v1/txs", bodies, s.batch_clients, count_batch,
                                  s.phase_timeout)
        r["cpu_cores"] = cpu.cores()
        r["blocks"] = block_stats(await block_sizes(broker.bootstrap, topic, o0, await log_offset(node)))
        results["batch"] = r
        say(f"  {fmt_rate(r['rate'])} acked ({r['acked']:,} in {r['elapsed']:.1f}s), batch p50 "
            f"{r['req_p50_ms']:.0f} ms p99 {r['req_p99_ms']:.0f} ms, {r['blocks']['avg_records']:.0f} txs/block "
            f"of {r['blocks']['avg_bytes'] / 1e3:.0f} kB; CPU cores: {cpu.describe()}; errors {r['errors']}")
        # The machine's speed drifts from minute to minute (docs/benchmarks.md, Machine), so
        # the recovery reference is taken again right after the batch phase; the ratio uses both.
        again = recovery_reference(signed, s.recover_n)["recover_1core"]
        results["recovery"]["recover_1core_after_batch"] = again
        say(f"  recovery reference again (1 core, node idle): {fmt_rate(again)}")

        # open-loop latency
        say(f"latency: open loop at {s.rate:,.0f} tx/s for {s.latency_seconds:.0f}s ({len(lat):,} txs) ...")
        o0 = await log_offset(node)
        with CpuMeter(pids) as cpu:
            r = await open_loop(node.port, s.client, join(lat), s.rate)
        r["cpu_cores"] = cpu.cores()
        r["blocks"] = block_stats(await block_sizes(broker.bootstrap, topic, o0, await log_offset(node)))
        results["latency"] = r
        say(f"  achieved {fmt_rate(r['achieved'])}; submit->receipt p50 {r['p50_ms']:.1f} ms, p90 "
            f"{r['p90_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, max {r['max_ms']:.0f} ms; "
            f"{r['blocks']['avg_records']:.1f} txs/block; send lag p99 {r['send_lag_p99_ms']:.1f} ms; "
            f"{r['connections']} connections; CPU cores: {cpu.describe()}; errors {r['errors']}")

        if low:
            await asyncio.sleep(1.0)
            say(f"latency: open loop at {s.low_rate:,.0f} tx/s for {s.latency_seconds:.0f}s ({len(low):,} txs) ...")
            o0 = await log_offset(node)
            with CpuMeter(pids) as cpu:
                r = await open_loop(node.port, s.client, join(low), s.low_rate)
            r["cpu_cores"] = cpu.cores()
            r["blocks"] = block_stats(await block_sizes(broker.bootstrap, topic, o0, await log_offset(node)))
            results["latency_low"] = r
            say(f"  achieved {fmt_rate(r['achieved'])}; submit->receipt p50 {r['p50_ms']:.1f} ms, p90 "
                f"{r['p90_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, max {r['max_ms']:.0f} ms; "
                f"{r['blocks']['avg_records']:.1f} txs/block; send lag p99 {r['send_lag_p99_ms']:.1f} ms; "
                f"CPU cores: {cpu.describe()}; errors {r['errors']}")
    finally:
        node.stop()
        await delete_topic(broker.bootstrap, topic)

    if getattr(s, "skip_references", False):
        return results
    say("reference (b): aiokafka alone, one transaction per block ...")
    ref_b = await kafka_reference(broker.bootstrap, int(results["batch"]["blocks"]["avg_bytes"]), s.kafka_seconds)
    ref_b["tx_per_s"] = ref_b["commits_per_s"] * results["batch"]["blocks"]["avg_records"]
    results["kafka_batch_blocks"] = ref_b
    say(f"  blocks of {ref_b['block_bytes']:,} B: {ref_b['commits_per_s']:,.0f} commits/s "
        f"({ref_b['mb_per_s']:.1f} MB/s, = {fmt_rate(ref_b['tx_per_s'])} at "
        f"{results['batch']['blocks']['avg_records']:.0f} txs/block), commit p50 {ref_b['p50_ms']:.1f} ms "
        f"p99 {ref_b['p99_ms']:.1f} ms")
    small = int(results["latency"]["blocks"]["avg_bytes"]) or 200
    ref_s = await kafka_reference(broker.bootstrap, small, s.kafka_seconds)
    results["kafka_small_blocks"] = ref_s
    say(f"  blocks of {ref_s['block_bytes']:,} B (latency phase size): {ref_s['commits_per_s']:,.0f} commits/s, "
        f"commit p50 {ref_s['p50_ms']:.1f} ms p99 {ref_s['p99_ms']:.1f} ms")
    for size, key in ((small, "kafka_small_blocks_2ms_backoff"),
                      (int(results["batch"]["blocks"]["avg_bytes"]), "kafka_batch_blocks_2ms_backoff")):
        ref_x = await kafka_reference(broker.bootstrap, size, s.kafka_seconds, backoff_override=0.002)
        results[key] = ref_x
        say(f"  experiment, aiokafka BACKOFF_OVERRIDE 2 ms (the setting before 1 ms), blocks of {size:,} B: "
            f"{ref_x['commits_per_s']:,.0f} commits/s, commit p50 {ref_x['p50_ms']:.1f} ms p99 {ref_x['p99_ms']:.1f} ms")
    return results


def summary(res: dict) -> list[str]:
    rec = statistics.mean([res["recovery"]["recover_1core"],
                           res["recovery"].get("recover_1core_after_batch", res["recovery"]["recover_1core"])])
    b, sg, lat = res["batch"], res["single"], res["latency"]
    kb = res.get("kafka_batch_blocks") or {"block_bytes": 0, "commits_per_s": 0, "tx_per_s": float("nan")}
    ratio = b["rate"] / rec
    out = [
        f"ingest, batch API   {fmt_rate(b['rate']):>12}   = {ratio:.2f} x recovery rate "
        f"({fmt_rate(rec)}, mean of before and after the batch phase)   target >= 0.5  {'MET' if ratio >= 0.5 else 'MISSED'}",
        f"ingest, single API  {fmt_rate(sg['rate']):>12}   = {sg['rate'] / rec:.2f} x recovery rate",
    ]
    if "kafka_batch_blocks" in res:
        out.append(f"log limit (aiokafka alone, {kb['block_bytes'] / 1e3:.0f} kB blocks) {kb['commits_per_s']:,.0f} commits/s "
        f"= {fmt_rate(kb['tx_per_s'])}; batch ingest uses {b['rate'] / kb['tx_per_s']:.0%} of it")
    out += [
        f"latency at {res['settings']['rate']:,.0f} tx/s offered ({lat['achieved']:,.0f}/s acked): p50 {lat['p50_ms']:.1f} ms, "
        f"p99 {lat['p99_ms']:.1f} ms   target p99 <= 25 ms  {'MET' if lat['p99_ms'] <= 25 else 'MISSED'}",
    ]
    if "latency_low" in res:
        lo = res["latency_low"]
        out.append(f"latency at {res['settings']['low_rate']:,.0f} tx/s offered ({lo['achieved']:,.0f}/s acked): "
                   f"p50 {lo['p50_ms']:.1f} ms, p99 {lo['p99_ms']:.1f} ms")
    kx = res.get("kafka_small_blocks_2ms_backoff")
    if kx:
        ks = res["kafka_small_blocks"]
        out.append(f"one block commit (aiokafka, {ks['block_bytes'] / 1e3:.0f} kB): p50 {ks['p50_ms']:.1f} ms as shipped "
                   f"(1 ms back-off), {kx['p50_ms']:.1f} ms with 2 ms")
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m bench ingest", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--full", action="store_true", help="bigger counts and longer phases")
    p.add_argument("--client", choices=("raw", "httpx"), default="raw",
                   help="HTTP client of the load generator (raw asyncio HTTP/1.1 is cheaper)")
    p.add_argument("--accounts", type=int)
    p.add_argument("--concurrency", type=int)
    p.add_argument("--batch", type=int)
    p.add_argument("--batch-clients", type=int)
    p.add_argument("--rate", type=float)
    p.add_argument("--latency-seconds", type=float)
    p.add_argument("--single-txs", type=int)
    p.add_argument("--batch-txs", type=int)
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="a node setting for the run (e.g. block_interval_ms=1), as ISOROLL_NAME")
    p.add_argument("--aiokafka-backoff-ms", type=float,
                   help="experiment: run the node with aiokafka's producer.sender.BACKOFF_OVERRIDE "
                        "(20 ms) set to this (via a sitecustomize in the node's temp dir)")
    p.add_argument("--profile-node", action="store_true",
                   help="run the node under cProfile (slower) and print its top functions at the end")
    p.add_argument("--skip-references", action="store_true", help="only the API phases")
    args = p.parse_args(argv)
    settings = Settings.full() if args.full else Settings()
    settings.client = args.client
    settings.aiokafka_backoff_ms = args.aiokafka_backoff_ms
    settings.skip_references = args.skip_references
    settings.profile_node = args.profile_node
    for name in ("accounts", "concurrency", "batch", "batch_clients", "rate", "latency_seconds",
                 "single_txs", "batch_txs"):
        if getattr(args, name) is not None:
            setattr(settings, name, getattr(args, name))
    settings.node_settings = dict(item.split("=", 1) for item in args.set)
    import logging
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    with BenchBroker() as broker:
        res = asyncio.run(run(settings, broker))
    say("")
    say("== ingest summary ==")
    for line in summary(res):
        say("  " + line)
    return res
