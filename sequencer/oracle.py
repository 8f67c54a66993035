"""The devnet oracle feeder (`isoroll oracle`): makes OraclePrice records
signed by k of the n oracle signers and posts them to POST /v1/oracle.

Prices come from a ``PriceSource``:
- ``RandomWalk``: a seeded geometric random walk per market from a start price
  (default: the market's current oracle price, else a preset one), each step
  ``price x (1 + N(0, volatility))``, rounded to the market's tick;
- ``CsvReplay``: rows of a CSV file, one step per row (see ``CsvReplay``).

Each source observation is combined with ``compute_median_price`` (lower
median: always an observed price), so a feed with several price columns
behaves like several independent reporters.  Timestamps are the feeder's clock
in ms, strictly increasing per market: the rules need an oracle time after the
last one and not after the block time, so a replay re-stamps historical rows
with the current time (their prices, not their times, are replayed).

The devnet signer keys are public (``DEVNET_ORACLE_KEYS``); a deployment
passes its own keys.  The loop runs until stopped, or for a bounded number of
steps or seconds (``max_steps``, ``duration_s``).
"""
from __future__ import annotations

import asyncio
import csv
import logging
import random
import time
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Iterator

import msgspec

from sequencer.core import eip712
from sequencer.core.markets import DEVNET_ORACLE_KEYS, USDC, compute_median_price
from sequencer.core.records import OraclePrice
from sequencer.core.signing import sign_digest

log = logging.getLogger("isoroll.oracle")

DEFAULT_START_PRICES = {"BTC-USD": 60_000 * USDC, "ETH-USD": 3_000 * USDC, "SOL-USD": 150 * USDC,
                        "DOGE-USD": USDC // 10}


def sign_oracle_price(domain_separator: bytes, market: int, price: int, timestamp_ms: int,
                      keys: tuple[bytes, ...] | list[bytes] = DEVNET_ORACLE_KEYS[:2]) -> OraclePrice:
    """An OraclePrice co-signed (EIP-712, primary type OraclePrice) by each key."""
    record = OraclePrice(int(market), int(price), int(timestamp_ms), ())
    digest = eip712.compute_digest(domain_separator, "OraclePrice", record)
    return msgspec.structs.replace(record, signatures=tuple(sign_digest(digest, k) for k in keys))


@dataclass
class MarketInfo:
    id: int
    symbol: str
    tick_size: int
    oracle_price: int = 0

    @classmethod
    def from_api(cls, entry: dict) -> "MarketInfo":
        return cls(int(entry["id"]), entry["symbol"], int(entry["tickSize"]), int(entry.get("oraclePrice") or 0))


def round_to_tick(price: int, tick: int) -> int:
    return max(tick, (price + tick // 2) // tick * tick)


class PriceSource:
    """One step: a list of (market id, [observed prices])."""

    def step(self) -> list[tuple[int, list[int]]] | None:  # None: the source is exhausted
        raise NotImplementedError


@dataclass
class RandomWalk(PriceSource):
    markets: list[MarketInfo]
    volatility_ppm: int = 1_000
    """Standard deviation of one step's relative move, ppm (1000 = 0.1%)."""
    seed: int | None = None
    start: dict[int, int] = field(default_factory=dict)
    """Start price per market id; default the market's oracle price or DEFAULT_START_PRICES."""

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.prices = {}
        for m in self.markets:
            price = self.start.get(m.id) or m.oracle_price or DEFAULT_START_PRICES.get(m.symbol, 100 * USDC)
            self.prices[m.id] = round_to_tick(price, m.tick_size)
        self.first = True

    def step(self) -> list[tuple[int, list[int]]]:
        out = []
        for m in self.markets:
            if not self.first:
                move = self.rng.gauss(0.0, self.volatility_ppm / 1e6)
                self.prices[m.id] = round_to_tick(int(self.prices[m.id] * (1 + move)), m.tick_size)
            out.append((m.id, [self.prices[m.id]]))
        self.first = False
        return out


class CsvReplay(PriceSource):
    """Replays a CSV price series.  A header row names the columns:
    ``market`` (an id or a symbol; optional when one market is fed), and one
    or more columns starting with ``price`` (decimal USDC per whole base
    unit, e.g. ``60012.5``; or integer quote units with ``raw=True``); any
    other column (a timestamp, say) is ignored.  Rows that share a market
    value follow one another; each row is one step of its market, the
    median of its price columns.  ``loop`` starts over at the end."""

    def __init__(self, path: str, markets: list[MarketInfo], raw: bool = False, loop: bool = False) -> None:
        self.markets = markets
        by_key = {str(m.id): m for m in markets} | {m.symbol.upper(): m for m in markets}
        self.rows: list[tuple[int, list[int]]] = []
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames:
                raise ValueError(f"{path}: empty CSV (a header row is required)")
            price_columns = [c for c in reader.fieldnames if c.strip().lower().startswith("price")]
            if not price_columns:
                raise ValueError(f"{path}: no column named price* in {reader.fieldnames}")
            for n, row in enumerate(reader, start=2):
                key = (row.get("market") or "").strip().upper()
                if not key:
                    if len(markets) != 1:
                        raise ValueError(f"{path}:{n}: no market column; pass exactly one market")
                    market = markets[0]
                elif key in by_key:
                    market = by_key[key]
                else:
                    continue  # a market this feeder does not feed
                prices = []
                for column in price_columns:
                    text = (row.get(column) or "").strip()
                    if not text:
                        continue
                    try:
                        value = Decimal(text) if raw else Decimal(text) * USDC
                    except InvalidOperation:
                        raise ValueError(f"{path}:{n}: {column} = {text!r} is not a number") from None
                    prices.append(round_to_tick(int(value), market.tick_size))
                if prices:
                    self.rows.append((market.id, prices))
        if not self.rows:
            raise ValueError(f"{path}: no price rows for markets {[m.symbol for m in markets]}")
        self.loop = loop
        self.position = 0

    def step(self) -> list[tuple[int, list[int]]] | None:
        if self.position >= len(self.rows):
            if not self.loop:
                return None
            self.position = 0
        row = self.rows[self.position]
        self.position += 1
        return [row]


@dataclass
class Update:
    market: int
    price: int
    timestamp_ms: int
    receipt: dict | None
    error: str | None = None


class Feeder:
    """Signs each step's median prices with ``keys`` and posts them through ``client``
    (a sequencer.sdk.Client).  ``run`` returns the updates it made."""

    def __init__(self, client, source: PriceSource, *, keys: tuple[bytes, ...] | list[bytes] = DEVNET_ORACLE_KEYS[:2],
                 interval_s: float = 1.0, clock=lambda: int(time.time() * 1000)) -> None:
        self.client = client
        self.source = source
        self.keys = tuple(keys)
        self.interval_s = interval_s
        self.clock = clock
        self.last_time: dict[int, int] = {}
        self.updates: list[Update] = []

    async def post(self, market: int, price: int) -> Update:
        from sequencer.sdk import ApiError
        timestamp = self.clock()
        while timestamp <= self.last_time.get(market, 0):  # strictly increasing per market
            await asyncio.sleep(0.001)
            timestamp = self.clock()
        self.last_time[market] = timestamp
        record = sign_oracle_price(await self.client.domain_separator(), market, price, timestamp, self.keys)
        try:
            receipt = await self.client.submit_oracle_price(record)
            update = Update(market, price, timestamp, receipt)
        except ApiError as exc:
            if not exc.retriable:
                log.warning("oracle price %d for market %d refused: %s", price, market, exc)
            else:
                log.warning("oracle price not posted (%s); next step retries", exc)
            update = Update(market, price, timestamp, None, f"{exc.code}: {exc.message}")
        self.updates.append(update)
        return update

    async def run(self, max_steps: int | None = None, duration_s: float | None = None,
                  on_update=None) -> list[Update]:
        loop = asyncio.get_running_loop()
        deadline = None if duration_s is None else loop.time() + duration_s
        steps = 0
        while max_steps is None or steps < max_steps:
            if deadline is not None and loop.time() >= deadline:
                break
            observations = self.source.step()
            if observations is None:
                break
            for market, prices in observations:
                update = await self.post(market, compute_median_price(prices))
                if on_update is not None:
                    on_update(update)
            steps += 1
            if max_steps is not None and steps >= max_steps:
                break
            wait = self.interval_s if deadline is None else min(self.interval_s, max(0.0, deadline - loop.time()))
            await asyncio.sleep(wait)
        return self.updates


def select_markets(entries: list[dict], wanted: list[str] | None) -> list[MarketInfo]:
    """The GET /v1/markets entries named by id or symbol (all when none named)."""
    markets = [MarketInfo.from_api(e) for e in entries]
    if not wanted:
        return markets
    out = []
    for name in wanted:
        match = [m for m in markets if str(m.id) == str(name) or m.symbol.upper() == str(name).upper()]
        if not match:
            raise ValueError(f"no market {name!r}; the markets are {', '.join(m.symbol for m in markets)}")
        out.append(match[0])
    return out


def iter_oracle_keys(text: str | None, count: int) -> Iterator[bytes]:
    """--oracle-keys 0xk1,0xk2 (default the devnet signers); the first ``count``."""
    if not text:
        yield from DEVNET_ORACLE_KEYS[:count]
        return
    keys = [bytes.fromhex(k.strip()[2:] if k.strip().startswith("0x") else k.strip()) for k in text.split(",")]
    yield from keys[:count]
