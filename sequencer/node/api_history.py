"""History endpoints for apps and the dashboard (docs/api.md, "History"):

- ``GET /v1/markets/{id}/candles?interval=1m|5m|1h&limit=`` — OHLC from trades;
- ``GET /v1/markets/{id}/trades?limit=`` — recent trades, newest first;
- ``GET /v1/markets/{id}/prices?limit=`` — oracle (= mark) prices, oldest first;
- ``GET /v1/markets/{id}/funding?limit=`` — funding ticks and the next one;
- ``GET /v1/accounts/{address}/history/fills?limit=&before=`` and
  ``.../history/funding?limit=&before=`` — pages, newest first, with a cursor;
- ``GET /v1/insurance/history?limit=&before=`` — the insurance fund's balance
  and every change of it, by kind, paginated (``GET /v1/insurance``: the
  newest changes without a cursor).

They read the history projection (sequencer.node.history): an SQLite file next
to the snapshots with the log offset it applied, fed by every block the node
applies, so the history from genesis survives a restart.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sequencer.core import wire
from sequencer.executor.chain import Chain
from sequencer.executor.genesis import build_genesis
from sequencer.log.kafka import BlockReader
from sequencer.node.api import ApiError, json_response, parse_address_param
from sequencer.node.config import load_allocations
from sequencer.node.history import INTERVALS_MS, HistoryProjection, HistoryStore

log = logging.getLogger("isoroll.history")

MAX_LIMIT = 5000
"""Largest ``limit`` of one history answer."""
HISTORY_FILE = "history.sqlite"
"""The projection's file, in the node's snapshot directory."""


class HistoryRoutes:
    def __init__(self, api) -> None:
        self.api = api
        node = api.node
        self.store = HistoryStore(node.config.snapshot_dir / HISTORY_FILE)
        self.projection = HistoryProjection(self.store, api.market_table)
        self.rebuilding: asyncio.Task | None = None
        node.observe_chain(self.attach)

    def attach(self, chain) -> None:
        """Index every block the node applies (called before its replay); a store
        behind the node's snapshot is rebuilt from the log in the background."""
        self.projection.attach(chain)
        if self.store.history_from:
            log.warning("the history file %s starts at log offset %d: rebuilding the history before it "
                        "from the log", self.store.path, self.store.history_from)
            self.rebuilding = asyncio.get_running_loop().create_task(self.rebuild())

    async def rebuild(self) -> None:
        node = self.api.node
        ctx = msgspec.structs.replace(node.ctx, verify_signatures=False)
        chain = Chain(build_genesis(load_allocations(node.config)), ctx)
        chain.root_interval = 1 << 62  # no state roots: only the history is wanted
        try:
            async with BlockReader(node.log_config, 0) as reader:
                written = await self.projection.rebuild(chain, read_all(reader))
        except Exception as exc:  # noqa: BLE001 - the next start resumes the rebuild
            log.error("history rebuild stopped at log offset %d: %r (the next start resumes it)",
                      self.store.rebuilt_to, exc)
            return
        log.info("history rebuilt from genesis: %d blocks", written)

    def routes(self) -> list[Route]:
        return [
            Route("/v1/markets/{market:int}/candles", self.get_candles),
            Route("/v1/markets/{market:int}/trades", self.get_trades),
            Route("/v1/markets/{market:int}/prices", self.get_prices),
            Route("/v1/markets/{market:int}/funding", self.get_funding),
            Route("/v1/accounts/{address}/history/fills", self.get_account_fills),
            Route("/v1/accounts/{address}/history/funding", self.get_account_funding),
            Route("/v1/insurance", self.get_insurance),
            Route("/v1/insurance/history", self.get_insurance_history),
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
            return default if raw is None else wire.parse_int(raw, "limit", 1, MAX_LIMIT)
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
        return json_response({"market": market_id, "interval": interval,
                              "columns": ["startMs", "open", "high", "low", "close", "volume"],
                              "candles": self.store.candles(market_id, interval, limit)})

    async def get_trades(self, request: Request) -> Response:
        market_id, _ = self.market(request)
        limit = self.limit(request)
        await self.api.settled()
        return json_response(self.store.trades(market_id, limit))

    async def get_prices(self, request: Request) -> Response:
        market_id, _ = self.market(request)
        limit = self.limit(request, 1000)
        await self.api.settled()
        return json_response({"market": market_id, "columns": ["timestampMs", "price"],
                              "prices": self.store.prices(market_id, limit)})

    async def get_funding(self, request: Request) -> Response:
        market_id, params = self.market(request)
        limit = self.limit(request)
        await self.api.settled()
        state = self.api.node.chain.state
        market = state.markets.get(market_id)
        ticks = self.store.funding_ticks(market_id, limit)
        last = market.funding_time_ms if market is not None else 0
        interval = params.funding_interval_ms
        next_ms = max(last, state.globals.timestamp_ms // interval * interval) + interval
        return json_response({"market": market_id, "intervalMs": interval, "lastFundingMs": last,
                              "nextFundingMs": next_ms, "lastRatePpm": ticks[0]["ratePpm"] if ticks else None,
                              "ticks": ticks})

    async def get_account_fills(self, request: Request) -> Response:
        address = parse_address_param(request.path_params["address"])
        limit, before = self.limit(request), self.cursor(request)
        await self.api.settled()
        return json_response(self.store.account_fills(address, limit, before))

    async def get_account_funding(self, request: Request) -> Response:
        address = parse_address_param(request.path_params["address"])
        limit, before = self.limit(request), self.cursor(request)
        await self.api.settled()
        return json_response(self.store.funding_payments(address, limit, before))

    async def get_insurance(self, request: Request) -> Response:
        limit = self.limit(request)
        await self.api.settled()
        changes = self.store.insurance(limit, None)["items"]
        return json_response({"balance": self.api.node.chain.state.globals.insurance_fund, "changes": changes})

    async def get_insurance_history(self, request: Request) -> Response:
        limit, before = self.limit(request), self.cursor(request)
        await self.api.settled()
        return json_response({"balance": self.api.node.chain.state.globals.insurance_fund,
                              "historyFromBlock": self.history_from_block(),
                              **self.store.insurance(limit, before)})

    def history_from_block(self) -> int:
        """The first block the history holds (0: complete from genesis; more while
        a rebuild fills in what came before the node's snapshot)."""
        offset = self.store.history_from
        if not offset:
            return 0
        chain = self.api.node.chain
        return next((info.number for info in chain.block_infos.values() if info.offset >= offset),
                    chain.head_number + 1)


async def read_all(reader: BlockReader):
    """Every committed message of the log from the reader's position on, until
    the end of the log as it was when the reading started."""
    end = await reader.end_offset()
    while await reader.position() < end:
        for message in await reader.read(timeout_ms=500):
            yield message


def routes(api) -> list[Route]:
    return HistoryRoutes(api).routes()
