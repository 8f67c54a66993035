"""History endpoints for apps and the dashboard (docs/api.md, "History"):

- ``GET /v1/markets/{id}/candles?interval=1m|5m|1h&limit=`` — OHLC from trades;
- ``GET /v1/markets/{id}/trades?limit=`` — recent trades, newest first;
- ``GET /v1/markets/{id}/prices?limit=`` — oracle (= mark) prices, oldest first;
- ``GET /v1/markets/{id}/funding?limit=`` — funding ticks and the next one;
- ``GET /v1/accounts/{address}/history/fills?limit=&before=`` and
  ``.../history/funding?limit=&before=`` — pages, newest first, with a cursor;
- ``GET /v1/insurance?limit=`` — the insurance fund's balance as it changed.

The index is a Chain listener like the fills index: every block the node
applies (the replay at start-up included) adds to it, each series capped at
``KEEP``.  It is memory only: after a restart it starts again from the
snapshot's replay.  The log (GET /v1/blocks/{n}) is the complete history.

A funding payment is what one position accrued at one FundingTick:
``size * (index after - index before) / (S * 1e6)`` quote units (> 0: the
position paid), the amount the rules settle the next time it is touched.  A
position opened or settled in the tick's own block (after the tick, which
comes first) has nothing to pay for that tick.
"""
from __future__ import annotations

from collections import deque
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sequencer.core import wire
from sequencer.core.encoding import decode_record
from sequencer.core.presets import PPM
from sequencer.core.records import FundingTick, OraclePrice, Trade
from sequencer.node.api import ApiError, json_response, parse_address_param

KEEP = 5000
"""Entries kept per series (trades, prices, candles per interval, funding, insurance)."""
KEEP_PER_ACCOUNT = 1000
INTERVALS_MS = {"1m": 60_000, "5m": 300_000, "1h": 3_600_000}
_TAGS = {16, 17, 32}  # Trade, FundingTick, OraclePrice: the msgpack array's first element


class MarketSeries:
    def __init__(self) -> None:
        self.trades: deque[dict] = deque(maxlen=KEEP)
        self.prices: deque[tuple[int, int]] = deque(maxlen=KEEP)
        self.funding: deque[dict] = deque(maxlen=KEEP)
        self.candles: dict[str, deque[list[int]]] = {name: deque(maxlen=KEEP) for name in INTERVALS_MS}

    def add_trade(self, trade: dict) -> None:
        self.trades.append(trade)
        for name, width in INTERVALS_MS.items():
            series = self.candles[name]
            start = trade["timestampMs"] // width * width
            price, size = trade["price"], trade["size"]
            if series and series[-1][0] == start:
                c = series[-1]
                c[2], c[3], c[4], c[5] = max(c[2], price), min(c[3], price), price, c[5] + size
            else:
                series.append([start, price, price, price, price, size])


class HistoryIndex:
    def __init__(self, api) -> None:
        self.api = api
        self.markets: dict[int, MarketSeries] = {}
        self.funding_by_account: dict[bytes, deque[dict]] = {}
        self.insurance: deque[dict] = deque(maxlen=KEEP)
        self._insurance_last: int | None = None
        self.funding_index: dict[int, int] = {}
        """Each market's funding index as of the last block indexed."""

    def series(self, market: int) -> MarketSeries:
        s = self.markets.get(market)
        if s is None:
            s = self.markets[market] = MarketSeries()
        return s

    def attach(self, chain) -> None:
        chain.listeners.append(self.on_block)

    def on_block(self, info, result) -> None:
        if info is None or result.block is None:
            return
        state = self.api.node.chain.state
        block = result.block
        receipts = result.receipts
        for i, raw in enumerate(block.records):
            raw = bytes(raw)
            if len(raw) < 2 or raw[1] not in _TAGS:
                continue
            if receipts is not None and i < len(receipts) and not receipts[i].ok:
                continue
            try:
                record = decode_record(raw)
            except (msgspec.DecodeError, msgspec.ValidationError):
                continue
            if isinstance(record, Trade):
                self.on_trade(state, record, block, i)
            elif isinstance(record, OraclePrice):
                self.series(record.market).prices.append((record.timestamp_ms, record.price))
            elif isinstance(record, FundingTick):
                self.on_funding(state, record, block.number)
        fund = state.globals.insurance_fund
        if fund != self._insurance_last:
            self._insurance_last = fund
            self.insurance.append({"block": block.number, "timestampMs": block.timestamp_ms, "balance": fund})
        for market_id, market in state.markets.items():
            self.funding_index[market_id] = market.funding_index

    def on_trade(self, state, trade: Trade, block, index: int) -> None:
        maker = state.orders.get((trade.maker, trade.maker_nonce))
        side = ("sell" if maker.is_buy else "buy") if maker is not None else None
        self.series(trade.market).add_trade({
            "market": trade.market, "price": trade.price, "size": trade.size, "takerSide": side,
            "block": block.number, "index": index, "timestampMs": block.timestamp_ms})

    def on_funding(self, state, tick: FundingTick, block_number: int) -> None:
        """One payment per open position of the market, from the index step."""
        market = state.markets.get(tick.market)
        params = self.api.market_table().get(tick.market)
        if market is None or params is None:
            return
        before = self.funding_index.get(tick.market)
        self.series(tick.market).funding.append({
            "market": tick.market, "ratePpm": tick.rate_ppm, "timestampMs": tick.timestamp_ms,
            "block": block_number, "fundingIndex": market.funding_index})
        if before is None:
            return  # in the first block indexed: the index before it is unknown
        step = market.funding_index - before
        scale = params.scale * PPM
        for (account, market_id), position in state.positions.items():
            if market_id != tick.market or position.size == 0 or position.funding_snapshot == market.funding_index:
                continue  # opened (or settled) after the tick, in the same block
            queue = self.funding_by_account.get(account)
            if queue is None:
                queue = self.funding_by_account[account] = deque(maxlen=KEEP_PER_ACCOUNT)
            queue.append({"market": market_id, "size": position.size, "ratePpm": tick.rate_ppm,
                          "payment": -(-position.size * step // scale), "timestampMs": tick.timestamp_ms,
                          "block": block_number})


def page(items, limit: int, before: tuple[int, int] | None) -> dict:
    """Newest first, ``limit`` entries older than the cursor ``before`` (block, index)."""
    out = []
    for item in reversed(items):
        if before is not None and (item["block"], item.get("index", 0)) >= before:
            continue
        out.append(item)
        if len(out) == limit:
            break
    cursor = f"{out[-1]['block']}:{out[-1].get('index', 0)}" if len(out) == limit else None
    return {"items": out, "next": cursor}


class HistoryRoutes:
    def __init__(self, api) -> None:
        self.api = api
        self.index = HistoryIndex(api)
        attach_when_loaded(api.node, self.index.attach)

    def routes(self) -> list[Route]:
        return [
            Route("/v1/markets/{market:int}/candles", self.get_candles),
            Route("/v1/markets/{market:int}/trades", self.get_trades),
            Route("/v1/markets/{market:int}/prices", self.get_prices),
            Route("/v1/markets/{market:int}/funding", self.get_funding),
            Route("/v1/accounts/{address}/history/fills", self.get_account_fills),
            Route("/v1/accounts/{address}/history/funding", self.get_account_funding),
            Route("/v1/insurance", self.get_insurance),
        ]

    def market(self, request: Request) -> tuple[int, Any]:
        market_id = request.path_params["market"]
        params = self.api.market_table().get(market_id)
        if params is None:
            raise ApiError("not_found", f"no market {market_id} (GET /v1/markets lists them)")
        return market_id, params

    @staticmethod
    def limit(request: Request, default: int = 100) -> int:
        raw = request.query_params.get("limit")
        try:
            return default if raw is None else wire.parse_int(raw, "limit", 1, KEEP)
        except wire.WireError as exc:
            raise ApiError(exc.code, exc.message) from None

    @staticmethod
    def cursor(request: Request) -> tuple[int, int] | None:
        raw = request.query_params.get("before")
        if raw is None:
            return None
        block, _, index = raw.partition(":")
        if not block.isdigit() or not (index or "0").isdigit():
            raise ApiError("invalid_field", f"before={raw!r}: expected a cursor BLOCK:INDEX (the `next` of a page)")
        return int(block), int(index or 0)

    async def get_candles(self, request: Request) -> Response:
        market_id, _ = self.market(request)
        interval = request.query_params.get("interval", "1m")
        if interval not in INTERVALS_MS:
            raise ApiError("invalid_field", f"interval {interval!r}: one of {', '.join(INTERVALS_MS)}")
        limit = self.limit(request, 500)
        await self.api.settled()
        candles = list(self.index.series(market_id).candles[interval])[-limit:]
        return json_response({"market": market_id, "interval": interval,
                              "columns": ["startMs", "open", "high", "low", "close", "volume"],
                              "candles": candles})

    async def get_trades(self, request: Request) -> Response:
        market_id, _ = self.market(request)
        limit = self.limit(request)
        await self.api.settled()
        trades = self.index.series(market_id).trades
        return json_response([trades[-1 - i] for i in range(min(limit, len(trades)))])

    async def get_prices(self, request: Request) -> Response:
        market_id, _ = self.market(request)
        limit = self.limit(request, 1000)
        await self.api.settled()
        prices = list(self.index.series(market_id).prices)[-limit:]
        return json_response({"market": market_id, "columns": ["timestampMs", "price"], "prices": prices})

    async def get_funding(self, request: Request) -> Response:
        market_id, params = self.market(request)
        limit = self.limit(request)
        await self.api.settled()
        market = self.api.node.chain.state.markets.get(market_id)
        ticks = self.index.series(market_id).funding
        last = market.funding_time_ms if market is not None else 0
        head_ms = self.api.node.chain.state.globals.timestamp_ms
        interval = params.funding_interval_ms
        next_ms = max(last, head_ms // interval * interval) + interval
        return json_response({"market": market_id, "intervalMs": interval, "lastFundingMs": last,
                              "nextFundingMs": next_ms,
                              "lastRatePpm": ticks[-1]["ratePpm"] if ticks else None,
                              "ticks": [ticks[-1 - i] for i in range(min(limit, len(ticks)))]})

    async def get_account_fills(self, request: Request) -> Response:
        address = parse_address_param(request.path_params["address"])
        limit, before = self.limit(request), self.cursor(request)
        fills = self.api.node.fills
        if fills is not None:
            await fills.backfill()
        await self.api.settled()
        items = fills.by_account.get(address, ()) if fills is not None else ()
        return json_response(page(items, limit, before))

    async def get_account_funding(self, request: Request) -> Response:
        address = parse_address_param(request.path_params["address"])
        limit, before = self.limit(request), self.cursor(request)
        await self.api.settled()
        return json_response(page(self.index.funding_by_account.get(address, ()), limit, before))

    async def get_insurance(self, request: Request) -> Response:
        limit = self.limit(request)
        await self.api.settled()
        items = self.index.insurance
        return json_response({"balance": self.api.node.chain.state.globals.insurance_fund,
                              "changes": [items[-1 - i] for i in range(min(limit, len(items)))]})


def attach_when_loaded(node, attach) -> None:
    """Run ``attach(chain)`` on the node's chain as soon as it is loaded, so a
    listener sees every block replayed at start-up too."""
    node.observe_chain(attach)


def routes(api) -> list[Route]:
    return HistoryRoutes(api).routes()
