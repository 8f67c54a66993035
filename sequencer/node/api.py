"""The HTTP and WebSocket API of API.md, as a Starlette (ASGI) app over a Node.

Bad input is a 4xx with ``{"error": {"code", "message"}}`` and writes nothing;
when the log cannot take writes the answer is 503 and nothing is acknowledged.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable, Sequence

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from sequencer.core import txcheck, wire
from sequencer.core.state import Market
from sequencer.core.encoding import compute_record_hash, decode_block, decode_record
from sequencer.core.records import Record
from sequencer.core.transition import RuleError
from sequencer.log.kafka import Fenced, LogError
from sequencer.node import views
from sequencer.node.api_triggers import describe_schedule, describe_triggers
from sequencer.node.http_limits import RateLimiter, classify_request, client_address, send_rate_limited
from sequencer.node.assembler import CheckedRecord, Outcome
from sequencer.node.fills import get_markets
from sequencer.node.lifecycle import NodeFailed, Phase
from sequencer.node.metrics import METRICS

log = logging.getLogger("isoroll.api")

_json = msgspec.json.Encoder()

STATUS_BY_CODE = {
    # 409: the tx conflicts with what is already there (a used nonce, an order
    # on the book, the current oracle time).
    "nonce_used": 409, "duplicate_order": 409, "post_only_would_cross": 409, "self_trade": 409,
    "would_cross_book": 409,
    "order_not_open": 409, "oracle_time_not_monotonic": 409,
    "batch_too_large": 413, "payload_too_large": 413,
    # 422: well-formed, but a rule refuses it in the current state.
    "insufficient_collateral": 422, "record_not_enabled": 422, "inbox_out_of_order": 422,
    "insufficient_margin": 422, "collateral_reserved": 422, "reduce_only": 422, "unknown_order": 422,
    "too_many_triggers": 422, "schedule_limit": 422, "rate_limited": 429,
    "no_position": 422, "no_oracle_price": 422, "stale_oracle_price": 422, "below_bankruptcy": 422,
    "position_too_large": 422, "notional_overflow": 422, "not_liquidatable": 422, "insolvent": 422,
    "deleverage_failed": 422, "oracle_time_in_future": 422, "no_quorum": 422, "unknown_account": 422,
    "order_cancelled": 422, "order_expired": 422, "overfill": 422, "same_side": 422, "wrong_market": 422,
    "price_outside_limit": 422, "funding_rate_above_cap": 422, "funding_not_due": 422,
    "funding_time_not_aligned": 422, "funding_index_overflow": 422,
    # 400 (the default): malformed input, a bad signature, terms no market accepts
    # (invalid_price, invalid_size, invalid_leverage, invalid_time_in_force,
    # unknown_market, invalid_amount, expired, expiry_too_far, bad_signature).
    "not_found": 404,
    "log_unavailable": 503, "not_the_sequencer": 503, "not_ready": 503,
}


class ApiError(Exception):
    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status or STATUS_BY_CODE.get(code, 400)


def json_response(body: Any, status: int = 200) -> Response:
    return Response(_json.encode(body), status_code=status, media_type="application/json")


def error_response(code: str, message: str, status: int | None = None) -> Response:
    return json_response({"error": {"code": code, "message": message}},
                         status or STATUS_BY_CODE.get(code, 400))


async def read_body(request: Request, limit: int) -> bytes:
    return await read_asgi_body(request.scope, request.receive, limit)


class ClientGone(Exception):
    """The client disconnected before its request body arrived."""


async def read_asgi_body(scope, receive, limit: int) -> bytes:
    """A request body of at most ``limit`` bytes (413 ``payload_too_large`` past it)."""
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            raise ApiError("payload_too_large", f"request body is {value.decode()} bytes, the limit is {limit}")
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise ApiError("payload_too_large", f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks) if len(chunks) != 1 else chunks[0]


def parse_address_param(value: str) -> bytes:
    try:
        return wire.parse_address(value, "address")
    except wire.WireError as exc:
        raise ApiError(exc.code, exc.message) from None


def parse_hash_param(value: str) -> bytes:
    """A 0x-prefixed 32-byte hash from a path (400 naming what is wrong)."""
    try:
        return wire.parse_hex(value, "hash", 32)
    except wire.WireError as exc:
        raise ApiError(exc.code, exc.message) from None


class Api:
    STREAM_BACKLOG = 50_000
    """Events a WebSocket client may fall behind by before it is disconnected."""

    def __init__(self, node, extensions: Sequence[Callable[["Api"], list]] = ()) -> None:
        """``extensions``: functions ``(api) -> [Route, ...]`` adding endpoints from
        outside this package (the isoroll package adds the L1 ones)."""
        from sequencer.node.api_trading import TradingRoutes
        self.node = node
        self.streams: set[asyncio.Queue] = set()
        self.trading = TradingRoutes(self)
        """Orders, books, fills and the oracle: a PlaceOrder's receipt carries its
        fills, and each block's "book" events come from here."""
        self.app = Starlette(routes=[
            Route("/v1/tx", self.post_tx, methods=["POST"]),
            Route("/v1/txs", self.post_txs, methods=["POST"]),
            Route("/v1/tx/{hash}", self.get_tx),
            Route("/v1/status", self.get_status),
            Route("/v1/accounts/{address}", self.get_account),
            Route("/v1/markets", self.get_markets),
            Route("/v1/blocks/{number:int}", self.get_block),
            Route("/livez", self.livez),
            Route("/readyz", self.readyz),
            Route("/metrics", self.metrics),
            WebSocketRoute("/v1/stream", self.stream),
            *self.trading.routes(),
            *self.extension_routes(),
            *(route for extension in extensions for route in extension(self)),
        ], exception_handlers={ApiError: self._api_error, 404: self._not_found, 405: self._not_allowed,
                               Exception: self._internal})
        self._fast_posts = {"/v1/tx": self.handle_tx, "/v1/txs": self.handle_txs}
        """POST routes ``asgi`` serves itself (the Starlette routes above stay for 405s)."""
        config = node.config
        self.rate_limiter = RateLimiter({
            "dry_run": (config.api_rate_dry_run_per_s, config.api_rate_dry_run_burst),
            "events_replay": (config.api_rate_events_replay_per_s, config.api_rate_events_replay_burst),
            "l1": (config.api_rate_l1_per_s, config.api_rate_l1_burst)})
        """Per-client token buckets of the costly public routes (docs/api.md "Rate limits")."""

    EXTENSIONS = ("sequencer.node.api_history", "sequencer.node.api_web", "sequencer.node.api_apps",
                  "sequencer.node.api_vault", "sequencer.node.api_auctions")
    """Modules of this package with ``routes(api) -> list[Route]`` that add endpoints."""

    def extension_routes(self) -> list:
        import importlib
        routes = []
        for name in self.EXTENSIONS:
            try:
                module = importlib.import_module(name)
            except ModuleNotFoundError as exc:
                if exc.name == name:
                    continue
                raise
            routes += module.routes(self)
        return routes

    # --- errors -----------------------------------------------------------------
    async def _api_error(self, request: Request, exc: ApiError) -> Response:
        return error_response(exc.code, exc.message, exc.status)

    async def _not_found(self, request: Request, exc: Exception) -> Response:
        return error_response("not_found", f"no route {request.method} {request.url.path}", 404)

    async def _not_allowed(self, request: Request, exc: Exception) -> Response:
        return error_response("method_not_allowed", f"{request.method} is not allowed on {request.url.path}", 405)

    async def _internal(self, request: Request, exc: Exception) -> Response:
        log.exception("internal error on %s", request.url.path)
        return error_response("internal_error", f"{type(exc).__name__}: {exc}", 500)

    # --- writes -----------------------------------------------------------------
    def check_writable(self) -> None:
        node = self.node
        phase = node.phase
        if phase is Phase.SEQUENCING and not node.builder.stopped:
            return
        if phase is Phase.FAILED:
            raise ApiError("not_ready", f"this node stopped ({node.status_message}); nothing was written")
        if node.mode != "sequencer" or phase is Phase.FENCED:
            why = "it was fenced by a newer sequencer" if node.fenced else "it runs as a read-only follower"
            raise ApiError("not_the_sequencer", f"this node does not accept txs: {why}")
        raise ApiError("log_unavailable", f"the log cannot take writes now ({node.status_message}); "
                                          "nothing was written, retry later")

    @staticmethod
    def unpack_checked(checked: txcheck.CheckedTx) -> CheckedRecord:
        """A passed check as the block will carry it: the record decoded once
        (it crossed a process boundary as its log bytes), bytes and hash kept."""
        if checked.code:
            raise ApiError(checked.code, checked.message)
        return CheckedRecord(decode_record(checked.record), checked.record, checked.tx_hash)

    def check_duplicate(self, tx_hash: bytes) -> bytes:
        known = self.node.chain.receipts.get(tx_hash)
        if known is not None:
            raise ApiError("nonce_used", f"this exact tx is already in block {known.block} "
                                         f"(GET /v1/tx/0x{tx_hash.hex()}); its nonce cannot be used again")
        return tx_hash

    async def submit(self, tx: CheckedRecord) -> dict:
        """Queue a checked tx and wait for its receipt (the caller did the
        stateless checks: ``node.checkers``, or the oracle quorum in api_trading)."""
        return self.render_outcome(tx.record, await self.submit_for_outcome(tx))

    async def submit_for_outcome(self, tx: CheckedRecord) -> Outcome:
        """``submit`` without rendering: the Outcome, or the ApiError of a refusal."""
        try:
            return await self.node.builder.submit(tx)
        except RuleError as exc:
            raise ApiError(exc.code, exc.message) from None
        except Fenced as exc:
            raise ApiError("not_the_sequencer", f"this node was fenced by a newer sequencer: {exc}") from None
        except NodeFailed as exc:
            raise ApiError("not_ready", f"{exc}; the tx was not acknowledged") from None
        except LogError as exc:
            raise ApiError("log_unavailable", f"the log did not take the block: {exc}; "
                                              "the tx was not acknowledged (retry it)") from None

    def render_receipt(self, receipt) -> dict:
        info = self.node.chain.block_infos.get(receipt.block)
        return wire.receipt_to_json(receipt, info.state_root if info else None)

    def render_outcome(self, record: Record, outcome: Outcome) -> dict:
        """A submitted tx's receipt, with what its admission made (a PlaceOrder's fills)."""
        out = self.render_receipt(outcome.receipt)
        out.update(self.trading.receipt_extras(record, outcome))
        return out

    async def handle_tx(self, body: bytes) -> dict:
        """POST /v1/tx: one tx in, its receipt out once the block is committed."""
        METRICS.counter("isoroll_txs_received_total").inc()
        tx = self.unpack_checked(await self.node.checkers.check(body))
        self.check_writable()  # again: the node may have lost the log while the check ran
        self.check_duplicate(tx.tx_hash)
        return await self.submit(tx)

    async def handle_txs(self, body: bytes) -> dict:
        """POST /v1/txs: up to max_batch_txs txs, each admitted or refused alone, in order."""
        try:
            raws = wire.parse_batch(body, self.node.ctx.preset.max_batch_txs)
        except wire.WireError as exc:
            raise ApiError(exc.code, exc.message) from None
        METRICS.counter("isoroll_txs_received_total").inc(len(raws))
        checked = await self.node.checkers.check_many([bytes(raw) for raw in raws])
        self.check_writable()
        results: list[Any] = [None] * len(raws)
        pending = []
        for i, item in enumerate(checked):
            try:
                tx = self.unpack_checked(item)
                self.check_duplicate(tx.tx_hash)
            except ApiError as exc:
                results[i] = wire.rejection_to_json(None, exc.code, exc.message)
                continue
            pending.append((i, tx, self.node.builder.submit(tx)))
        for i, tx, future in pending:
            tx_hash = tx.tx_hash
            try:
                results[i] = self.render_outcome(tx.record, await future)
            except RuleError as exc:
                results[i] = wire.rejection_to_json(tx_hash, exc.code, exc.message)
            except Fenced as exc:
                results[i] = wire.rejection_to_json(tx_hash, "not_the_sequencer", str(exc))
            except NodeFailed as exc:
                results[i] = wire.rejection_to_json(tx_hash, "not_ready", str(exc))
            except LogError as exc:
                results[i] = wire.rejection_to_json(tx_hash, "log_unavailable", str(exc))
        return {"receipts": results}

    async def post_tx(self, request: Request) -> Response:
        self.check_writable()
        return json_response(await self.handle_tx(await read_body(request, self.node.config.api_max_body_bytes)))

    async def post_txs(self, request: Request) -> Response:
        self.check_writable()
        return json_response(await self.handle_txs(await read_body(request, self.node.config.api_max_body_bytes)))

    # --- the hot path, without Starlette ----------------------------------------------
    async def asgi(self, scope, receive, send) -> None:
        """The ASGI app the server runs.  ``POST /v1/tx`` and ``POST /v1/txs`` are
        served here directly (same answers as the Starlette routes, without its
        per-request middleware, routing and Request/Response objects: about a
        quarter of the node's CPU per single-tx request); everything else goes to
        the Starlette app.  The dry run, the /v1/events replay and the L1 view
        are rate-limited per client first (429 with Retry-After)."""
        kind = classify_request(scope) if scope["type"] != "lifespan" else None
        if kind is not None:
            retry_after = self.rate_limiter.check(kind, client_address(scope), time.monotonic())
            if retry_after:
                await send_rate_limited(scope, send, kind, retry_after)
                return
        if scope["type"] == "http" and scope["method"] == "POST":
            if scope["path"] == "/v1/tx" and scope["query_string"] in (b"dryRun=1", b"dryRun=true"):
                scope = dict(scope, path="/v1/tx/dry-run")  # the dry run (api_apps), nothing written
            handler = self._fast_posts.get(scope["path"])
            if handler is not None:
                await self._serve_fast(handler, scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _serve_fast(self, handler, scope, receive, send) -> None:
        try:
            self.check_writable()
            body = await read_asgi_body(scope, receive, self.node.config.api_max_body_bytes)
            status, payload = 200, await handler(body)
        except ApiError as exc:
            status, payload = exc.status, {"error": {"code": exc.code, "message": exc.message}}
        except ClientGone:
            return
        except Exception as exc:  # noqa: BLE001 - answered like Starlette's handler does
            log.exception("internal error on %s", scope["path"])
            status = 500
            payload = {"error": {"code": "internal_error", "message": f"{type(exc).__name__}: {exc}"}}
        data = _json.encode(payload)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(data)).encode())]})
        await send({"type": "http.response.body", "body": data})

    # --- reads ----------------------------------------------------------------------
    async def settled(self) -> None:
        if self.node.builder is not None:
            await self.node.builder.settled()

    async def get_tx(self, request: Request) -> Response:
        raw = request.path_params["hash"]
        tx_hash = parse_hash_param(raw)
        await self.settled()
        receipt = self.node.chain.receipts.get(tx_hash)
        if receipt is None:
            raise ApiError("not_found", f"no tx with hash {raw} in the log (yet)")
        return json_response(self.render_receipt(receipt))

    async def get_status(self, request: Request) -> Response:
        await self.settled()
        node, chain = self.node, self.node.chain
        g = chain.state.globals
        return json_response({
            "chainId": node.ctx.preset.chain_id,
            "eip712Domain": node.domain.to_json(),
            "blockNumber": g.block_number,
            "blockHash": wire.hex0x(g.block_hash),
            "stateRoot": wire.hex0x(chain.state_root),
            "timestampMs": g.timestamp_ms,
            "mode": node.mode,
            "ready": node.ready,
            "fenced": node.fenced,
            "status": node.status_message,
            "sequencerId": node.config.sequencer_id,
            "preset": node.ctx.preset.name,
            "logOffset": chain.next_offset,
            "inboxCount": g.inbox_count,
            "withdrawalCount": g.withdrawal_count,
            **node.get_sequencer_status(),
        })

    async def get_account(self, request: Request) -> Response:
        address = parse_address_param(request.path_params["address"])
        await self.settled()
        state = self.node.chain.state
        account = state.accounts.get(address)
        if account is None:
            raise ApiError("not_found", f"account {request.path_params['address']} has never received funds")
        exchange = self.node.get_exchange()
        return json_response({
            "address": wire.hex0x(address),
            "collateral": account.collateral,
            "positions": self.describe_positions(address),
            "openOrders": exchange.open_orders(address) if exchange is not None else [],
            "triggers": describe_triggers(state, address, exchange),
            "scheduledCancel": describe_schedule(state, address, self.node.ctx.preset),
            "nonces": {"kept": len(account.nonces), "smallest": account.nonces[0] if account.nonces else None,
                       "largest": account.nonces[-1] if account.nonces else None,
                       "window": self.node.ctx.preset.nonce_window},
            "withdrawals": [{"index": w.index, "amount": w.amount, "block": w.block}
                            for w in state.withdrawals if w.account == address][-100:],
        })

    def describe_positions(self, address: bytes) -> list[dict]:
        """API.md positions: open ones, and flat ones that still hold margin
        (what a liquidation left; take it back with AdjustMargin)."""
        state = self.node.chain.state
        out = []
        for market_id, params in sorted(self.market_table().items()):
            position = state.positions.get((address, market_id))
            if position is None or (position.size == 0 and position.margin == 0):
                continue
            market = state.markets.get(market_id) or Market(market_id)
            out.append(views.describe_position(position, market, params))
        return out

    def market_table(self) -> dict:
        return get_markets(self.node.ctx)

    async def get_markets(self, request: Request) -> Response:
        await self.settled()
        state = self.node.chain.state
        return json_response([views.describe_market(params, state.markets.get(market_id))
                              for market_id, params in sorted(self.market_table().items())])

    async def get_block(self, request: Request) -> Response:
        number = request.path_params["number"]
        await self.settled()
        chain = self.node.chain
        info = chain.block_infos.get(number)
        if info is None:
            raise ApiError("not_found", f"no block {number}; the head is {chain.head_number}")
        message = chain.recent_messages.get(number)
        if message is None:
            message = await self.node.read_message(info.offset)
        block = decode_block(message)
        records, receipts = [], []
        for raw in block.records:
            h = compute_record_hash(raw)
            try:
                records.append(wire.record_to_json(decode_record(raw)))
            except (msgspec.DecodeError, msgspec.ValidationError):
                records.append({"type": "Undecodable", "bytes": wire.hex0x(bytes(raw))})
            r = chain.receipts.get(h)
            receipts.append(wire.receipt_to_json(r) if r is not None else None)
        return json_response({
            "number": info.number, "hash": wire.hex0x(info.hash), "parentHash": wire.hex0x(block.parent_hash),
            "timestampMs": block.timestamp_ms, "stateRoot": wire.hex0x(info.state_root) if info.state_root else None,
            "logOffset": info.offset, "records": records, "receipts": receipts})

    async def livez(self, request: Request) -> Response:
        return json_response({"live": True})

    async def readyz(self, request: Request) -> Response:
        node = self.node
        body = {"ready": node.ready, "mode": node.mode, "status": node.status_message}
        return json_response(body, 200 if node.ready else 503)

    async def metrics(self, request: Request) -> Response:
        return Response(METRICS.render(), media_type="text/plain; version=0.0.4")

    # --- stream ------------------------------------------------------------------------
    def publish(self, info, result) -> None:
        """Chain listener: fan a committed block out to the WebSocket clients."""
        if not self.streams:
            return
        events = []
        if info is not None:
            events.append({"type": "block", "number": info.number, "hash": wire.hex0x(info.hash),
                           "stateRoot": wire.hex0x(info.state_root) if info.state_root else None,
                           "timestampMs": info.timestamp_ms,
                           "txCount": info.tx_count})
        for receipt in result.receipts:
            events.append({"type": "receipt", **wire.receipt_to_json(receipt)})
        if info is not None:
            events += [{"type": "fill", "block": info.number, **fill}
                       for fill in self.node.fills.block_fills(info, result)]
            events += self.trading.book_events(info, result)
        payloads = [_json.encode(e) for e in events]
        for queue in list(self.streams):
            if queue.qsize() + len(payloads) > self.STREAM_BACKLOG:
                self.streams.discard(queue)
                queue.put_nowait(None)  # tells the writer this client fell behind
                continue
            for p in payloads:
                queue.put_nowait(p)

    async def stream(self, websocket: WebSocket) -> None:
        """Send events until the client leaves, falls behind, or the node stops.
        A reader task notices a client that went away even while no event is
        due (otherwise the handler would wait on the queue for ever and hold
        up the server's shutdown)."""
        await websocket.accept()
        queue: asyncio.Queue = asyncio.Queue()
        self.streams.add(queue)
        reader = asyncio.create_task(self._until_disconnect(websocket, queue))
        try:
            while True:
                payload = await queue.get()
                if payload is None:
                    if not reader.done():
                        await websocket.close(code=1013, reason="client too slow or node stopping; "
                                                                "reconnect and resume")
                    return
                await websocket.send_text(payload.decode())
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            reader.cancel()
            self.streams.discard(queue)

    async def _until_disconnect(self, websocket: WebSocket, queue: asyncio.Queue) -> None:
        try:
            while (await websocket.receive())["type"] != "websocket.disconnect":
                pass  # clients have nothing to say on this stream
        except Exception:  # any receive failure means the client is gone
            pass
        self.streams.discard(queue)
        queue.put_nowait(None)

    def close_streams(self) -> None:
        """End every stream (called when the node stops)."""
        for queue in list(self.streams):
            queue.put_nowait(None)
        self.streams.clear()
