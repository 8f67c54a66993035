"""Endpoints for apps (docs/api.md): a dry run of a signed tx, the OpenAPI
document, and a resumable, filtered event stream.

- ``POST /v1/tx/dry-run`` — the body of ``POST /v1/tx``; answers the EIP-712
  digest, the signer the signature recovers, and the first rule that would
  refuse the tx against the head state (or the records it would make: a
  PlaceOrder's trades).  Nothing is written: the rules run on the live state
  under a snapshot that is reverted before the handler returns, with order
  books rebuilt for the occasion (the live books are not touched).
- ``GET /openapi.json`` — sequencer.node.openapi.
- WebSocket ``/v1/events?fromBlock=N&account=0x..`` — first a ``snapshot``
  event (the head, and the account when filtered), then the ``block``,
  ``receipt`` and ``fill`` events of blocks ``N..head`` read back from the log,
  then live ones.  With ``account`` only its receipts and fills are sent
  (``block`` events always, as progress marks).  A ``gap`` event names blocks
  the stream does not carry (older than ``REPLAY_BLOCKS`` behind the head, or
  missed by a client too slow to keep up, which is then disconnected): read
  them over HTTP (GET /v1/blocks/{n}) or reconnect with ``fromBlock``.
"""
from __future__ import annotations

import asyncio
import logging
import time

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from sequencer.core import eip712, wire
from sequencer.core.encoding import compute_record_hash, decode_block, decode_record, encode_record
from sequencer.core.matching import Exchange
from sequencer.core.rules.base import RuleError
from sequencer.core.signing import SignatureError, get_recover
from sequencer.node.api import ApiError, json_response, parse_address_param, read_body
from sequencer.node.openapi import get_openapi

log = logging.getLogger("isoroll.api")

REPLAY_BLOCKS = 10_000
"""Blocks a /v1/events client may ask to replay (older ones are a gap)."""
BACKLOG = 50_000
"""Events a /v1/events client may fall behind by before it is disconnected."""


class AppRoutes:
    def __init__(self, api) -> None:
        self.api = api
        self.node = api.node
        self.subscribers: set[asyncio.Queue] = set()
        self._openapi: bytes | None = None
        api.node.observe_chain(lambda chain: chain.listeners.append(self.on_block))

    def routes(self) -> list:
        return [Route("/v1/tx/dry-run", self.dry_run, methods=["POST"]),
                Route("/openapi.json", self.openapi),
                WebSocketRoute("/v1/events", self.events)]

    # --- dry run -----------------------------------------------------------------------
    async def dry_run(self, request: Request) -> Response:
        body = await read_body(request, self.node.config.api_max_body_bytes)
        try:
            record = wire.parse_tx(body)
        except wire.WireError as exc:
            raise ApiError(exc.code, exc.message) from None
        primary = eip712.get_primary_type(record)
        separator = eip712.compute_domain_separator(self.node.domain)
        try:
            digest = eip712.compute_digest(separator, primary, record)
        except ValueError as exc:
            raise ApiError("invalid_field", f"{primary}: {exc}") from None
        try:
            signer = get_recover(self.node.config.signature_backend)(digest, record.signature)
        except SignatureError:
            signer = None
        tx_hash = compute_record_hash(encode_record(record))
        await self.api.settled()
        error, records = self.check_rules(record, tx_hash, signer)
        return json_response({
            "type": primary, "hash": wire.hex0x(tx_hash), "digest": wire.hex0x(digest),
            "signer": wire.hex0x(signer) if signer is not None else None, "account": wire.hex0x(record.account),
            "signatureValid": signer == record.account, "ok": error is None,
            "error": None if error is None else {"code": error.code, "message": error.message},
            "records": [wire.record_to_json(r) for r in records], "written": False})

    def check_rules(self, record, tx_hash: bytes, signer: bytes | None) -> tuple[RuleError | None, list]:
        """The first rule that refuses ``record`` at the head, or the records it would
        make.  Synchronous from snapshot to revert: no block can interleave."""
        chain = self.node.chain
        if signer != record.account:
            return RuleError("bad_signature", "the signature does not recover the account (see `signer`); "
                                              "check the EIP-712 domain of GET /v1/status"), []
        known = chain.receipts.get(tx_hash)
        if known is not None:
            return RuleError("nonce_used", f"this exact tx is already in block {known.block}"), []
        state = chain.state
        exchange = Exchange.for_context(self.node.ctx)
        exchange.rebuild(state)
        timestamp_ms = max(state.globals.timestamp_ms, int(time.time() * 1000))  # as the next block's
        snapshot = state.snapshot()
        try:
            return None, exchange.admit(state, record, timestamp_ms, self.node.ctx)
        except RuleError as exc:
            return exc, []
        finally:
            state.revert(snapshot)

    async def openapi(self, request: Request) -> Response:
        if self._openapi is None:
            self._openapi = msgspec.json.encode(get_openapi())
        return Response(self._openapi, media_type="application/json")

    # --- events ------------------------------------------------------------------------
    def describe_block(self, info, block, receipts, records, fills) -> list[tuple[set[str], dict]]:
        """(accounts concerned, event) for one block: its block event, a receipt per
        record (with the record's type and account) and its fills."""
        out: list[tuple[set[str], dict]] = [(set(), {
            "type": "block", "number": info.number, "hash": wire.hex0x(info.hash),
            "stateRoot": wire.hex0x(info.state_root) if info.state_root else None,
            "timestampMs": info.timestamp_ms, "txCount": info.tx_count})]
        for receipt, record in zip(receipts, records):
            if receipt is None:
                continue
            event = {"type": "receipt", **wire.receipt_to_json(receipt)}
            who: set[str] = set()
            if record is not None:
                event["recordType"] = type(record).__name__
                account = getattr(record, "account", None)
                if account is not None:
                    who.add(wire.hex0x(account))
                    event["account"] = wire.hex0x(account)
            out.append((who, event))
        for fill in fills:
            out.append(({fill["maker"], fill["taker"]}, {"type": "fill", "block": info.number, **fill}))
        return out

    @staticmethod
    def decode_records(block) -> list:
        records = []
        for raw in block.records:
            try:
                records.append(decode_record(bytes(raw)))
            except (msgspec.DecodeError, msgspec.ValidationError):
                records.append(None)
        return records

    def on_block(self, info, result) -> None:
        """Chain listener: the block's events to every /v1/events client."""
        if not self.subscribers or info is None or result.block is None:
            return
        records = getattr(result, "records", None) or self.decode_records(result.block)
        events = self.describe_block(info, result.block, result.receipts, records,
                                     self.node.fills.block_fills(info, result))
        for queue in list(self.subscribers):
            if queue.qsize() + len(events) > BACKLOG:
                self.subscribers.discard(queue)
                queue.put_nowait(None)
                continue
            queue.put_nowait((info.number, events))

    async def replay(self, number: int) -> list[tuple[set[str], dict]]:
        chain = self.node.chain
        info = chain.block_infos.get(number)
        message = chain.recent_messages.get(number)
        if message is None:
            message = await self.node.read_message(info.offset)
        block = decode_block(message)
        receipts = [chain.receipts.get(compute_record_hash(bytes(raw))) for raw in block.records]
        return self.describe_block(info, block, receipts, self.decode_records(block),
                                   self.node.fills.extract(block, receipts))

    async def events(self, websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            params = websocket.query_params
            account = parse_address_param(params["account"]) if params.get("account") else None
            head = self.node.chain.head_number
            from_block = wire.parse_int(params.get("fromBlock", str(head + 1)), "fromBlock", 1, 2**63 - 1)
        except (ApiError, wire.WireError) as exc:
            await websocket.send_text(msgspec.json.encode({"type": "error", "code": exc.code,
                                                           "message": exc.message}).decode())
            await websocket.close(code=1008)
            return
        queue: asyncio.Queue = asyncio.Queue()
        self.subscribers.add(queue)  # before the snapshot: no block falls between the two
        wanted = None if account is None else wire.hex0x(account)
        reader = asyncio.create_task(self._until_disconnect(websocket, queue))
        try:
            await self.send(websocket, self.snapshot(account, head))
            first = max(from_block, head - REPLAY_BLOCKS + 1, 1)
            if first > from_block:
                await self.send(websocket, {"type": "gap", "fromBlock": from_block, "toBlock": first - 1,
                                            "reason": f"older than {REPLAY_BLOCKS} blocks behind the head: "
                                                      "read them with GET /v1/blocks/{n}"})
            for number in range(first, head + 1):
                await self.send_filtered(websocket, await self.replay(number), wanted)
            last = head
            while True:
                item = await queue.get()
                if item is None:
                    if not reader.done():
                        await self.send(websocket, {"type": "gap", "fromBlock": last + 1, "toBlock": None,
                                                    "reason": "the client fell behind or the node is stopping; "
                                                              f"reconnect with fromBlock={last + 1}"})
                        await websocket.close(code=1013)
                    return
                number, events = item
                if number <= last:
                    continue  # replayed already
                await self.send_filtered(websocket, events, wanted)
                last = number
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            reader.cancel()
            self.subscribers.discard(queue)

    def snapshot(self, account: bytes | None, head: int) -> dict:
        chain = self.node.chain
        out = {"type": "snapshot", "blockNumber": head, "stateRoot": wire.hex0x(chain.state_root), "account": None}
        a = chain.state.accounts.get(account) if account is not None else None
        if a is not None:
            out["account"] = {"address": wire.hex0x(account), "collateral": a.collateral,
                              "positions": self.api.describe_positions(account),
                              "openOrders": self.node.get_exchange().open_orders(account)}
        return out

    @staticmethod
    async def send(websocket: WebSocket, event: dict) -> None:
        await websocket.send_text(msgspec.json.encode(event).decode())

    async def send_filtered(self, websocket: WebSocket, events, wanted: str | None) -> None:
        for who, event in events:
            if wanted is None or event["type"] == "block" or wanted in who:
                await self.send(websocket, event)

    async def _until_disconnect(self, websocket: WebSocket, queue: asyncio.Queue) -> None:
        try:
            while (await websocket.receive())["type"] != "websocket.disconnect":
                pass
        except Exception:  # any receive failure means the client is gone
            pass
        self.subscribers.discard(queue)
        queue.put_nowait(None)


def routes(api) -> list:
    return AppRoutes(api).routes()
