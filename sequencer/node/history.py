"""The history projection: fills, funding payments, trades, candles, oracle
prices, funding ticks and the insurance fund's changes, derived from the
blocks the node applies and kept in one SQLite file next to the snapshots,
together with the log offset it applied (the eventsourcing way: the log is the
truth, this is a projection of it with its tracking position).

Each block is one SQLite transaction holding its rows and the offset after it,
so the file is always the projection of a prefix of the log.  After a restart
the node replays the log from its snapshot; the projection skips the blocks
below its own offset (no duplicates) and picks up from there, so the history
from genesis stays.  A file that is behind the snapshot the node starts from
(lost, or a node that ran before the file existed) is rebuilt by replaying
the log from genesis in a side chain (``rebuild``); docs/operations.md has
the costs measured for both.

What one block adds (``compute_block_rows``) reads the records and the state
after the block, which is all a Chain listener sees:
- a funding payment is what one position accrued at one FundingTick,
  ``size * (index after - index before) / (S * 1e6)`` rounded up (> 0: paid),
  the index before being the one after the previous block;
- the insurance fund's change over the block is split into ``fee_share`` (the
  fund's share of the block's trade fees, exact: ``compute_fee_split``) and the
  rest: ``liquidation`` (liquidation fees minus bad debt paid, net, when the
  block liquidated) or else ``funding_dust`` (whole units of funding
  remainders swept into the fund).
"""
from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, Iterable

import msgspec

from sequencer.core.encoding import decode_record
from sequencer.core.presets import PPM
from sequencer.core.records import FundingTick, OraclePrice, Trade
from sequencer.core.rules.margin import compute_funding_payment
from sequencer.core.rules.trades import compute_fee_split
from sequencer.node import views

INTERVALS_MS = {"1m": 60_000, "5m": 300_000, "1h": 3_600_000}
_TAGS = {16, 17, 32}  # Trade, FundingTick, OraclePrice: the msgpack array's first element
LIQUIDATION_TAGS = frozenset({8, 18, 21, 22, 23, 24, 50})
"""Records whose block's fund change (besides fee shares) counts as ``liquidation``:
AuctionBid, Liquidate, VaultUnwind, tag 22, AuctionEnd, Deleverage (rules v3), ForcedClose."""

SCHEMA_VERSION = 1
"""The file's layout (SQLite ``user_version``); a file of another layout is
dropped and rebuilt from the log."""
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS funding_index (market INTEGER PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS fills (block INTEGER, idx INTEGER, fill BLOB NOT NULL, PRIMARY KEY (block, idx))
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS account_fills (account BLOB, block INTEGER, idx INTEGER,
    PRIMARY KEY (account, block, idx)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS trades (market INTEGER, block INTEGER, idx INTEGER, ts INTEGER, price INTEGER,
    size INTEGER, side TEXT, PRIMARY KEY (market, block, idx)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS candles (market INTEGER, width INTEGER, start INTEGER, open INTEGER, high INTEGER,
    low INTEGER, close INTEGER, volume INTEGER, first INTEGER, last INTEGER, PRIMARY KEY (market, width, start))
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS prices (market INTEGER, block INTEGER, idx INTEGER, ts INTEGER, price INTEGER,
    PRIMARY KEY (market, block, idx)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS funding_ticks (market INTEGER, block INTEGER, idx INTEGER, ts INTEGER, rate INTEGER,
    findex INTEGER, PRIMARY KEY (market, block, idx)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS funding_payments (account BLOB, block INTEGER, idx INTEGER, market INTEGER,
    size INTEGER, rate INTEGER, payment INTEGER, ts INTEGER, PRIMARY KEY (account, block, idx, market))
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS insurance (block INTEGER, idx INTEGER, ts INTEGER, kind TEXT, amount INTEGER,
    balance INTEGER, PRIMARY KEY (block, idx)) WITHOUT ROWID;
"""


class BlockRows(msgspec.Struct):
    """What one block adds to the history."""
    fills: list[dict] = []
    prices: list[tuple] = []
    ticks: list[tuple] = []
    payments: list[tuple] = []
    insurance: list[tuple] = []
    funding_index: dict[int, int] = {}
    insurance_balance: int = 0


def iter_records(result) -> Iterable[tuple[int, Any]]:
    """(index, record) of the block's applied Trade, FundingTick and OraclePrice
    records, and of the others as their tag only (for the insurance kinds)."""
    receipts = result.receipts
    built = getattr(result, "records", None)
    for i, raw in enumerate(result.block.records):
        if receipts is not None and i < len(receipts) and not receipts[i].ok:
            continue
        if built is not None:
            yield i, built[i]
            continue
        raw = bytes(raw)
        if len(raw) < 2 or raw[1] not in _TAGS:
            yield i, raw[1] if len(raw) >= 2 else None
            continue
        try:
            yield i, decode_record(raw)
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue


def get_tag(record) -> int | None:
    """A record's tag (``iter_records`` gives the records it does not decode as their tag)."""
    return record if record is None or type(record) is int else type(record).__struct_config__.tag


def compute_block_rows(result, state, markets: dict, funding_before: dict[int, int],
                       insurance_before: int | None) -> BlockRows:
    """The history rows of one applied block, from its records and the state
    after it; ``funding_before``: each market's funding index after the
    previous block (a market missing there has no payments this block)."""
    block = result.block
    number, ts = block.number, block.timestamp_ms
    rows = BlockRows(fills=[], prices=[], ticks=[], payments=[], insurance=[])
    fee_share, liquidated = 0, False
    for i, record in iter_records(result):
        kind = type(record)
        if kind is Trade:
            maker, params = state.orders.get((record.maker, record.maker_nonce)), markets.get(record.market)
            if maker is None or params is None:
                continue
            fill = views.describe_fill(record, maker, params)
            fill.update({"block": number, "index": i, "timestampMs": ts})
            rows.fills.append(fill)
            fee_share += compute_fee_split(fill["makerFee"] + fill["takerFee"], params)[0]
        elif kind is OraclePrice:
            rows.prices.append((record.market, number, i, record.timestamp_ms, record.price))
        elif kind is FundingTick:
            market = state.markets.get(record.market)
            if market is not None:
                rows.ticks.append((record.market, number, i, record.timestamp_ms, record.rate_ppm,
                                   market.funding_index))
                rows.payments += compute_funding_payments(state, record, i, number, markets, funding_before)
        elif get_tag(record) in LIQUIDATION_TAGS:
            liquidated = True
    rows.funding_index = {m: market.funding_index for m, market in state.markets.items()}
    balance = rows.insurance_balance = state.globals.insurance_fund
    if insurance_before is not None and balance != insurance_before:
        rows.insurance = split_insurance_change(number, ts, insurance_before, balance, fee_share, liquidated)
    return rows


def split_insurance_change(number: int, ts: int, before: int, after: int, fee_share: int,
                           liquidated: bool) -> list[tuple]:
    """The fund's change over one block as (block, idx, ts, kind, amount, balance) rows."""
    rows, balance = [], before
    for kind, amount in (("fee_share", fee_share),
                         ("liquidation" if liquidated else "funding_dust", after - before - fee_share)):
        if amount:
            balance += amount
            rows.append((number, len(rows), ts, kind, amount, balance))
    return rows


def compute_funding_payments(state, tick: FundingTick, index: int, number: int, markets: dict,
                             funding_before: dict[int, int]) -> list[tuple]:
    """One payment per open position of the market, from the index step over the block."""
    market, params = state.markets[tick.market], markets.get(tick.market)
    before = funding_before.get(tick.market)
    if params is None or before is None:
        return []  # the first block indexed: the index before it is unknown
    step, denominator = market.funding_index - before, params.scale * PPM
    return [(account, number, index, tick.market, position.size, tick.rate_ppm,
             compute_funding_payment(position.size, step, denominator), tick.timestamp_ms)
            for (account, market_id), position in state.positions.items()
            if market_id == tick.market and position.size and position.funding_snapshot != market.funding_index]
    # a position opened (or settled) after the tick, in the same block, has nothing to pay for it


def compute_candles(fills: list[dict]) -> list[tuple]:
    """The fills of one block (in block order) as one candle row per market,
    interval and start: (market, width, start, open, high, low, close, volume,
    first, last), ``first`` / ``last`` the (block, index) keys of its first and
    last trade."""
    candles: dict[tuple[int, int, int], list[int]] = {}
    for fill in fills:
        price, size, key = fill["price"], fill["size"], fill["block"] << 32 | fill["index"]
        for width in INTERVALS_MS.values():
            c = candles.get((fill["market"], width, fill["timestampMs"] // width * width))
            if c is None:
                candles[(fill["market"], width, fill["timestampMs"] // width * width)] = \
                    [price, price, price, price, size, key, key]
            else:
                c[1], c[2], c[3], c[4], c[6] = max(c[1], price), min(c[2], price), price, c[4] + size, key
    return [(*k, *c) for k, c in candles.items()]


class HistoryStore:
    """The projection's SQLite file (``path`` None: in memory)."""

    def __init__(self, path: Path | None) -> None:
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(":memory:" if path is None else str(path), isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        # A process crash loses nothing committed; an OS crash may lose the last blocks,
        # which the node's replay from its snapshot then writes again.
        self.db.execute("PRAGMA synchronous=NORMAL")
        if self.db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
            self.drop_all()  # another layout: rebuilt from the log like a missing file
        self.db.executescript(SCHEMA)
        self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        self.next_offset = self.get_meta("next_offset", 0)
        """The log offset after the last block applied here (0: nothing yet)."""
        self.history_from = self.get_meta("history_from", 0)
        """The offset the history here starts from: 0 once complete from genesis;
        above 0 the blocks below it are missing until ``rebuild`` fills them."""
        self.rebuilt_to = self.get_meta("rebuilt_to", 0)
        """How far a rebuild of the missing blocks got (it resumes from there)."""
        self.insurance_balance: int | None = self.get_meta("insurance_balance", None)
        """The fund's balance after the last block applied (None: nothing applied yet)."""
        self.funding_index = dict(self.db.execute("SELECT market, value FROM funding_index"))

    def close(self) -> None:
        self.db.close()

    def drop_all(self) -> None:
        tables = [name for (name,) in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            self.db.execute(f"DROP TABLE {table}")

    def get_meta(self, key: str, default):
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else row[0]

    def reset(self) -> None:
        """Forget everything (before a rebuild from genesis)."""
        db = self.db
        db.execute("BEGIN")
        for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
            db.execute(f"DELETE FROM {table}")
        db.execute("COMMIT")
        self.next_offset, self.insurance_balance, self.funding_index = 0, None, {}
        self.history_from = self.rebuilt_to = 0

    def start_at(self, offset: int, state, history_from: int) -> None:
        """Start indexing at ``offset`` from ``state`` (the chain's state there)."""
        self.funding_index = {m: market.funding_index for m, market in state.markets.items()}
        self.insurance_balance = state.globals.insurance_fund
        self.next_offset, self.history_from = offset, history_from
        db = self.db
        db.execute("BEGIN")
        db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                       (("next_offset", offset), ("insurance_balance", self.insurance_balance),
                        ("history_from", history_from), ("rebuilt_to", self.rebuilt_to)))
        db.executemany("INSERT OR REPLACE INTO funding_index VALUES (?, ?)", self.funding_index.items())
        db.execute("COMMIT")

    def insert_older(self, blocks: list[BlockRows], rebuilt_to: int, done: bool) -> None:
        """Rows of blocks before ``history_from`` (a rebuild), in one transaction
        with how far the rebuild got."""
        db = self.db
        db.execute("BEGIN")
        try:
            for rows in blocks:
                self._insert(rows)
            db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                           (("rebuilt_to", rebuilt_to), ("history_from", 0 if done else self.history_from)))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self.rebuilt_to = rebuilt_to
        if done:
            self.history_from = 0

    def apply(self, next_offset: int, rows: BlockRows) -> None:
        """Write one block's rows and the offset after it, in one transaction."""
        db = self.db
        db.execute("BEGIN")
        try:
            self._insert(rows)
            db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                           (("next_offset", next_offset), ("insurance_balance", rows.insurance_balance)))
            changed = [(m, v) for m, v in rows.funding_index.items() if self.funding_index.get(m) != v]
            if changed:
                db.executemany("INSERT OR REPLACE INTO funding_index VALUES (?, ?)", changed)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self.next_offset, self.insurance_balance = next_offset, rows.insurance_balance
        self.funding_index.update(rows.funding_index)

    def skip(self, next_offset: int) -> None:
        """A log message that was no block (rejected whole): only the offset moves."""
        self.db.execute("INSERT OR REPLACE INTO meta VALUES ('next_offset', ?)", (next_offset,))
        self.next_offset = next_offset

    ADD_TO_CANDLE = (
        "INSERT INTO candles VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET "
        "open = iif(excluded.first < first, excluded.open, open), first = min(first, excluded.first), "
        "close = iif(excluded.last > last, excluded.close, close), last = max(last, excluded.last), "
        "high = max(high, excluded.high), low = min(low, excluded.low), volume = volume + excluded.volume")
    """A trade into its candle in any order (a rebuild adds older trades after
    newer ones): the open is the earliest trade's price, the close the latest's,
    by their (block, index) key ``first`` / ``last``."""

    def _insert(self, rows: BlockRows) -> None:
        db = self.db
        if rows.fills:
            fills, accounts, trades = [], [], []
            for fill in rows.fills:
                key = (fill["block"], fill["index"])
                fills.append((*key, msgspec.json.encode(fill)))
                accounts += [(bytes.fromhex(fill["maker"][2:]), *key), (bytes.fromhex(fill["taker"][2:]), *key)]
                trades.append((fill["market"], *key, fill["timestampMs"], fill["price"], fill["size"],
                               fill["takerSide"]))
            db.executemany("INSERT OR IGNORE INTO fills VALUES (?, ?, ?)", fills)
            db.executemany("INSERT OR IGNORE INTO account_fills VALUES (?, ?, ?)", accounts)
            db.executemany("INSERT OR IGNORE INTO trades VALUES (?, ?, ?, ?, ?, ?, ?)", trades)
            db.executemany(self.ADD_TO_CANDLE, compute_candles(rows.fills))
        if rows.prices:
            db.executemany("INSERT OR IGNORE INTO prices VALUES (?, ?, ?, ?, ?)", rows.prices)
        if rows.ticks:
            db.executemany("INSERT OR IGNORE INTO funding_ticks VALUES (?, ?, ?, ?, ?, ?)", rows.ticks)
        if rows.payments:
            db.executemany("INSERT OR IGNORE INTO funding_payments VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows.payments)
        if rows.insurance:
            db.executemany("INSERT OR IGNORE INTO insurance VALUES (?, ?, ?, ?, ?, ?)", rows.insurance)

    # --- queries (newest first unless said) ----------------------------------------------
    def account_fills(self, account: bytes, limit: int, before: tuple[int, int] | None) -> dict:
        rows, cursor = self._page("SELECT block, idx, fill FROM account_fills JOIN fills USING (block, idx) "
                                  "WHERE account = ?", (account,), limit, before)
        return {"items": [msgspec.json.decode(fill) for _, _, fill in rows], "next": cursor}

    def funding_payments(self, account: bytes, limit: int, before: tuple[int, int] | None) -> dict:
        rows, cursor = self._page("SELECT block, idx, market, size, rate, payment, ts FROM funding_payments "
                                  "WHERE account = ?", (account,), limit, before,
                                  order="block DESC, idx DESC, market DESC")
        return {"items": [{"market": m, "size": s, "ratePpm": r, "payment": p, "timestampMs": t, "block": b}
                          for b, _, m, s, r, p, t in rows], "next": cursor}

    def insurance(self, limit: int, before: tuple[int, int] | None) -> dict:
        rows, cursor = self._page("SELECT block, idx, ts, kind, amount, balance FROM insurance WHERE 1 = 1", (),
                                  limit, before)
        return {"items": [{"block": b, "index": i, "timestampMs": t, "kind": k, "amount": a, "balance": bal}
                          for b, i, t, k, a, bal in rows], "next": cursor}

    def _page(self, select: str, args: tuple, limit: int, before: tuple[int, int] | None,
              order: str = "block DESC, idx DESC") -> tuple[list, str | None]:
        """``limit`` rows (their first two columns block, idx) older than ``before``,
        and the ``BLOCK:INDEX`` cursor of the next page (None when none is left)."""
        if before is not None:
            select += " AND (block, idx) < (?, ?)"
            args += tuple(before)
        rows = self.db.execute(f"{select} ORDER BY {order} LIMIT ?", (*args, limit + 1)).fetchall()
        if len(rows) <= limit:
            return rows, None
        rows = rows[:limit]
        return rows, f"{rows[-1][0]}:{rows[-1][1]}"

    def trades(self, market: int, limit: int) -> list[dict]:
        rows = self.db.execute("SELECT price, size, side, block, idx, ts FROM trades WHERE market = ? "
                               "ORDER BY block DESC, idx DESC LIMIT ?", (market, limit))
        return [{"market": market, "price": p, "size": s, "takerSide": side, "block": b, "index": i,
                 "timestampMs": t} for p, s, side, b, i, t in rows]

    def candles(self, market: int, interval: str, limit: int) -> list[list[int]]:
        rows = self.db.execute("SELECT start, open, high, low, close, volume FROM candles WHERE market = ? AND "
                               "width = ? ORDER BY start DESC LIMIT ?", (market, INTERVALS_MS[interval], limit))
        return [list(row) for row in reversed(rows.fetchall())]

    def prices(self, market: int, limit: int) -> list[list[int]]:
        rows = self.db.execute("SELECT ts, price FROM prices WHERE market = ? ORDER BY block DESC, idx DESC "
                               "LIMIT ?", (market, limit))
        return [list(row) for row in reversed(rows.fetchall())]

    def funding_ticks(self, market: int, limit: int) -> list[dict]:
        rows = self.db.execute("SELECT rate, ts, block, findex FROM funding_ticks WHERE market = ? "
                               "ORDER BY block DESC, idx DESC LIMIT ?", (market, limit))
        return [{"market": market, "ratePpm": r, "timestampMs": t, "block": b, "fundingIndex": f}
                for r, t, b, f in rows]

    def count(self, table: str) -> int:
        return self.db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


class HistoryProjection:
    """Keeps a HistoryStore up to date with the blocks a Chain applies."""

    def __init__(self, store: HistoryStore, markets) -> None:
        self.store = store
        self.markets = markets
        """A callable returning market id -> MarketParams."""
        self.chain = None

    def attach(self, chain) -> None:
        """Index every block ``chain`` applies from now on (before its replay)."""
        self.chain = chain
        store, start = self.store, chain.next_offset
        if store.next_offset < start:
            # Behind the snapshot the chain starts from: keep history from here on
            # and leave [0, start) to ``rebuild``.
            store.reset()
            store.start_at(start, chain.state, history_from=start)
        elif store.insurance_balance is None:
            store.start_at(start, chain.state, history_from=store.history_from)
        chain.listeners.append(self.on_block)

    def on_block(self, info, result) -> None:
        if info is None:  # a message rejected whole: no block, only the offset moves
            if self.chain.next_offset > self.store.next_offset:
                self.store.skip(self.chain.next_offset)
            return
        if info.offset < self.store.next_offset:
            return  # applied before the restart: already in the store
        store = self.store
        store.apply(info.offset + 1, compute_block_rows(result, self.chain.state, self.markets(),
                                                        store.funding_index, store.insurance_balance))

    async def rebuild(self, chain, messages) -> int:
        """Fill the hole ``[0, history_from)`` by replaying the log from genesis:
        ``chain`` a Chain at genesis, ``messages`` an async iterator of committed
        log messages from offset 0.  Resumable: blocks below ``rebuilt_to`` are
        replayed but not written again.  Returns the blocks written."""
        store = self.store
        end, written, pending = store.history_from, 0, []
        before = Before({m: market.funding_index for m, market in chain.state.markets.items()},
                        chain.state.globals.insurance_fund)

        def on_block(info, result) -> None:
            if info is None:
                return
            rows = compute_block_rows(result, chain.state, self.markets(), before.funding_index, before.insurance)
            before.funding_index, before.insurance = rows.funding_index, rows.insurance_balance
            if info.offset >= store.rebuilt_to:
                pending.append(rows)

        chain.listeners.append(on_block)
        async for message in messages:
            if message.offset >= end:
                break
            chain.apply_message(message.offset, message.value, message.schema)
            if len(pending) >= self.REBUILD_BATCH or chain.next_offset >= end:
                store.insert_older(pending, rebuilt_to=chain.next_offset, done=chain.next_offset >= end)
                written += len(pending)
                pending.clear()
        if chain.next_offset >= end and store.history_from:
            store.insert_older(pending, rebuilt_to=end, done=True)
            written += len(pending)
        return written

    REBUILD_BATCH = 256
    """Blocks per transaction while rebuilding."""


class Before(msgspec.Struct):
    funding_index: dict[int, int]
    insurance: int
