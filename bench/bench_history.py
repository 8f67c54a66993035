"""What keeping the history from genesis costs (sequencer.node.history):
persisting the projection next to the snapshots versus rebuilding it by
replaying the log from genesis at every start.

Builds a trading log in process (bench_engine's seeded order stream through
the Exchange, an oracle price and the due funding ticks in every block of 500
records) and measures on it:
- replay from genesis without the projection: what a rebuild at every start
  costs at least (the executor's work; the Kafka fetch comes on top);
- replay with the projection writing its SQLite file: the replay plus the
  projection, i.e. a rebuild, and per block what the live node pays;
- opening the persisted file: what a start costs with it;
(times in CPU seconds of this process: the development machine is shared)
- the file's size.

    .venv/bin/python bench/bench_history.py [--records 100000] [--json]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import msgspec  # noqa: E402

from bench.bench_engine import BTC, T0, make_context, make_workload, oracle  # noqa: E402
from sequencer.core.encoding import compute_block_hash, encode_block, encode_record  # noqa: E402
from sequencer.core.markets import DEVNET_MARKETS, USDC  # noqa: E402
from sequencer.core.matching import Exchange  # noqa: E402
from sequencer.core.records import Block, Trade  # noqa: E402
from sequencer.core.transition import RuleError, compute_genesis_state  # noqa: E402
from sequencer.executor.chain import Chain  # noqa: E402
from sequencer.node.history import HistoryProjection, HistoryStore  # noqa: E402

BLOCK = 500


def build_log(records: int, ctx) -> tuple[list, list[bytes], int]:
    """(genesis allocations, block messages, trades): at least ``records`` records."""
    addresses, orders = make_workload(records, seed=7, separator=ctx.domain_separator)
    genesis = [(a, 10**9 * USDC) for a in addresses]
    state = compute_genesis_state(genesis)
    exchange = Exchange(DEVNET_MARKETS)
    parent, number, now, messages, block, count, trades = state.globals.block_hash, 0, T0, [], [], 0, 0
    pending = iter(orders)
    while count < records:
        now += 100
        block = exchange.on_oracle_price(state, oracle(ctx, now), now, ctx) + exchange.due_funding(state, now, ctx)
        while len(block) < BLOCK:
            try:
                block += exchange.admit(state, next(pending), now, ctx)
            except RuleError:
                continue
            except StopIteration:
                break
        number += 1
        message = encode_block(Block(number, parent, now, tuple(msgspec.Raw(encode_record(r)) for r in block)))
        state.commit(0)
        state.globals = msgspec.structs.replace(state.globals, block_number=number,
                                                block_hash=compute_block_hash(message), timestamp_ms=now)
        parent = compute_block_hash(message)
        messages.append(message)
        count += len(block)
        trades += sum(type(r) is Trade for r in block)
    return genesis, messages, trades


def replay(genesis, messages: list[bytes], ctx, store: HistoryStore | None) -> float:
    """CPU seconds of this process to apply the log (the machine is shared: wall
    clock time would measure the other jobs too)."""
    chain = Chain(compute_genesis_state(genesis), ctx)
    chain.root_interval = 1 << 62  # no state roots: a history rebuild does not need them
    if store is not None:
        HistoryProjection(store, lambda: DEVNET_MARKETS).attach(chain)
    started = time.process_time()
    for offset, message in enumerate(messages):
        chain.apply_message(offset, message)
    return time.process_time() - started


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    ctx = make_context(verify=False)
    started = time.perf_counter()
    genesis, messages, trades = build_log(args.records, ctx)
    records = sum(len(msgspec.msgpack.decode(m)[3]) for m in messages)
    print(f"log: {records:,} records, {len(messages):,} blocks, {trades:,} trades "
          f"(built in {time.perf_counter() - started:.1f} s)", file=sys.stderr)
    bare = replay(genesis, messages, ctx, None)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "history.sqlite"
        store = HistoryStore(path)
        projected = replay(genesis, messages, ctx, store)
        rows = {t: store.count(t) for t in ("fills", "account_fills", "trades", "candles", "prices", "funding_ticks",
                                            "funding_payments", "insurance")}
        store.close()
        size = sum(p.stat().st_size for p in Path(tmp).iterdir())
        started = time.perf_counter()
        reopened = HistoryStore(path)
        reopened.insurance(100, None)
        open_s = time.perf_counter() - started
        reopened.close()
    result = {"records": records, "blocks": len(messages), "trades": trades,
              "replay_s": round(bare, 2), "replay_records_per_s": round(records / bare),
              "replay_with_projection_s": round(projected, 2),
              "projection_s": round(projected - bare, 2),
              "projection_ms_per_block": round((projected - bare) * 1000 / len(messages), 2),
              "projection_us_per_record": round((projected - bare) * 1e6 / records, 1),
              "open_persisted_ms": round(open_s * 1000, 1), "file_bytes": size, "rows": rows}
    print(json.dumps(result, indent=2) if args.json else
          "\n".join(f"{k:>28}: {v}" for k, v in result.items()))
    return result


if __name__ == "__main__":
    main()
