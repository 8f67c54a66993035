# pragma version ~=0.4.1
"""
@title isoroll one-step fills (Vyper module, pure)
@notice One side of a fill and the close of a liquidated slice, on a position
    whose funding is already settled (onestep_market.settle_funding), so
    nothing is owed and the equity is (margin - cost) x S + size x price.
    The twins of sequencer/core/rules: trades.settle_fill and
    check_fill_bounds, positions.apply_close and close_and_release,
    liquidation.close_liquidated_slice, auction.compute_auction_price.
    Every function is pure: the caller reads the leaves and writes them.
    Used by onestep_auction.vy (the keeper's and the owner's sides of an
    AuctionBid); the same code serves a Trade's two sides.
"""
import onestep_market as mk

PPM: constant(int256) = 1_000_000
MAX_INT64: constant(int256) = 2**63 - 1


struct Fill:
    # one side of a fill (rules.trades.settle_fill)
    ok: bool
    position: mk.Position
    free: int256       # the account's free collateral after it (the fee taken)
    fee: int256
    long_change: int256  # the change of the open interest (the sum of long sizes)


struct Close:
    # a liquidated slice closed (rules.liquidation.close_liquidated_slice)
    ok: bool
    position: mk.Position
    fee: int256        # the liquidation fee, to the insurance fund
    long_change: int256


struct Released:
    ok: bool
    position: mk.Position
    free: int256


@internal
@pure
def equity_scaled(p: mk.Position, price: int256, scale: int256) -> int256:
    """S x equity at `price` of a settled position (rules.margin.compute_equity_scaled, nothing owed)."""
    return (p.margin - p.cost) * scale + p.size * price


@internal
@pure
def long_change(old_size: int256, new_size: int256) -> int256:
    return max(new_size, 0) - max(old_size, 0)


@internal
@pure
def apply_close(p: mk.Position, qty: int256, notional: int256) -> (mk.Position, int256):
    """rules.positions.apply_close: close `qty` lots for the account's signed
    `notional`; the cost removed is rounded up. Returns (position, realised)."""
    size: int256 = p.size
    removed: int256 = p.cost
    if qty != abs(size):
        removed = mk.ceil_div(p.cost * qty, abs(size))
    out: mk.Position = p
    if size > 0:
        out.size = size - qty
    else:
        out.size = size + qty
    out.cost = p.cost - removed
    return out, -notional - removed


@internal
@pure
def close_and_release(p: mk.Position, qty: int256, notional: int256, free: int256) -> Released:
    """rules.positions.close_and_release: the closed share of the margin and
    the realised PnL go to free collateral (never below 0)."""
    share: int256 = p.margin
    if qty != abs(p.size):
        share = mk.floor_div(p.margin * qty, abs(p.size))
    closed: mk.Position = empty(mk.Position)
    realised: int256 = 0
    closed, realised = self.apply_close(p, qty, notional)
    released: int256 = min(max(0, share + realised), max(0, p.margin + realised))
    closed.margin = p.margin + realised - released
    return Released(ok=closed.margin >= 0, position=closed, free=free + released)


@internal
@pure
def fill_bounds_ok(p: mk.Position, opening: int256, price: int256, mark: int256, params: mk.MarketParams) -> bool:
    """rules.trades.check_fill_bounds: no negative equity at the mark; an
    opening fill keeps the initial margin at the mark and at its price."""
    if p.size == 0:
        return True
    scale: int256 = convert(params.scale, int256)
    imf: int256 = convert(params.initial_margin_ppm, int256)
    equity: int256 = self.equity_scaled(p, mark, scale)
    if equity < 0:
        return False
    if opening == 0:
        return True
    if equity * PPM < abs(p.size) * mark * imf:
        return False
    return price == mark or self.equity_scaled(p, price, scale) * PPM >= abs(p.size) * price * imf


@internal
@pure
def settle_fill(p: mk.Position, collateral: int256, delta: int256, price: int256, leverage: int256, fee_ppm: int256,
                reduce_only: bool, mark: int256, params: mk.MarketParams) -> Fill:
    """rules.trades.settle_fill after its settle_funding: `delta` lots bought
    (> 0) or sold at `price`; the closing part releases margin and PnL, the
    opening part takes margin at `leverage`, then the fee."""
    out: Fill = Fill(ok=False, position=p, free=collateral, fee=0, long_change=0)
    scale: int256 = convert(params.scale, int256)
    sign: int256 = 1
    if delta < 0:
        sign = -1
    closing: int256 = 0
    if p.size != 0 and (p.size > 0) != (delta > 0):
        closing = min(abs(delta), abs(p.size))
    opening: int256 = abs(delta) - closing
    if reduce_only and opening != 0:
        return out
    pos: mk.Position = p
    free: int256 = collateral
    if closing != 0:
        if self.equity_scaled(pos, price, scale) < 0:
            return out
        r: Released = self.close_and_release(pos, closing, mk.floor_div(sign * closing * price, scale), free)
        if not r.ok:
            return out
        pos = r.position
        free = r.free
    if opening != 0:
        notional: int256 = opening * price // scale
        required: int256 = mk.ceil_div(notional, leverage)
        if free < required:
            return out
        pos.size += sign * opening
        pos.cost += sign * notional
        pos.margin += required
        free -= required
    fee: int256 = mk.ceil_div(abs(delta) * price // scale * fee_ppm, PPM)
    if free < fee or pos.margin < 0 or abs(pos.cost) > MAX_INT64:
        return out
    if not self.fill_bounds_ok(pos, opening, price, mark, params):
        return out
    return Fill(ok=True, position=pos, free=free - fee, fee=fee, long_change=self.long_change(p.size, pos.size))


@internal
@pure
def close_liquidated_slice(p: mk.Position, lots: int256, price: int256, mark: int256, params: mk.MarketParams) -> Close:
    """rules.liquidation.close_liquidated_slice: `lots` of a liquidated
    position closed at `price`, never beyond its bankruptcy price; the fee,
    capped by its margin and its equity at the mark, goes to the fund."""
    out: Close = Close(ok=False, position=p, fee=0, long_change=0)
    scale: int256 = convert(params.scale, int256)
    if self.equity_scaled(p, price, scale) < 0:
        return out
    gross: int256 = lots * price
    notional: int256 = mk.ceil_div(gross, scale)
    if p.size > 0:
        notional = -(gross // scale)
    closed: mk.Position = empty(mk.Position)
    realised: int256 = 0
    closed, realised = self.apply_close(p, lots, notional)
    margin: int256 = p.margin + realised
    if margin < 0:
        return out
    closed.margin = margin
    left: int256 = max(0, mk.floor_div(self.equity_scaled(closed, mark, scale), scale))
    fee: int256 = min(mk.ceil_div(abs(notional) * convert(params.liquidation_fee_ppm, int256), PPM), min(margin, left))
    closed.margin = margin - fee
    return Close(ok=True, position=closed, fee=fee, long_change=self.long_change(p.size, closed.size))


@internal
@pure
def auction_price(start_price: int256, end_price: int256, start_ms: int256, end_ms: int256, timestamp_ms: int256,
                  tick: int256) -> int256:
    """rules.auction.compute_auction_price: linear from the start price to
    the end price over the auction, rounded to the tick toward the start
    (up when a long is sold, down when a short is bought back)."""
    duration: int256 = end_ms - start_ms
    elapsed: int256 = min(max(0, timestamp_ms - start_ms), duration)
    numerator: int256 = start_price * duration + (end_price - start_price) * elapsed
    if end_price <= start_price:
        return mk.ceil_div(numerator, duration * tick) * tick
    return mk.floor_div(numerator, duration * tick) * tick
