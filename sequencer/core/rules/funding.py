"""The oracle price (k of n signers, monotonic time, jumps confirmed; it
recomputes the mark) and funding: a FundingTick moves the market's funding
index by ``rate * mark`` (rate within the cap; paused while the oracle is
stale); positions settle it when they next change
(sequencer.core.rules.positions.settle_funding)."""
from __future__ import annotations

import msgspec

from sequencer.core import eip712
from sequencer.core.markets import MarketParams
from sequencer.core.presets import MAX_INT64
from sequencer.core.records import FundingTick, OraclePrice
from sequencer.core.rules.base import (Context, RuleError, get_market, get_oracle_set, hex_address, require,
                                       require_fresh_price, require_market_params)
from sequencer.core.rules.mark import apply_oracle_price
from sequencer.core.signing import SignatureError
from sequencer.core.state import Market, State

replace = msgspec.structs.replace


def verify_oracle_quorum(r: OraclePrice, ctx: Context) -> None:
    if not ctx.verify_signatures:
        return
    oracle = get_oracle_set(ctx)
    try:
        digest = eip712.compute_digest(ctx.domain_separator, "OraclePrice", r)
    except ValueError as exc:  # a field outside its EIP-712 type: no oracle could have signed it
        raise RuleError("invalid_field", f"OraclePrice: {exc}") from None
    seen: set[bytes] = set()
    for signature in r.signatures:
        try:
            signer = ctx.recover(digest, bytes(signature))
        except SignatureError as exc:
            raise RuleError("bad_signature", f"oracle signature: {exc}") from None
        require(signer in oracle.signers, "bad_signature", f"{hex_address(signer)} is not an oracle signer")
        require(signer not in seen, "bad_signature", f"oracle signer {hex_address(signer)} signed twice")
        seen.add(signer)
    require(len(seen) >= oracle.quorum > 0, "no_quorum",
            f"{len(seen)} oracle signatures, {oracle.quorum} of {len(oracle.signers)} needed")


def process_oracle_price(state: State, r: OraclePrice, timestamp_ms: int, ctx: Context) -> None:
    """Apply a quorum-signed price and recompute the mark, or hold an
    unconfirmed jump pending (sequencer.core.rules.mark.apply_oracle_price)."""
    params = require_market_params(ctx, r.market)
    require(0 < r.price <= ctx.preset.max_amount, "invalid_price", f"oracle price {r.price} out of range")
    market = get_market(state, r.market)
    latest = max(market.oracle_time_ms, market.pending_oracle_time_ms)
    require(r.timestamp_ms > latest, "oracle_time_not_monotonic",
            f"oracle time {r.timestamp_ms} is not after the current {latest}")
    require(r.timestamp_ms <= timestamp_ms, "oracle_time_in_future",
            f"oracle time {r.timestamp_ms} is after block time {timestamp_ms}")
    verify_oracle_quorum(r, ctx)
    state.set_market(apply_oracle_price(market, r.price, r.timestamp_ms, timestamp_ms, params))


def get_due_funding_time(market: Market | None, params: MarketParams, timestamp_ms: int) -> int | None:
    """The funding boundary a FundingTick may settle at ``timestamp_ms``: the
    last interval boundary, when it is after the market's funding time and the
    oracle price is there and fresh (funding waits for a fresh one); else None."""
    if market is None or market.oracle_price == 0:
        return None
    boundary = timestamp_ms // params.funding_interval_ms * params.funding_interval_ms
    if boundary <= market.funding_time_ms or timestamp_ms - market.oracle_time_ms > params.oracle_max_age_ms:
        return None
    return boundary


def process_funding_tick(state: State, r: FundingTick, timestamp_ms: int, ctx: Context) -> None:
    params = require_market_params(ctx, r.market)
    require(abs(r.rate_ppm) <= params.funding_cap_ppm, "funding_rate_above_cap",
            f"|rate| {abs(r.rate_ppm)} ppm exceeds the cap {params.funding_cap_ppm} ppm")
    market = get_market(state, r.market)
    require(r.timestamp_ms % params.funding_interval_ms == 0, "funding_time_not_aligned",
            f"funding time {r.timestamp_ms} is not a multiple of the interval {params.funding_interval_ms} ms")
    require(market.funding_time_ms < r.timestamp_ms <= timestamp_ms, "funding_not_due",
            f"funding time {r.timestamp_ms} must be after {market.funding_time_ms} and not after block time")
    mark = require_fresh_price(market, params, timestamp_ms)
    index = market.funding_index + r.rate_ppm * mark
    require(-MAX_INT64 <= index <= MAX_INT64, "funding_index_overflow",
            "the funding index would leave the signed 64-bit range the log and snapshots encode")
    state.set_market(replace(market, funding_index=index, funding_time_ms=r.timestamp_ms))
