"""What every rule shares: the error a rule raises, the context it reads, and
the checks common to user-signed records (expiry, signature, nonce).

A rule is ``process_*(state, record, timestamp_ms, ctx) -> None`` that either
applies the record or raises ``RuleError`` (sequencer.core.transition reverts
what it half wrote and turns the error into a failed receipt).
"""
from __future__ import annotations

from typing import Callable

import msgspec

from sequencer.core import eip712
from sequencer.core.markets import ORACLE_SETS, MarketParams, OracleSet, get_market_table
from sequencer.core.nonces import is_nonce_usable, record_nonce
from sequencer.core.presets import SCHEMA_VERSION, Preset
from sequencer.core.records import Record
from sequencer.core.signing import SignatureError
from sequencer.core.state import Account, Market, State

Rule = Callable[[State, Record, int, "Context"], None]


class RuleError(Exception):
    """A record breaks a protocol rule.  ``code`` is snake_case for the API."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class TradeError(RuleError):
    """A Trade rejected because of one side; ``side`` is "maker", "taker" or ""."""

    def __init__(self, side: str, code: str, message: str) -> None:
        super().__init__(code, f"{side} {message}" if side else message)
        self.side = side


class Context(msgspec.Struct, frozen=True):
    """What the rules need besides the state: protocol constants and the
    signature check.  ``verify_signatures=False`` trusts the log (fast replay
    of a log this operator wrote); verifiers keep it on."""
    preset: Preset
    domain_separator: bytes
    recover: Callable[[bytes, bytes], bytes]
    verify_signatures: bool = True
    markets: dict = msgspec.field(default_factory=dict)
    """Market id -> sequencer.core.markets.MarketParams; empty means the
    preset's table (``preset.markets``)."""
    oracle_signers: tuple[bytes, ...] = ()
    """OraclePrice signer addresses; empty means the preset's signer set."""
    oracle_quorum: int = 0
    """k of ``oracle_signers`` (used only when oracle_signers is set)."""
    schema_version: int = SCHEMA_VERSION
    """Selects the rule table (sequencer.core.rules.table.RULE_TABLES)."""


# --- helpers -----------------------------------------------------------------

def hex_address(address: bytes) -> str:
    return "0x" + address.hex()


def get_account_or_empty(state: State, address: bytes) -> Account:
    return state.accounts.get(address) or Account()


def require(condition: bool, code: str, message: str) -> None:
    if not condition:
        raise RuleError(code, message)


def require_side(condition: bool, side: str, code: str, message: str) -> None:
    if not condition:
        raise TradeError(side, code, message)


def require_amount(amount: int, ctx: Context, name: str = "amount") -> None:
    if not 0 < amount <= ctx.preset.max_amount:
        raise RuleError("invalid_amount", f"{name} must be a positive integer no larger than "
                                          f"{ctx.preset.max_amount}, got {amount}")


# --- configuration lookups ------------------------------------------------------

def get_market_params(ctx: Context, market_id: int) -> MarketParams | None:
    return (ctx.markets or get_market_table(ctx.preset.markets)).get(market_id)


def require_market_params(ctx: Context, market_id: int) -> MarketParams:
    params = get_market_params(ctx, market_id)
    if params is None:
        raise RuleError("unknown_market", f"market {market_id} is not configured; GET /v1/markets lists them")
    return params


def get_oracle_set(ctx: Context) -> OracleSet:
    if ctx.oracle_signers:
        return OracleSet(tuple(ctx.oracle_signers), ctx.oracle_quorum)
    return ORACLE_SETS[ctx.preset.markets]


def get_market(state: State, market_id: int) -> Market:
    return state.markets.get(market_id) or Market(market_id)


def require_fresh_price(market: Market, params: MarketParams, timestamp_ms: int) -> int:
    """The committed mark (``Market.mark_price``: the median of the oracle, the
    oracle plus the basis EMA and the last trade, sequencer.core.rules.mark),
    refusing it while there is no oracle price or the applied one is stale: no
    fill, liquidation, funding tick or margin withdrawal on a stale oracle."""
    if market.oracle_price <= 0 or market.mark_price <= 0:
        raise RuleError("no_oracle_price", f"market {market.id} has no oracle price yet")
    age = timestamp_ms - market.oracle_time_ms
    if age > params.oracle_max_age_ms:
        raise RuleError("stale_oracle_price",
                        f"market {market.id} oracle price is {age} ms old, the limit is {params.oracle_max_age_ms} ms")
    return market.mark_price


# --- checks common to user-signed records ----------------------------------

def verify_signer(record: Record, domain_separator: bytes, recover: Callable[[bytes, bytes], bytes],
                  hint: str) -> None:
    """Raise RuleError unless ``record.signature`` is the account's EIP-712
    signature under ``domain_separator``; ``hint`` ends the mismatch message.
    The rules and the stateless tx check (sequencer.core.txcheck) both use it."""
    try:
        digest = eip712.compute_digest(domain_separator, eip712.get_primary_type(record), record)
    except ValueError as exc:  # a field outside its EIP-712 type: no wallet could have signed it
        raise RuleError("invalid_field", f"{type(record).__name__}: {exc}") from None
    try:
        signer = recover(digest, record.signature)
    except SignatureError as exc:
        raise RuleError("bad_signature", str(exc)) from None
    if signer != record.account:
        raise RuleError("bad_signature", f"signature recovers {hex_address(signer)}, not the account "
                                         f"{hex_address(record.account)}; {hint}")


SIGNER_HINT = ("check the EIP-712 domain (GET /v1/status eip712Domain: chainId and verifyingContract), "
               "the primary type and every message field")


def verify_user_signature(record: Record, ctx: Context) -> None:
    if ctx.verify_signatures:
        verify_signer(record, ctx.domain_separator, ctx.recover, SIGNER_HINT)


def process_expiry(record: Record, timestamp_ms: int, ctx: Context) -> None:
    # Plain ifs on the hot path: the messages are only built when a check fails.
    if record.expiry < timestamp_ms:
        raise RuleError("expired", f"tx expired at {record.expiry} ms, block time is {timestamp_ms} ms")
    if record.expiry > timestamp_ms + ctx.preset.max_expiry_ahead_ms:
        raise RuleError("expiry_too_far", f"expiry {record.expiry} ms is more than "
                        f"{ctx.preset.max_expiry_ahead_ms} ms after block time {timestamp_ms}")


def process_nonce(state: State, record: Record, ctx: Context) -> Account:
    """Check the nonce is usable, record it, and return the updated account."""
    account = get_account_or_empty(state, record.account)
    window = ctx.preset.nonce_window
    ok, why = is_nonce_usable(account.nonces, record.nonce, window)
    if not ok:
        raise RuleError("nonce_used", why)
    return msgspec.structs.replace(account, nonces=record_nonce(account.nonces, record.nonce, window))


def process_user_preamble(state: State, record: Record, timestamp_ms: int, ctx: Context) -> Account:
    process_expiry(record, timestamp_ms, ctx)
    verify_user_signature(record, ctx)
    return process_nonce(state, record, ctx)
