"""Trading endpoints of the API (docs/api.md), part of every ``Api``:

- ``POST /v1/oracle`` — an OraclePrice signed by k of n oracle signers.  The
  quorum is checked here with the node's full context *before* the record is
  queued: the block builder's context skips signature checks (it trusts what
  the API verified), so an unsigned price must never reach it.
- ``GET /v1/markets/{id}`` and ``GET /v1/markets/{id}/book?depth=`` — one
  market, and its aggregated order book.
- ``GET /v1/accounts/{address}/orders`` — open orders (what cancel-all cancels).
- ``GET /v1/accounts/{address}/fills?limit=`` — recent fills, newest first.

Placing and cancelling orders is ``POST /v1/tx`` (PlaceOrder, CancelOrder)
like every user tx; a PlaceOrder's receipt here also carries the fills it
made.  **Cancel-all is a client operation** (``Client.cancel_all``,
``isoroll order cancel-all``): the node holds no user keys, so the client
reads its open orders and signs one CancelOrder each, sent as one
``POST /v1/txs`` batch.

The fills come from the node's fills index (sequencer.node.fills).  ``Api``
owns one ``TradingRoutes`` and calls it for the receipt's fills and the
WebSocket "book" events.
"""
from __future__ import annotations

import logging
from itertools import takewhile

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sequencer.core import wire
from sequencer.core.encoding import decode_record
from sequencer.core.presets import MAX_INT64
from sequencer.core.records import (AuctionEnd, CancelOrder, Deleverage, ForcedClose, Liquidate, ModifyOrder, OraclePrice, PlaceOrder, ScheduledCancelAll,
                                    Trade)
from sequencer.core.rules import funding, orders
from sequencer.core.state import is_order_open
from sequencer.core.transition import RuleError
from sequencer.node import views
from sequencer.node.api import ApiError, json_response, parse_address_param, read_body
from sequencer.node.assembler import CheckedRecord, Outcome
from sequencer.node.fills import FILLS_PER_ACCOUNT

log = logging.getLogger("isoroll.api")

MAX_DEPTH = 500
BOOK_EVENT_DEPTH = 20
"""Levels per side in the WebSocket "book" events."""


class OracleRequest(msgspec.Struct, forbid_unknown_fields=True):
    market: int | str
    price: int | str
    timestamp: int | str
    signatures: list[str]


_oracle_decoder = msgspec.json.Decoder(OracleRequest)


def parse_oracle_price(body: bytes) -> OraclePrice:
    """``{"market", "price", "timestamp", "signatures": ["0x..", ...]}`` (the
    EIP-712 OraclePrice message, timestamp in ms) into a record."""
    try:
        request = _oracle_decoder.decode(body)
    except msgspec.ValidationError as exc:
        code = "unknown_field" if "unknown field" in str(exc).lower() else "invalid_field"
        raise ApiError(code, f"OraclePrice: {exc}") from None
    except msgspec.DecodeError as exc:
        raise ApiError("malformed_json", f"OraclePrice is not valid JSON: {exc}") from None
    try:
        market = wire.parse_int(request.market, "OraclePrice.market", 0, 2**32 - 1)
        price = wire.parse_int(request.price, "OraclePrice.price", 1, MAX_INT64)
        timestamp = wire.parse_int(request.timestamp, "OraclePrice.timestamp", 0, MAX_INT64)
        if not 1 <= len(request.signatures) <= 32:
            raise wire.WireError("invalid_field", "OraclePrice.signatures must hold 1 to 32 signatures")
        signatures = tuple(wire.parse_hex(s, "signature", 65) for s in request.signatures)
    except wire.WireError as exc:
        raise ApiError(exc.code, exc.message) from None
    return OraclePrice(market, price, timestamp, signatures)


def oracle_to_json(record: OraclePrice) -> dict:
    return {"market": record.market, "price": record.price, "timestamp": record.timestamp_ms,
            "signatures": [wire.hex0x(s) for s in record.signatures]}


class TradingRoutes:
    def __init__(self, api) -> None:
        self.api = api
        self.node = api.node
        self.fills = api.node.fills

    def routes(self) -> list[Route]:
        return [
            Route("/v1/oracle", self.post_oracle, methods=["POST"]),
            Route("/v1/markets/{market:int}", self.get_market),
            Route("/v1/markets/{market:int}/book", self.get_book),
            Route("/v1/accounts/{address}/orders", self.get_orders),
            Route("/v1/accounts/{address}/fills", self.get_fills),
        ]

    # --- helpers ----------------------------------------------------------------------
    def require_market(self, request: Request):
        market_id = request.path_params["market"]
        params = self.api.market_table().get(market_id)
        if params is None:
            known = ", ".join(str(m) for m in sorted(self.api.market_table()))
            raise ApiError("not_found", f"no market {market_id}; the markets are {known} (GET /v1/markets)")
        return market_id, params

    @staticmethod
    def int_query(request: Request, name: str, default: int, lo: int, hi: int) -> int:
        raw = request.query_params.get(name)
        if raw is None:
            return default
        try:
            return wire.parse_int(raw, name, lo, hi)
        except wire.WireError as exc:
            raise ApiError(exc.code, exc.message) from None

    def book_events(self, info, result) -> list[dict]:
        """A "book" event per market the block's orders, cancels or trades touched."""
        exchange = self.node.get_exchange()
        if exchange is None or result.block is None:
            return []
        touched: set[int] = set()
        for record in self.records_of(result):
            if isinstance(record, (PlaceOrder, Trade)):
                touched.add(record.market)
            elif isinstance(record, (CancelOrder, ModifyOrder, ScheduledCancelAll)):
                touched.update(exchange.books)  # the record does not name the market
            elif isinstance(record, (Liquidate, Deleverage, AuctionEnd, ForcedClose)) and isinstance(record.market, int):
                touched.add(record.market)      # the owner's orders in the market were cancelled (order epoch)
        return [{"type": "book", "block": info.number, **exchange.book(m, BOOK_EVENT_DEPTH)}
                for m in sorted(touched) if m in exchange.books]

    @staticmethod
    def records_of(result) -> list:
        """A block's records as objects: as the assembler made them for a block
        this node built (assembler.BuiltBlock), else decoded from the log bytes."""
        records = getattr(result, "records", None)
        if records is not None:
            return records
        out = []
        for raw in result.block.records:
            try:
                out.append(decode_record(bytes(raw)))
            except (msgspec.DecodeError, msgspec.ValidationError):
                continue
        return out

    def receipt_extras(self, record, outcome: Outcome) -> dict:
        """A committed PlaceOrder's receipt also gives the order's status as of
        its block and the fills it made as the taker: the Trades its admission
        derived (assembler.Outcome), nothing decoded again."""
        receipt = outcome.receipt
        if not isinstance(record, (PlaceOrder, ModifyOrder)) or not receipt.ok:
            return {}
        order = self.node.chain.state.orders.get((record.account, record.nonce))
        if order is None:
            return {}
        if order.filled >= order.size:
            status = "filled"
        elif not is_order_open(self.node.chain.state, record.account, record.nonce):
            status = "cancelled"  # its flag, or its owner's order epoch (liquidation, forced close, cancel-all)
        elif order.time_in_force == orders.IMMEDIATE_OR_CANCEL:
            status = "expired"  # an IOC remainder never rests
        else:
            status = "resting" if order.filled == 0 else "partially_filled"
        info = self.node.chain.block_infos.get(receipt.block)
        trades = [(receipt.index + 1 + k, r) for k, r in enumerate(outcome.derived) if type(r) is Trade]
        fills = self.fills.describe_trades(trades, receipt.block, info.timestamp_ms if info else 0)
        return {"order": {"market": order.market, "nonce": record.nonce, "status": status,
                          "size": order.size, "filled": order.filled},
                "fills": fills}

    # --- endpoints -------------------------------------------------------------------
    async def post_oracle(self, request: Request) -> Response:
        api = self.api
        api.check_writable()
        body = await read_body(request, self.node.config.api_max_body_bytes)
        record = parse_oracle_price(body)
        if record.market not in api.market_table():
            raise ApiError("unknown_market", f"market {record.market} is not configured; GET /v1/markets lists them")
        tx = CheckedRecord.of(record)
        known = self.node.chain.receipts.get(tx.tx_hash)
        if known is not None:
            raise ApiError("nonce_used", f"this exact price is already in block {known.block}")
        try:
            # The node's own context verifies signatures; the builder's does not.
            funding.verify_oracle_quorum(record, self.node.ctx)
        except RuleError as exc:
            raise ApiError(exc.code, exc.message) from None
        outcome = await api.submit_for_outcome(tx)
        receipt = api.render_outcome(record, outcome)
        # The liquidations this price triggered: the records its admission derived
        # (Liquidate, and under rules v3 the Deleverage records of the ladder).
        receipt["liquidations"] = [{"account": wire.hex0x(r.account), "market": r.market}
                                   for r in takewhile(lambda r: type(r) in (Liquidate, Deleverage),
                                                      outcome.derived)]
        return json_response(receipt)

    async def get_market(self, request: Request) -> Response:
        market_id, params = self.require_market(request)
        await self.api.settled()
        return json_response(views.describe_market(params, self.node.chain.state.markets.get(market_id)))

    async def get_book(self, request: Request) -> Response:
        market_id, params = self.require_market(request)
        depth = self.int_query(request, "depth", 20, 1, MAX_DEPTH)
        await self.api.settled()
        exchange = self.node.get_exchange()
        book = exchange.book(market_id, depth)
        market = self.node.chain.state.markets.get(market_id)
        return json_response({**book, "symbol": params.symbol, "blockNumber": self.node.chain.head_number,
                              "oraclePrice": market.oracle_price if market else 0,
                              "levels": "[price, size, orders]: price in quote units per whole base unit, "
                                        "size in base lots"})

    async def get_orders(self, request: Request) -> Response:
        address = parse_address_param(request.path_params["address"])
        market = self.int_query(request, "market", 0, 0, 2**32 - 1) or None
        await self.api.settled()
        return json_response(self.node.get_exchange().open_orders(address, market))

    async def get_fills(self, request: Request) -> Response:
        address = parse_address_param(request.path_params["address"])
        limit = self.int_query(request, "limit", 100, 1, FILLS_PER_ACCOUNT)
        await self.fills.backfill()
        await self.api.settled()
        return json_response(self.fills.get(address, limit))


def routes(api) -> list[Route]:
    return TradingRoutes(api).routes()
