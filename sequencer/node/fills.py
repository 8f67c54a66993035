"""Recent fills per account: a chain observer that indexes the Trade records
of every block the node applies (replay from a snapshot, following, or built
here), at most ``FILLS_PER_ACCOUNT`` per account.  Blocks older than the
snapshot the node started from are read back from the log on the first fills
query (up to ``BACKFILL_MESSAGES`` messages before it).
"""
from __future__ import annotations

import asyncio
import logging
from collections import deque

import msgspec

from sequencer.core.encoding import compute_record_hash, decode_block, decode_record
from sequencer.core.markets import get_market_table
from sequencer.core.records import Trade
from sequencer.executor.chain import Chain
from sequencer.log.kafka import BlockReader, LogConfig
from sequencer.node import views

log = logging.getLogger("isoroll.fills")

FILLS_PER_ACCOUNT = 1000
"""Fills kept per account by the index (older ones drop off)."""
BACKFILL_MESSAGES = 5000
"""Log messages before the start-up snapshot read back for the fills index."""

_TRADE_TAG = 16  # records.Trade: a Trade's msgpack array starts with this tag


def get_markets(ctx) -> dict:
    """Market id -> MarketParams of a context (its own table, else the preset's)."""
    return ctx.markets or get_market_table(ctx.preset.markets)


class FillIndex:
    """Recent fills per account, from the Trade records of applied blocks."""

    def __init__(self, log_config: LogConfig) -> None:
        self.log_config = log_config
        self.chain: Chain | None = None
        self.by_account: dict[bytes, deque] = {}
        self.start_offset: int | None = None
        """The log offset the node's chain started from (its snapshot)."""
        self.backfilled = False
        self._backfill_lock = asyncio.Lock()
        self._last: tuple[int, list[dict]] | None = None

    def attach(self, chain: Chain) -> None:
        """Index every block ``chain`` applies from now on (the node calls this
        as soon as its chain is loaded, before the replay)."""
        self.chain = chain
        self.start_offset = chain.next_offset
        self.backfilled = self.start_offset == 0
        chain.listeners.append(self.on_block)

    # --- indexing ------------------------------------------------------------------
    def block_fills(self, info, result) -> list[dict]:
        """The fills of one applied block (cached for the block just indexed).
        A block this node assembled comes with its records as objects
        (assembler.BuiltBlock): nothing is decoded again."""
        if info is None or result.block is None:
            return []
        if self._last is not None and self._last[0] == info.number:
            return self._last[1]
        records = getattr(result, "records", None)
        if records is not None:
            block = result.block
            fills = self.describe_trades(((i, r) for i, r in enumerate(records) if type(r) is Trade),
                                         block.number, block.timestamp_ms)
        else:
            fills = self.extract(result.block, result.receipts)
        self._last = (info.number, fills)
        return fills

    def extract(self, block, receipts) -> list[dict]:
        """The fills of a block as log bytes (replay, following, backfill)."""
        chain = self.chain
        trades = []
        for i, raw in enumerate(block.records):
            raw = bytes(raw)
            if len(raw) < 2 or raw[1] != _TRADE_TAG:  # fixarray header, then the tag
                continue
            receipt = receipts[i] if receipts is not None and i < len(receipts) \
                else chain.receipts.get(compute_record_hash(raw))
            if receipt is not None and not receipt.ok:
                continue
            try:
                trade = decode_record(raw)
            except (msgspec.DecodeError, msgspec.ValidationError):
                continue
            if isinstance(trade, Trade):
                trades.append((i, trade))
        return self.describe_trades(trades, block.number, block.timestamp_ms)

    def describe_trades(self, trades, number: int, timestamp_ms: int) -> list[dict]:
        """API fills of (index in block, Trade) pairs of block ``number``."""
        state = self.chain.state
        tables = get_markets(self.chain.ctx)
        fills = []
        for i, trade in trades:
            maker = state.orders.get((trade.maker, trade.maker_nonce))
            params = tables.get(trade.market)
            if maker is None or params is None:
                continue
            fill = views.describe_fill(trade, maker, params)
            fill.update({"block": number, "index": i, "timestampMs": timestamp_ms})
            fills.append(fill)
        return fills

    def on_block(self, info, result) -> None:
        for fill in self.block_fills(info, result):
            self.add(fill)

    def add(self, fill: dict, old: bool = False) -> None:
        for key in ("maker", "taker"):
            address = bytes.fromhex(fill[key][2:])
            queue = self.by_account.get(address)
            if queue is None:
                queue = self.by_account[address] = deque(maxlen=FILLS_PER_ACCOUNT)
            if old:
                if len(queue) < FILLS_PER_ACCOUNT:
                    queue.appendleft(fill)
            else:
                queue.append(fill)

    async def backfill(self) -> None:
        """Index the blocks before the start-up snapshot (read back from the log)."""
        if self.backfilled or self.start_offset is None:
            return
        async with self._backfill_lock:
            if self.backfilled:
                return
            first = max(0, self.start_offset - BACKFILL_MESSAGES)
            fills: list[dict] = []
            try:
                async with BlockReader(self.log_config, first) as reader:
                    while await reader.position() < self.start_offset:
                        for message in await reader.read(timeout_ms=500):
                            if message.offset >= self.start_offset:
                                break
                            try:
                                block = decode_block(message.value)
                            except Exception:
                                continue
                            fills += self.extract(block, None)
            except Exception as exc:  # the index is best effort; the log is the truth
                log.warning("fills backfill from the log failed: %r", exc)
                return
            for fill in reversed(fills):
                self.add(fill, old=True)
            self.backfilled = True

    def get(self, address: bytes, limit: int) -> list[dict]:
        queue = self.by_account.get(address)
        if not queue:
            return []
        return [queue[-1 - i] for i in range(min(limit, len(queue)))]
