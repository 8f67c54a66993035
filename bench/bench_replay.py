"""Replay: records per second from a Kafka log into a fresh executor (issue 2, Benchmark).

The log: ``--records`` signed Transfers between ``--accounts`` dev accounts, in
blocks of ``--block-records``, built by applying them to a genesis State (so every
record is valid) and written straight to the bench broker with BlockWriter (not
through the API).  Its content is deterministic (fixed timestamps, RFC 6979
signatures), so the topic and the signed records are kept and reused by later
runs (``--rebuild`` starts over).

The executor: ``sequencer.executor.chain.Chain`` from genesis fed by a
``sequencer.log.kafka.BlockReader`` from offset 0, exactly as a node's catch-up
does, timed in three parts: waiting on the reader (Kafka fetch + aiokafka's
record decoding), ``Chain.compute_state_root`` (the per-block Merkle update,
prover/tree.py) and the rest of ``Chain.apply_message`` (msgpack decode of the
block and records, the transition, receipts).  Run once with
``verify_signatures=False`` (the target) and once with verification.
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import time
from dataclasses import dataclass
from pathlib import Path

import msgspec

from bench.common import (REPO, BenchBroker, CpuMeter, delete_topic, fmt_rate, plan_transfers, say,
                          sign_transfers, topic_end_offset)

BASE_TIME_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z: fixed, so the log is the same on every run
EXPIRY_MS = BASE_TIME_MS + 6 * 3600 * 1000
LOG_VERSION = 1


@dataclass
class Settings:
    records: int = 100_000
    accounts: int = 10_000
    block_records: int = 500
    """Transfers per block: 500 of about 124 bytes stay well under Preset.max_block_bytes (96,000)."""
    verify_records: int = 100_000
    """Records replayed with signature verification (a prefix of the log)."""
    max_seconds: float = 600.0
    rebuild: bool = False
    profile: bool = False

    @classmethod
    def full(cls) -> "Settings":
        return cls(records=1_000_000, verify_records=1_000_000)


def topic_name(s: Settings) -> str:
    return f"isoroll.bench.replay.v{LOG_VERSION}.{s.records}r.{s.accounts}a.{s.block_records}b"


def cache_path(s: Settings) -> Path:
    return REPO / ".devnet" / "bench-cache" / f"replay-v{LOG_VERSION}-{s.records}r-{s.accounts}a.msgpack"


def allocations(s: Settings):
    from sequencer.node.config import NodeConfig, load_allocations
    return load_allocations(NodeConfig(genesis_dev_accounts=s.accounts))


def make_ctx(verify: bool):
    from sequencer.node.config import NodeConfig
    from sequencer.node.node import make_context
    ctx = make_context(NodeConfig(l1_bridge_address="0x" + "00" * 19 + "01"))
    return msgspec.structs.replace(ctx, verify_signatures=verify)


def signed_records(s: Settings) -> list[bytes]:
    path = cache_path(s)
    if path.exists() and not s.rebuild:
        records = msgspec.msgpack.decode(path.read_bytes(), type=list[bytes])
        if len(records) == s.records:
            say(f"  {len(records):,} signed records from the cache {path.relative_to(REPO)}")
            return records
    say(f"  signing {s.records:,} Transfers (all cores; cached in {path.relative_to(REPO)}) ...")
    t = time.perf_counter()
    signed = sign_transfers(plan_transfers(s.records, s.accounts), s.accounts, expiry=EXPIRY_MS)
    records = [x.record_bytes for x in signed]
    say(f"  signed in {time.perf_counter() - t:.0f}s")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(msgspec.msgpack.encode(records))
    return records


def build_blocks(s: Settings, records: list[bytes]) -> list[bytes]:
    """Apply the records to a genesis state block by block (so they are valid) and
    return the encoded blocks, each chained to the previous one's hash."""
    from sequencer.core.encoding import compute_block_hash, decode_record, encode_block
    from sequencer.core.records import Block
    from sequencer.core.transition import apply_record, process_block_end
    from sequencer.executor.genesis import build_genesis
    state = build_genesis(allocations(s))
    ctx = make_ctx(False)
    blocks = []
    for start in range(0, len(records), s.block_records):
        chunk = records[start:start + s.block_records]
        g = state.globals
        number, timestamp = g.block_number + 1, BASE_TIME_MS + g.block_number + 1
        for raw in chunk:
            error = apply_record(state, decode_record(raw), timestamp, ctx)
            if error is not None:
                raise RuntimeError(f"bench log record refused: {error}")
        block = Block(number, g.block_hash, timestamp, tuple(msgspec.Raw(r) for r in chunk))
        message = encode_block(block)
        process_block_end(state, block, compute_block_hash(message))
        state.commit(0)
        state.dirty.clear()
        blocks.append(message)
    return blocks


async def ensure_log(s: Settings, bootstrap: str) -> tuple[str, int]:
    from sequencer.log.kafka import BlockWriter, LogConfig, ensure_topic
    topic = topic_name(s)
    blocks_expected = -(-s.records // s.block_records)
    end = await topic_end_offset(bootstrap, topic)
    if end is not None and not s.rebuild:
        # Transactional writes: a run cut short leaves a prefix; a complete log has
        # exactly one message per block.
        if end == blocks_expected:
            say(f"  reusing the log {topic} ({end} blocks)")
            return topic, end
    if end is not None:
        await delete_topic(bootstrap, topic)
        await asyncio.sleep(1.0)
    say(f"building the log: {s.records:,} records, {s.accounts:,} accounts, blocks of {s.block_records:,} ...")
    records = signed_records(s)
    t = time.perf_counter()
    blocks = build_blocks(s, records)
    say(f"  {len(blocks)} blocks built (applied to a genesis state) in {time.perf_counter() - t:.1f}s")
    config = LogConfig(bootstrap_servers=bootstrap, topic=topic, transactional_id=f"isoroll-bench-replay-{topic}",
                       client_id="isoroll-bench-replay", commit_timeout_s=30.0)
    await ensure_topic(config)
    t = time.perf_counter()
    async with BlockWriter(config) as writer:
        for message in blocks:
            await writer.write(message)
    say(f"  written to {topic} in {time.perf_counter() - t:.1f}s "
        f"({sum(map(len, blocks)) / 1e6:.0f} MB, {sum(map(len, blocks)) / s.records:.0f} B/record)")
    return topic, len(blocks)


class GcTimer:
    """Total time spent in the cyclic garbage collector (gc.callbacks)."""

    def __init__(self) -> None:
        self.total = 0.0
        self.collections = 0
        self._t = 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._t = time.perf_counter()
        else:
            self.total += time.perf_counter() - self._t
            self.collections += 1

    def __enter__(self) -> "GcTimer":
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc) -> None:
        gc.callbacks.remove(self)


async def replay(s: Settings, bootstrap: str, topic: str, verify: bool, max_records: int,
                 keep_messages: bool = False, root_interval: int | None = None) -> dict:
    """A fresh executor replays the log from offset 0 (up to ``max_records`` records)."""
    from sequencer.log.kafka import BlockReader, LogConfig
    from sequencer.executor.chain import Chain
    from sequencer.executor.genesis import build_genesis

    class TimedChain(Chain):
        root_time = 0.0

        def compute_state_root(self) -> bytes:
            t = time.perf_counter()
            try:
                return super().compute_state_root()
            finally:
                TimedChain.root_time += time.perf_counter() - t

    from sequencer.node.config import NodeConfig
    chain = TimedChain(build_genesis(allocations(s)), make_ctx(verify))
    # The node's catch-up cadence (docs/operations.md) unless told otherwise.
    chain.root_interval = root_interval or NodeConfig.catch_up_root_interval_blocks
    TimedChain.root_time = 0.0
    fetch = apply = 0.0
    records = failed = 0
    kept: list[bytes] = []
    config = LogConfig(bootstrap_servers=bootstrap, topic=topic)
    async with BlockReader(config, 0) as reader:
        end = await reader.end_offset()
        with CpuMeter({}) as cpu, GcTimer() as gc_timer:
            t0 = time.perf_counter()
            while chain.next_offset < end and records < max_records and time.perf_counter() - t0 < s.max_seconds:
                t = time.perf_counter()
                messages = await reader.read(timeout_ms=1000)
                t1 = time.perf_counter()
                fetch += t1 - t
                for m in messages:
                    result = chain.apply_message(m.offset, m.value, m.schema)
                    records += len(result.receipts)
                    failed += sum(1 for r in result.receipts if not r.ok)
                    if keep_messages:
                        kept.append(m.value)
                    if records >= max_records:
                        break
                apply += time.perf_counter() - t1
            t1 = time.perf_counter()
            chain.finish_catch_up()  # the head's root, as the node computes it
            apply += time.perf_counter() - t1
            elapsed = time.perf_counter() - t0
    root = TimedChain.root_time
    out = {"verify": verify, "root_interval": root_interval or NodeConfig.catch_up_root_interval_blocks,
           "records": records, "blocks": chain.head_number, "failed": failed,
           "elapsed": elapsed, "rate": records / elapsed, "fetch_s": fetch, "transition_s": apply - root,
           "state_root_s": root, "gc_s": gc_timer.total, "gc_collections": gc_timer.collections,
           "other_cores": cpu.cores().get("other", 0.0), "state_root": chain.state_root.hex()}
    if keep_messages:
        out["messages"] = kept
    return out


def decode_breakdown(messages: list[bytes]) -> dict:
    """Of the transition's time: msgpack decode of blocks and records, record hashes."""
    from sequencer.core.encoding import compute_record_hash, decode_block, decode_record
    t = time.perf_counter()
    blocks = [decode_block(m) for m in messages]
    t_blocks = time.perf_counter() - t
    t = time.perf_counter()
    n = 0
    for b in blocks:
        for raw in b.records:
            decode_record(raw)
            n += 1
    t_records = time.perf_counter() - t
    t = time.perf_counter()
    for b in blocks:
        for raw in b.records:
            compute_record_hash(raw)
    t_hash = time.perf_counter() - t
    return {"records": n, "decode_blocks_s": t_blocks, "decode_records_s": t_records, "record_hash_s": t_hash}


def profile_transition(s: Settings, messages: list[bytes], blocks: int = 10) -> str:
    """cProfile of a fresh Chain applying the first ``blocks`` blocks (no verification)."""
    import cProfile
    import io
    import pstats
    from sequencer.executor.chain import Chain
    from sequencer.executor.genesis import build_genesis
    chain = Chain(build_genesis(allocations(s)), make_ctx(False))
    prof = cProfile.Profile()
    prof.enable()
    for offset, m in enumerate(messages[:blocks]):
        chain.apply_message(offset, m)
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(18)
    return buf.getvalue()


def describe(r: dict) -> str:
    e = r["elapsed"]
    return (f"{fmt_rate(r['rate'])} ({r['records']:,} records, {r['blocks']} blocks, {e:.1f}s): "
            f"fetch+aiokafka decode {r['fetch_s']:.1f}s ({r['fetch_s'] / e:.0%}), transition "
            f"{r['transition_s']:.1f}s ({r['transition_s'] / e:.0%}), state root {r['state_root_s']:.1f}s "
            f"({r['state_root_s'] / e:.0%}); GC {r['gc_s']:.1f}s in {r['gc_collections']} collections; "
            f"failed receipts {r['failed']}; other load on the machine {r['other_cores']:.2f} cores")


async def run(s: Settings, broker: BenchBroker) -> dict:
    topic, blocks = await ensure_log(s, broker.bootstrap)
    res: dict = {"settings": dict(vars(s)), "topic": topic}
    say(f"replay without signature verification ({s.records:,} records) ...")
    r = await replay(s, broker.bootstrap, topic, verify=False, max_records=s.records, keep_messages=True)
    messages = r.pop("messages")
    res["noverify"] = r
    say("  " + describe(r))
    d = decode_breakdown(messages)
    res["decode"] = d
    say(f"  of the transition: msgpack decode blocks {d['decode_blocks_s']:.2f}s + records "
        f"{d['decode_records_s']:.2f}s, record hashes (keccak) {d['record_hash_s']:.2f}s")
    if s.profile:
        say(profile_transition(s, messages))
    del messages
    say(f"replay without signature verification, a state root for every block ({s.records:,} records) ...")
    r = await replay(s, broker.bootstrap, topic, verify=False, max_records=s.records, root_interval=1)
    res["noverify_every_block"] = r
    say("  " + describe(r))
    if r["state_root"] != res["noverify"]["state_root"]:
        raise RuntimeError("per-block and deferred roots disagree on the final state root")
    n = min(s.verify_records, s.records)
    say(f"replay with signature verification ({n:,} records) ...")
    r = await replay(s, broker.bootstrap, topic, verify=True, max_records=n)
    res["verify"] = r
    say("  " + describe(r))
    if r["records"] == res["noverify"]["records"] and r["state_root"] != res["noverify"]["state_root"]:
        raise RuntimeError("the two replays disagree on the state root")
    return res


def summary(res: dict) -> list[str]:
    a, b = res["noverify"], res["verify"]
    c = res.get("noverify_every_block")
    extra = ([f"replay, root every block {fmt_rate(c['rate']):>12}   ({c['records']:,} records)"] if c else [])
    return extra + [
        f"replay, no sig check {fmt_rate(a['rate']):>12}   ({a['records']:,} records)   target >= 100,000/s  "
        f"{'MET' if a['rate'] >= 100_000 else 'MISSED'}  [fetch {a['fetch_s'] / a['elapsed']:.0%}, transition "
        f"{a['transition_s'] / a['elapsed']:.0%}, state root {a['state_root_s'] / a['elapsed']:.0%}]",
        f"replay, sig check    {fmt_rate(b['rate']):>12}   ({b['records']:,} records)",
    ]


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m bench replay", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--full", action="store_true", help="a 1,000,000-record log (default: --quick, 100,000)")
    p.add_argument("--quick", action="store_true", help="a 100,000-record log (the default)")
    p.add_argument("--records", type=int)
    p.add_argument("--accounts", type=int)
    p.add_argument("--block-records", type=int)
    p.add_argument("--verify-records", type=int, help="records replayed with verification (a prefix)")
    p.add_argument("--max-seconds", type=float, help="stop each replay after this long")
    p.add_argument("--rebuild", action="store_true", help="re-sign and rewrite the log even if it exists")
    p.add_argument("--profile", action="store_true", help="print a cProfile of the transition")
    args = p.parse_args(argv)
    s = Settings.full() if args.full else Settings()
    for name in ("records", "accounts", "block_records", "verify_records", "max_seconds"):
        if getattr(args, name) is not None:
            setattr(s, name, getattr(args, name))
    s.rebuild, s.profile = args.rebuild, args.profile
    import logging
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    with BenchBroker() as broker:
        res = asyncio.run(run(s, broker))
    say("")
    say("== replay summary ==")
    for line in summary(res):
        say("  " + line)
    return res
