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

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sequencer.core import wire
from sequencer.core.encoding import compute_record_hash, decode_block, decode_record, encode_record
from sequencer.core.presets import MAX_INT64
from sequencer.core.records import CancelOrder, OraclePrice, PlaceOrder, Trade
from sequencer.core.rules import funding, orders
from sequencer.core.transition import RuleError
from sequencer.node import views
from sequencer.node.api import ApiError, json_response, parse_address_param, read_body
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
        for raw in result.block.records:
            try:
                record = decode_record(bytes(raw))
            except (msgspec.DecodeError, msgspec.ValidationError):
                continue
            if isinstance(record, (PlaceOrder, Trade)):
                touched.add(record.market)
            elif isinstance(record, CancelOrder):
                touched.update(exchange.books)  # the record does not name the market
        return [{"type": "book", "block": info.number, **exchange.book(m, BOOK_EVENT_DEPTH)}
                for m in sorted(touched) if m in exchange.books]

    def receipt_extras(self, record, receipt) -> dict:
        """A committed PlaceOrder's receipt also gives the order's status as of
        its block and the fills it made as the taker (the Trades right after it)."""
        if not isinstance(record, PlaceOrder) or not receipt.ok:
            return {}
        order = self.node.chain.state.orders.get((record.account, record.nonce))
        if order is None:
            return {}
        if order.filled >= order.size:
            status = "filled"
        elif order.cancelled:
            status = "cancelled"
        elif record.time_in_force == orders.IMMEDIATE_OR_CANCEL:
            status = "expired"  # an IOC remainder never rests
        else:
            status = "resting" if order.filled == 0 else "partially_filled"
        fills = self.fills.taker_fills(receipt.block, wire.hex0x(record.account), record.nonce)
        return {"order": {"market": record.market, "nonce": record.nonce, "status": status,
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
        tx_hash = compute_record_hash(encode_record(record))
        known = self.node.chain.receipts.get(tx_hash)
        if known is not None:
            raise ApiError("nonce_used", f"this exact price is already in block {known.block}")
        try:
            # The node's own context verifies signatures; the builder's does not.
            funding.verify_oracle_quorum(record, self.node.ctx)
        except RuleError as exc:
            raise ApiError(exc.code, exc.message) from None
        receipt = await api.submit(record, tx_hash)
        receipt["liquidations"] = self.liquidations_after(receipt)
        return json_response(receipt)

    def liquidations_after(self, receipt: dict) -> list[dict]:
        """The Liquidate records the builder put right after this price."""
        block, index = receipt.get("block"), receipt.get("index")
        message = self.node.chain.recent_messages.get(block) if block is not None else None
        if message is None:
            return []
        out = []
        for raw in decode_block(message).records[index + 1:]:
            try:
                record = decode_record(bytes(raw))
            except (msgspec.DecodeError, msgspec.ValidationError):
                break
            if type(record).__name__ != "Liquidate":
                break
            out.append({"account": wire.hex0x(record.account), "market": record.market})
        return out

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
