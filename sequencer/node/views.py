"""The API's views of positions, markets and fills (GET /v1/accounts/{address},
GET /v1/markets, fills on the API and the WebSocket), from the core's margin
maths (sequencer.core.rules.margin)."""
from __future__ import annotations

from sequencer.core.markets import MarketParams
from sequencer.core.records import Trade
from sequencer.core.rules.margin import (compute_entry_price, compute_equity, compute_fee, compute_funding_owed,
                                         compute_liquidation_price, compute_maintenance, compute_notional,
                                         compute_unrealized_pnl)
from sequencer.core.state import Market, Order, Position, State
from sequencer.core.presets import PPM
from sequencer.core.rules.base import Context, RuleError
from sequencer.core.rules.vault import (VAULT_ADDRESS, compute_amount_for_shares, compute_vault_equity,
                                        get_total_shares, get_vault_positions)


def describe_position(position: Position, market: Market, params: MarketParams) -> dict:
    """The API.md position fields, integers in market units, valued at the
    committed mark (sequencer.core.rules.mark)."""
    mark = market.mark_price
    return {"market": params.id, "size": position.size, "margin": position.margin,
            "entryPrice": compute_entry_price(position, params),
            "unrealizedPnl": compute_unrealized_pnl(position, mark, params) if position.size else 0,
            "liquidationPrice": compute_liquidation_price(position, market, params),
            "fundingOwed": compute_funding_owed(position, market, params),
            "maintenanceMargin": compute_maintenance(position, mark, params),
            "equity": compute_equity(position, mark, market, params), "markPrice": mark}


def describe_market(params: MarketParams, market: Market | None) -> dict:
    """The API.md GET /v1/markets entry, with the units spelled out."""
    market = market or Market(params.id)
    return {"id": params.id, "symbol": params.symbol, "tickSize": params.tick_size, "stepSize": params.step_size,
            "baseDecimals": params.base_decimals, "oraclePrice": market.oracle_price,
            "oracleTimeMs": market.oracle_time_ms, "markPrice": market.mark_price,
            "basisEma": market.basis_ema, "lastTradePrice": market.last_trade_price,
            "pendingOraclePrice": market.pending_oracle_price, "initialMarginPpm": params.initial_margin_ppm,
            "maintenanceMarginPpm": params.maintenance_margin_ppm, "maxLeverage": params.max_leverage,
            "makerFeePpm": params.maker_fee_ppm, "takerFeePpm": params.taker_fee_ppm,
            "fundingIntervalMs": params.funding_interval_ms, "fundingCapPpm": params.funding_cap_ppm,
            "fundingIndex": market.funding_index, "openInterest": market.open_interest,
            "oracleMaxAgeMs": params.oracle_max_age_ms, "liquidationFeePpm": params.liquidation_fee_ppm,
            "partialLiquidationNotional": params.partial_liquidation_notional,
            "partialLiquidationPpm": params.partial_liquidation_ppm,
            "units": {"price": "quote units (USDC, 6 decimals) per whole base unit",
                      "size": f"base lots of 1e-{params.base_decimals} {params.symbol.split('-')[0]}",
                      "collateral": "quote units (USDC, 6 decimals)", "fractions": "parts per million"}}


def describe_fill(trade: Trade, maker: Order, params: MarketParams) -> dict:
    """A fill for the API and the WebSocket: who bought, the fees charged."""
    notional = compute_notional(trade.size, trade.price, params)
    return {"market": trade.market, "price": trade.price, "size": trade.size,
            "maker": "0x" + trade.maker.hex(), "makerNonce": trade.maker_nonce,
            "taker": "0x" + trade.taker.hex(), "takerNonce": trade.taker_nonce,
            "takerSide": "sell" if maker.is_buy else "buy", "notional": notional,
            "makerFee": compute_fee(notional, params.maker_fee_ppm),
            "takerFee": compute_fee(notional, params.taker_fee_ppm)}


def describe_vault(state: State, ctx: Context, markets: dict[int, MarketParams], address: bytes | None = None) -> dict:
    """GET /v1/vault: the backstop vault's collateral, equity, shares and
    positions at the head (marks at the head block's time; ``equity`` is null
    while a market it holds a position in has no fresh mark), and with
    ``address`` that holder's shares, lock-up and their value."""
    timestamp_ms = state.globals.timestamp_ms
    try:
        equity = compute_vault_equity(state, ctx, timestamp_ms)
    except RuleError:
        equity = None
    total = get_total_shares(state)
    account = state.accounts.get(VAULT_ADDRESS)
    preset = ctx.preset
    view = {"address": "0x" + VAULT_ADDRESS.hex(), "collateral": account.collateral if account else 0,
            "equity": None if equity is None else int(equity // 1), "totalShares": total,
            "sharePricePpm": None if equity is None else compute_amount_for_shares(PPM, equity, total),
            "positions": [describe_position(position, state.markets[market_id], markets[market_id])
                          for market_id, position in get_vault_positions(state, ctx) if market_id in markets],
            "lockupMs": preset.vault_lockup_ms, "minDeposit": preset.vault_min_deposit,
            "maxLeverage": preset.vault_max_leverage, "maxMarketSharePpm": preset.vault_max_market_share_ppm,
            "unwindIntervalMs": preset.vault_unwind_interval_ms, "unwindPpm": preset.vault_unwind_ppm}
    if address is not None:
        entry = state.vault_shares.get(address) if address != VAULT_ADDRESS else None
        shares = entry.shares if entry else 0
        view["holder"] = {"address": "0x" + address.hex(), "shares": shares,
                          "unlockMs": entry.unlock_ms if entry else 0,
                          "value": None if equity is None else compute_amount_for_shares(shares, equity, total)}
    return view
