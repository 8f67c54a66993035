"""The API's OpenAPI 3.1 document (served at GET /openapi.json), generated from
the msgspec types below with ``msgspec.json.schema_components``.

The types describe what the node answers (tests/integration/test_apps_api.py
decodes real answers with them, so a field renamed in a handler and not here
fails a test).  They are for the document only; the handlers build their
answers as they did before.  Fields an answer may add later are allowed
(no ``forbid_unknown_fields``), as API.md promises.
"""
from __future__ import annotations

from typing import Any

import msgspec


class _Out(msgspec.Struct, rename="camel", kw_only=True):
    pass


class ErrorDetail(_Out):
    code: str
    message: str


class ErrorBody(_Out):
    """Every 4xx/5xx answer."""
    error: ErrorDetail


class TxRequest(_Out):
    """An EIP-712 signed tx: ``type`` is the primary type (Transfer, Withdraw,
    AdjustMargin, PlaceOrder, CancelOrder, PlaceTrigger, ModifyOrder, ScheduleCancel, ...; docs/signing.md);
    integers as numbers or decimal strings."""
    type: str
    message: dict[str, Any]
    signature: str


class TxBatchRequest(_Out):
    txs: list[TxRequest]


class OraclePriceRequest(_Out):
    market: int | str
    price: int | str
    timestamp: int | str
    signatures: list[str]


class Fill(_Out):
    market: int
    price: int
    size: int
    maker: str
    maker_nonce: int
    taker: str
    taker_nonce: int
    taker_side: str
    notional: int
    maker_fee: int
    taker_fee: int
    block: int
    index: int
    timestamp_ms: int


class OrderStatus(_Out):
    market: int
    nonce: int
    status: str
    size: int
    filled: int


class Receipt(_Out):
    hash: str | None
    block: int | None
    index: int | None
    status: str
    error: str | None
    state_root: str | None = None
    code: str | None = None
    order: OrderStatus | None = None
    fills: list[Fill] | None = None
    liquidations: list[dict[str, Any]] | None = None


class ReceiptBatch(_Out):
    receipts: list[Receipt]


class Domain(_Out):
    name: str
    version: str
    chain_id: int
    verifying_contract: str


class Status(_Out):
    chain_id: int
    eip712_domain: Domain
    block_number: int
    block_hash: str
    state_root: str
    timestamp_ms: int
    mode: str
    ready: bool
    fenced: bool
    status: str
    sequencer_id: str
    preset: str
    log_offset: int
    inbox_count: int
    withdrawal_count: int


class Position(_Out):
    market: int
    size: int
    margin: int
    entry_price: int
    unrealized_pnl: int
    liquidation_price: int
    funding_owed: int
    maintenance_margin: int
    equity: int


class OpenOrder(_Out):
    market: int
    nonce: int
    is_buy: bool
    price: int
    remaining: int
    expiry: int
    reserved: int


class TriggerOrder(_Out):
    """A pending stop-loss / take-profit: it fires when the mark crosses ``trigger_price``."""
    market: int
    nonce: int
    is_buy: bool
    kind: str
    trigger_price: int
    fires_when_mark: str
    price: int
    size: int
    leverage: int
    reduce_only: bool
    placed_ms: int


class ScheduledCancel(_Out):
    """The dead-man's switch: every order and trigger is cancelled at ``cancel_at_ms``."""
    cancel_at_ms: int | None
    runs_today: int
    runs_left_today: int
    min_delay_ms: int
    pending_triggers: int
    max_pending_triggers: int


class Account(_Out):
    address: str
    collateral: int
    positions: list[Position]
    open_orders: list[OpenOrder]
    nonces: dict[str, Any]
    withdrawals: list[dict[str, Any]]
    triggers: list[TriggerOrder] = []
    scheduled_cancel: ScheduledCancel | None = None


class Market(_Out):
    id: int
    symbol: str
    tick_size: int
    step_size: int
    base_decimals: int
    oracle_price: int
    oracle_time_ms: int
    initial_margin_ppm: int
    maintenance_margin_ppm: int
    max_leverage: int
    maker_fee_ppm: int
    taker_fee_ppm: int
    funding_interval_ms: int
    funding_cap_ppm: int
    funding_index: int
    open_interest: int
    units: dict[str, str]


class Book(_Out):
    """Levels ``[price, size, orders]``, best first."""
    market: int
    bids: list[tuple[int, int, int]]
    asks: list[tuple[int, int, int]]
    symbol: str
    block_number: int
    oracle_price: int


class Block(_Out):
    number: int
    hash: str
    parent_hash: str
    timestamp_ms: int
    state_root: str | None
    log_offset: int
    records: list[dict[str, Any]]
    receipts: list[Receipt | None]


class Candles(_Out):
    """``candles``: ``[startMs, open, high, low, close, volume]`` rows, oldest first."""
    market: int
    interval: str
    columns: list[str]
    candles: list[tuple[int, int, int, int, int, int]]


class MarketTrade(_Out):
    market: int
    price: int
    size: int
    taker_side: str | None
    block: int
    index: int
    timestamp_ms: int


class Prices(_Out):
    """Oracle (= mark) prices ``[timestampMs, price]``, oldest first."""
    market: int
    columns: list[str]
    prices: list[tuple[int, int]]


class FundingTick(_Out):
    market: int
    rate_ppm: int
    timestamp_ms: int
    block: int
    funding_index: int


class Funding(_Out):
    market: int
    interval_ms: int
    last_funding_ms: int
    next_funding_ms: int
    last_rate_ppm: int | None
    ticks: list[FundingTick]


class FillPage(_Out):
    """Newest first; ``next`` is the cursor for ``?before=`` (null on the last page)."""
    items: list[Fill]
    next: str | None


class FundingPayment(_Out):
    """What one position accrued at one funding tick (> 0: it paid)."""
    market: int
    size: int
    rate_ppm: int
    payment: int
    timestamp_ms: int
    block: int


class FundingPage(_Out):
    items: list[FundingPayment]
    next: str | None


class InsuranceChange(_Out):
    """One change of the insurance fund within a block: ``kind`` is ``fee_share``
    (its share of the block's trading fees), ``liquidation`` (liquidation fees
    minus bad debt paid, net) or ``funding_dust`` (funding remainders swept in);
    ``amount`` signed, ``balance`` after it (quote units)."""
    block: int
    index: int
    timestamp_ms: int
    kind: str
    amount: int
    balance: int


class Insurance(_Out):
    """The fund's balance and its newest changes."""
    balance: int
    changes: list[InsuranceChange]


class InsurancePage(_Out):
    """The fund's balance and its changes, newest first; ``next`` is the cursor for
    ``?before=``; ``history_from_block`` is 0 when the history is complete from
    genesis (above 0 while the node rebuilds what came before its snapshot)."""
    balance: int
    history_from_block: int
    items: list[InsuranceChange]
    next: str | None


class DryRun(_Out):
    """What ``POST /v1/tx/dry-run`` found; nothing was written."""
    type: str
    hash: str
    digest: str
    signer: str | None
    account: str
    signature_valid: bool
    ok: bool
    error: ErrorDetail | None
    records: list[dict[str, Any]]
    written: bool


class DevAccount(_Out):
    address: str
    key: str


JSON_OBJECT = dict[str, Any]

# (method, path, summary, request body type or None, answer type, query parameters)
ENDPOINTS: list[tuple[str, str, str, Any, Any, tuple[str, ...]]] = [
    ("post", "/v1/tx", "Submit one signed tx; answered once its block is committed", TxRequest, Receipt, ()),
    ("post", "/v1/txs", "Submit signed txs, each admitted or refused alone", TxBatchRequest, ReceiptBatch, ()),
    ("post", "/v1/tx/dry-run", "Check a signed tx against the head state without writing it (also "
     "POST /v1/tx?dryRun=1)", TxRequest, DryRun, ()),
    ("get", "/v1/tx/{hash}", "A receipt", None, Receipt, ()),
    ("get", "/v1/status", "Chain, EIP-712 domain, head", None, Status, ()),
    ("get", "/v1/markets", "The markets with their units and oracle prices", None, list[Market], ()),
    ("get", "/v1/markets/{id}", "One market", None, Market, ()),
    ("get", "/v1/markets/{id}/book", "Aggregated order book", None, Book, ("depth",)),
    ("get", "/v1/markets/{id}/candles", "OHLC candles from trades", None, Candles, ("interval", "limit")),
    ("get", "/v1/markets/{id}/trades", "Recent trades, newest first", None, list[MarketTrade], ("limit",)),
    ("get", "/v1/markets/{id}/prices", "Oracle (mark) prices", None, Prices, ("limit",)),
    ("get", "/v1/markets/{id}/funding", "Funding ticks and the next funding time", None, Funding, ("limit",)),
    ("post", "/v1/oracle", "An oracle price co-signed by k of n signers", OraclePriceRequest, Receipt, ()),
    ("get", "/v1/accounts/{address}", "Collateral, positions, open orders", None, Account, ()),
    ("get", "/v1/accounts/{address}/orders", "Open orders", None, list[OpenOrder], ("market",)),
    ("get", "/v1/accounts/{address}/fills", "Recent fills, newest first", None, list[Fill], ("limit",)),
    ("get", "/v1/accounts/{address}/history/fills", "Fills, paginated", None, FillPage, ("limit", "before")),
    ("get", "/v1/accounts/{address}/history/funding", "Funding payments, paginated", None, FundingPage,
     ("limit", "before")),
    ("get", "/v1/insurance", "The insurance fund's balance and its newest changes", None, Insurance, ("limit",)),
    ("get", "/v1/insurance/history", "The insurance fund's balance and every change of it, paginated", None,
     InsurancePage, ("limit", "before")),
    ("get", "/v1/vault", "The backstop vault: equity, shares, positions; ?address= adds a holder's shares", None,
     JSON_OBJECT, ("address",)),
    ("get", "/v1/blocks/{number}", "A block with its records and receipts", None, Block, ()),
    ("get", "/v1/proofs/account/{address}", "Merkle proofs of an account (node with L1)", None, JSON_OBJECT,
     ("block",)),
    ("get", "/v1/proofs/withdrawal/{hash}", "A withdrawal's proof and claim arguments", None, JSON_OBJECT, ()),
    ("get", "/v1/l1", "The bridge: outputs, inbox, forced requests, escapes (node with L1)", None, JSON_OBJECT, ()),
    ("get", "/v1/l1/accounts/{address}", "An account's withdrawals and their L1 state", None, JSON_OBJECT, ()),
    ("get", "/v1/dev/accounts", "Dev accounts with their keys (devnet preset only)", None, list[DevAccount], ()),
]

STREAMS = {
    "/v1/stream": "WebSocket: block, receipt, fill and book events as blocks commit (docs/api.md)",
    "/v1/events": "WebSocket: a snapshot, then the events from ?fromBlock=, filtered by ?account=, "
                  "with gap events (docs/api.md)",
}


def get_openapi(version: str = "1") -> dict:
    answer_types = [t for *_, request, answer, _ in ENDPOINTS for t in (request, answer) if t is not None]
    schemas, components = msgspec.json.schema_components(
        answer_types + [ErrorBody], ref_template="#/components/schemas/{name}")
    by_type = dict(zip(answer_types + [ErrorBody], schemas))
    paths: dict[str, dict] = {}
    for method, path, summary, request, answer, query in ENDPOINTS:
        op: dict[str, Any] = {
            "summary": summary,
            "parameters": [{"name": name[1:-1], "in": "path", "required": True, "schema": {"type": "string"}}
                           for name in path.split("/") if name.startswith("{")]
            + [{"name": name, "in": "query", "required": False, "schema": {"type": "string"}} for name in query],
            "responses": {
                "200": {"description": "OK", "content": {"application/json": {"schema": by_type[answer]}}},
                "default": {"description": "an error (docs/api.md lists the codes)",
                            "content": {"application/json": {"schema": by_type[ErrorBody]}}}}}
        if request is not None:
            op["requestBody"] = {"required": True, "content": {"application/json": {"schema": by_type[request]}}}
        paths.setdefault(path, {})[method] = op
    for path, text in STREAMS.items():
        paths[path] = {"get": {"summary": text, "responses": {"101": {"description": "WebSocket upgrade"}}}}
    return {"openapi": "3.1.0",
            "info": {"title": "isoroll node API", "version": version,
                     "description": "The HTTP and WebSocket API of an isoroll node: docs/api.md, API.md."},
            "paths": paths, "components": {"schemas": components}}
