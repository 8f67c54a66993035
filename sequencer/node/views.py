"""The API's views of positions, markets and fills (GET /v1/accounts/{address},
GET /v1/markets, fills on the API and the WebSocket), from the core's margin
maths (sequencer.core.rules.margin)."""
from __future__ import annotations

from sequencer.core.markets import MarketParams
from sequencer.core.records import Trade
from sequencer.core.rules.margin import (compute_entry_price, compute_equity, compute_fee, compute_funding_owed,
                                         compute_liquidation_price, compute_maintenance, compute_notional,
                                         compute_unrealized_pnl)
from sequencer.core.state import Market, Order, Position


def describe_position(position: Position, market: Market, params: MarketParams) -> dict:
    """The API.md position fields, integers in market units (mark = oracle price)."""
    mark = market.oracle_price
    return {"market": params.id, "size": position.size, "margin": position.margin,
            "entryPrice": compute_entry_price(position, params),
            "unrealizedPnl": compute_unrealized_pnl(position, mark, params) if position.size else 0,
            "liquidationPrice": compute_liquidation_price(position, market, params),
            "fundingOwed": compute_funding_owed(position, market, params),
            "maintenanceMargin": compute_maintenance(position, mark, params),
            "equity": compute_equity(position, mark, market, params)}


def describe_market(params: MarketParams, market: Market | None) -> dict:
    """The API.md GET /v1/markets entry, with the units spelled out."""
    market = market or Market(params.id)
    return {"id": params.id, "symbol": params.symbol, "tickSize": params.tick_size, "stepSize": params.step_size,
            "baseDecimals": params.base_decimals, "oraclePrice": market.oracle_price,
            "oracleTimeMs": market.oracle_time_ms, "initialMarginPpm": params.initial_margin_ppm,
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
