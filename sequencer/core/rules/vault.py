"""The backstop vault (issue 10; Hyperliquid's HLP, dYdX's MegaVault,
Lighter's LLP): anyone deposits collateral for shares and redeems them after
a lock-up; the vault takes positions over from the liquidation ladder with
its own margin and earns the liquidation fees; the sequencer unwinds its
positions into the book over time.

The vault is an ordinary L2 account at ``VAULT_ADDRESS`` (free collateral,
isolated positions, liquidatable like any other), plus the share table
``State.vault_shares`` (depositor -> shares and lock-up end; the total under
``VAULT_ADDRESS``), committed as leaves of kind 6 (prover.keys.VAULT_SHARE).

Share price (ERC-4626 with a virtual share and a virtual quote unit, as
OpenZeppelin's defence against the first-depositor donation attack, plus a
minimum deposit, ``Preset.vault_min_deposit``):

    equity E = vault free collateral + sum over its positions of (margin -
               funding owed + size x mark / S - cost), exact (a rational)
    deposit a:   shares = floor(a x (T + 1) / (E + 1))
    redeem s:    amount = floor(s x (E + 1) / (T + 1))

Both round against the actor, so (E + 1) / (T + 1), the value of one share,
never falls on a deposit or a withdrawal.  docs/engine.md "Backstop vault".
"""
from __future__ import annotations

from fractions import Fraction

import msgspec

from sequencer.core.encoding import encode_record
from sequencer.core.hashing import keccak
from sequencer.core.markets import MarketParams, get_market_table
from sequencer.core.presets import MAX_INT64, PPM
from sequencer.core.records import VaultDeposit, VaultUnwind, VaultWithdraw
from sequencer.core.rules.base import (Context, RuleError, get_account_or_empty, get_market, get_market_params,
                                       process_user_preamble, require, require_amount, require_fresh_price,
                                       require_market_params)
from sequencer.core.rules.positions import absorb_funding_deficit
from sequencer.core.rules.margin import (ceil_div, compute_equity_scaled, compute_fee, compute_long_change,
                                         is_initial_margin_kept)
from sequencer.core.rules.orders import IMMEDIATE_OR_CANCEL
from sequencer.core.rules.positions import (INSURANCE_ADDRESS, add_insurance, add_open_interest, apply_close,
                                            close_and_release, get_position, settle_funding)
from sequencer.core.state import Order, Position, State, VaultShare

replace = msgspec.structs.replace

VAULT_ADDRESS = bytes(19) + b"\x0a"
"""The vault's L2 account (no key signs for it: only these rules move its collateral)."""
VIRTUAL_SHARES = 1
VIRTUAL_ASSETS = 1
"""The virtual share and quote unit of the share price (see the module docstring)."""


# --- reading the vault -------------------------------------------------------------------

def get_total_shares(state: State) -> int:
    entry = state.vault_shares.get(VAULT_ADDRESS)
    return entry.shares if entry else 0


def get_vault_positions(state: State, ctx: Context) -> list[tuple[int, Position]]:
    """The vault's positions with something in them, by market id (a lookup
    per configured market, not a scan of every position)."""
    out = []
    for market_id in sorted(ctx.markets or get_market_table(ctx.preset.markets)):
        position = state.positions.get((VAULT_ADDRESS, market_id))
        if position is not None and (position.size or position.margin or position.cost):
            out.append((market_id, position))
    return out


def compute_vault_equity(state: State, ctx: Context, timestamp_ms: int) -> Fraction:
    """Free collateral plus every position's equity at its mark, exactly.
    Raises RuleError (``no_oracle_price`` / ``stale_oracle_price``) when a
    market the vault holds a position in has no fresh mark: the vault cannot
    be valued then, so no share changes hands."""
    equity = Fraction(get_account_or_empty(state, VAULT_ADDRESS).collateral)
    for market_id, position in get_vault_positions(state, ctx):
        params = require_market_params(ctx, market_id)
        market = get_market(state, market_id)
        mark = require_fresh_price(market, params, timestamp_ms) if position.size else 0
        equity += Fraction(compute_equity_scaled(position, mark, market, params), params.scale)
    return equity


def compute_shares_for_deposit(amount: int, equity: Fraction, total: int) -> int:
    """floor(amount x (T + 1) / (E + 1)): rounded against the depositor."""
    return int(amount * (total + VIRTUAL_SHARES) // (equity + VIRTUAL_ASSETS))


def compute_amount_for_shares(shares: int, equity: Fraction, total: int) -> int:
    """floor(shares x (E + 1) / (T + 1)): rounded against the withdrawer."""
    return int(shares * (equity + VIRTUAL_ASSETS) // (total + VIRTUAL_SHARES))


def add_shares(state: State, address: bytes, delta: int, unlock_ms: int | None = None) -> None:
    """Change a depositor's shares and the total by ``delta`` (an emptied entry is deleted)."""
    entry = state.vault_shares.get(address) or VaultShare()
    shares = entry.shares + delta
    entry = replace(entry, shares=shares, unlock_ms=entry.unlock_ms if unlock_ms is None else unlock_ms)
    state.set_vault_share(address, entry if shares else None)
    total = get_total_shares(state) + delta
    state.set_vault_share(VAULT_ADDRESS, VaultShare(shares=total) if total else None)


def move_collateral(state: State, source: bytes, destination: bytes, amount: int) -> None:
    giver = get_account_or_empty(state, source)
    state.set_account(source, replace(giver, collateral=giver.collateral - amount))
    taker = get_account_or_empty(state, destination)
    state.set_account(destination, replace(taker, collateral=taker.collateral + amount))


# --- deposit and withdraw (user-signed) ----------------------------------------------------

def process_vault_deposit(state: State, r: VaultDeposit, timestamp_ms: int, ctx: Context) -> None:
    """Move ``amount`` of the account's free collateral into the vault for
    shares; the account's whole holding is locked for the lock-up from now."""
    require_amount(r.amount, ctx)
    require(r.amount >= ctx.preset.vault_min_deposit, "vault_deposit_too_small",
            f"a vault deposit must be at least {ctx.preset.vault_min_deposit}, got {r.amount}")
    require(0 <= r.min_shares <= MAX_INT64, "invalid_amount", f"min_shares must be within 0..{MAX_INT64}")
    require(r.account not in (VAULT_ADDRESS, INSURANCE_ADDRESS), "invalid_address",
            "the vault and the insurance fund hold no shares")
    account = process_user_preamble(state, r, timestamp_ms, ctx)
    require(account.collateral >= r.amount, "insufficient_collateral",
            f"free collateral {account.collateral} is less than the amount {r.amount}")
    equity, total = compute_vault_equity(state, ctx, timestamp_ms), get_total_shares(state)
    require(equity + VIRTUAL_ASSETS > 0, "vault_insolvent", "the vault's equity is not positive: no deposits")
    shares = compute_shares_for_deposit(r.amount, equity, total)
    require(shares > 0, "vault_deposit_too_small", f"{r.amount} buys no whole share at the vault's equity per share")
    require(shares >= r.min_shares, "vault_slippage", f"the deposit buys {shares} shares, fewer than "
                                                      f"min_shares {r.min_shares}")
    require(total + shares <= MAX_INT64, "vault_shares_overflow", "the vault's total shares would leave 64 bits")
    state.set_account(r.account, account)  # the nonce
    move_collateral(state, r.account, VAULT_ADDRESS, r.amount)
    add_shares(state, r.account, shares, timestamp_ms + ctx.preset.vault_lockup_ms)


def process_vault_withdraw(state: State, r: VaultWithdraw, timestamp_ms: int, ctx: Context) -> None:
    """Redeem ``shares`` for free collateral at the vault's equity per share,
    once the lock-up has ended and if the vault's free collateral can pay."""
    require_amount(r.shares, ctx, "shares")
    require(0 <= r.min_amount <= MAX_INT64, "invalid_amount", f"min_amount must be within 0..{MAX_INT64}")
    account = process_user_preamble(state, r, timestamp_ms, ctx)
    entry = state.vault_shares.get(r.account) if r.account != VAULT_ADDRESS else None
    held = entry.shares if entry else 0
    require(held >= r.shares, "insufficient_shares", f"the account holds {held} vault shares, not {r.shares}")
    require(timestamp_ms >= entry.unlock_ms, "vault_locked",
            f"the shares are locked until {entry.unlock_ms} ms (block time {timestamp_ms} ms)")
    equity, total = compute_vault_equity(state, ctx, timestamp_ms), get_total_shares(state)
    amount = compute_amount_for_shares(r.shares, equity, total)
    require(amount > 0, "vault_withdraw_too_small", f"{r.shares} shares are worth nothing at the vault's equity")
    require(amount >= r.min_amount, "vault_slippage", f"the shares pay {amount}, less than min_amount {r.min_amount}")
    free = get_account_or_empty(state, VAULT_ADDRESS).collateral
    require(amount <= free, "vault_illiquid", f"the vault's free collateral {free} cannot pay {amount} now "
                                              "(the rest is margin of its positions); try fewer shares or later")
    state.set_account(r.account, account)  # the nonce
    move_collateral(state, VAULT_ADDRESS, r.account, amount)
    add_shares(state, r.account, -r.shares)


# --- takeover (the liquidation ladder's step 3, policy book+vault) ---------------------------

def process_vault_takeover(state: State, ctx: Context, address: bytes, position: Position, qty: int, mark: int,
                           params: MarketParams, *, absorb_deficit: bool) -> int:
    """The vault takes up to ``qty`` lots of the liquidated position over at
    the mark with its own margin, within its limits; returns the lots taken
    (a step multiple; 0 with nothing written).  The liquidated account
    closes them at the mark rounded against it, its fee (capped by the
    margin left) goes to the vault, a slice's bad debt is paid by the
    insurance fund.  Contract with the ladder: /tmp/team/vault.md and
    docs/engine.md "Backstop vault".  ``absorb_deficit``: the liquidation
    rules' ``absorb_vault_deficit`` (v4, take_vault_side)."""
    if address in (VAULT_ADDRESS, INSURANCE_ADDRESS) or qty <= 0 or not get_total_shares(state):
        return 0
    try:
        equity = compute_vault_equity(state, ctx, state.globals.timestamp_ms)
    except RuleError:
        return 0
    if equity <= 0:
        return 0
    for lots in compute_takeover_candidates(state, ctx, position, qty, mark, params, equity):
        snapshot = state.snapshot()
        if apply_takeover(state, ctx, address, position, lots, mark, params, equity, absorb_deficit):
            state.commit(snapshot)
            return lots
        state.revert(snapshot)
    return 0


def get_vault_leverage(ctx: Context, params: MarketParams) -> int:
    return max(1, min(ctx.preset.vault_max_leverage, params.max_leverage))


def compute_takeover_candidates(state: State, ctx: Context, position: Position, qty: int, mark: int,
                                params: MarketParams, equity: Fraction) -> list[int]:
    """Lots to try, largest first: what closes the vault's opposite position
    plus what its margin budget opens (free collateral and the per-market
    share of its equity), then the closing part alone."""
    vault = get_position(state, VAULT_ADDRESS, params.id)
    buys = position.size > 0           # the vault buys what a long sells
    closable = min(qty, abs(vault.size)) if vault.size and (vault.size > 0) != buys else 0
    free = get_account_or_empty(state, VAULT_ADDRESS).collateral
    cap = int(equity * ctx.preset.vault_max_market_share_ppm // PPM)
    budget = max(0, min(free, cap - vault.margin))
    opening = budget * get_vault_leverage(ctx, params) * params.scale // mark
    opening = opening // params.step_size * params.step_size
    lots = min(qty, closable + opening)
    return [n for n in dict.fromkeys((lots, closable)) if n > 0]


def apply_takeover(state: State, ctx: Context, address: bytes, position: Position, lots: int, mark: int,
                   params: MarketParams, equity: Fraction, absorb_deficit: bool) -> bool:
    """Write the takeover of ``lots``; False if the vault's side breaks a
    bound (the caller reverts)."""
    long = position.size > 0
    gross = lots * mark
    notional = -(gross // params.scale) if long else ceil_div(gross, params.scale)
    if abs(notional) > MAX_INT64:
        return False
    closed, realised = apply_close(position, lots, notional)
    margin = position.margin + realised
    fee = min(compute_fee(abs(notional), params.liquidation_fee_ppm), max(0, margin))
    bad_debt = max(0, -margin)
    state.set_position(address, params.id, replace(closed, margin=margin - fee + bad_debt))
    add_open_interest(state, params.id, compute_long_change(position.size, closed.size))
    add_insurance(state, -bad_debt)
    return take_vault_side(state, ctx, lots if long else -lots, -notional, fee, mark, params, equity, absorb_deficit)


def take_vault_side(state: State, ctx: Context, delta: int, notional: int, fee: int, mark: int,
                    params: MarketParams, equity: Fraction, absorb_deficit: bool) -> bool:
    """The vault buys (``delta`` > 0) or sells ``|delta|`` lots for its signed
    ``notional``: it closes its opposite position first (PnL and the closed
    margin to its free collateral), posts margin at its leverage for the
    rest, and takes the fee.  False past a bound.  Rules v4: funding the
    vault owes past its margin moves into its cost first (its equity and
    bankruptcy price unchanged), so its margin never ends negative."""
    vault = settle_funding(state, VAULT_ADDRESS, params.id, get_position(state, VAULT_ADDRESS, params.id), params)
    if absorb_deficit:
        vault = absorb_funding_deficit(vault)
    old_size, free = vault.size, get_account_or_empty(state, VAULT_ADDRESS).collateral
    closing = min(abs(delta), abs(old_size)) if old_size and (old_size > 0) != (delta > 0) else 0
    opening = abs(delta) - closing
    close_notional = notional * closing // abs(delta)
    if closing:
        try:
            vault, free = close_and_release(state, VAULT_ADDRESS, vault, closing, close_notional, free, "")
        except RuleError:
            return False
    if opening:
        open_notional = notional - close_notional
        required = ceil_div(abs(open_notional), get_vault_leverage(ctx, params))
        vault = replace(vault, size=vault.size + (opening if delta > 0 else -opening),
                        cost=vault.cost + open_notional, margin=vault.margin + required)
        free -= required
    market = state.markets[params.id]
    if free < 0 or (opening and (vault.margin * PPM > equity * ctx.preset.vault_max_market_share_ppm
                                 or not is_initial_margin_kept(vault, mark, market, params))):
        return False
    account = get_account_or_empty(state, VAULT_ADDRESS)
    state.set_account(VAULT_ADDRESS, replace(account, collateral=free + fee))
    state.set_position(VAULT_ADDRESS, params.id, vault)
    add_open_interest(state, params.id, compute_long_change(old_size, vault.size))
    return True


# --- unwind (sequencer record: a bounded IOC order of the vault into the book) ----------------

def get_unwind_nonce(market_id: int, timestamp_ms: int, ctx: Context) -> int:
    """The unwind order's nonce: the unwind interval and the market, so one
    unwind per market per interval (the order key is taken once)."""
    return (timestamp_ms // ctx.preset.vault_unwind_interval_ms) << 32 | market_id


def compute_vault_unwind(state: State, market_id: int, timestamp_ms: int, ctx: Context) -> VaultUnwind | None:
    """The unwind due in a market at this block time, or None: the vault
    holds a position there, the mark is fresh, no unwind yet this interval.
    Size: ``vault_unwind_ppm`` of the position rounded up to a step (at most
    all of it); limit: ``vault_unwind_slippage_ppm`` through the mark, on a tick."""
    params = get_market_params(ctx, market_id)
    position = state.positions.get((VAULT_ADDRESS, market_id))
    if params is None or position is None or not position.size:
        return None
    if (VAULT_ADDRESS, get_unwind_nonce(market_id, timestamp_ms, ctx)) in state.orders:
        return None
    try:
        mark = require_fresh_price(get_market(state, market_id), params, timestamp_ms)
    except RuleError:
        return None
    size = abs(position.size)
    part = ceil_div(ceil_div(size * ctx.preset.vault_unwind_ppm, PPM), params.step_size) * params.step_size
    slip, tick = ctx.preset.vault_unwind_slippage_ppm, params.tick_size
    if position.size > 0:   # sell, no lower than mark x (1 - slippage)
        price = mark * (PPM - slip) // PPM // tick * tick
    else:                   # buy, no higher than mark x (1 + slippage)
        price = ceil_div(ceil_div(mark * (PPM + slip), PPM), tick) * tick
    if price <= 0 or price > MAX_INT64:
        return None
    return VaultUnwind(market_id, min(part, size), price)


def process_vault_unwind(state: State, r: VaultUnwind, timestamp_ms: int, ctx: Context) -> None:
    """Register the vault's reduce-only IOC order, exactly the one
    ``compute_vault_unwind`` gives at this block time; the Trades that follow
    take it as their taker (it is the order placed last)."""
    require_market_params(ctx, r.market)
    expected = compute_vault_unwind(state, r.market, timestamp_ms, ctx)
    if expected is None:
        raise RuleError("unwind_not_due", f"no vault unwind is due in market {r.market} now (no position, "
                                          "a stale mark, or one already this interval)")
    require(r == expected, "invalid_unwind", f"the unwind due is size {expected.size} at {expected.price}, "
                                             f"not size {r.size} at {r.price}")
    position = state.positions[(VAULT_ADDRESS, r.market)]
    g = state.globals
    seq = g.order_count + 1
    order = Order(keccak(encode_record(r)), r.size, market=r.market, is_buy=position.size < 0, price=r.price,
                  leverage=1, time_in_force=IMMEDIATE_OR_CANCEL, reduce_only=True, expiry=timestamp_ms, seq=seq)
    state.set_order(VAULT_ADDRESS, get_unwind_nonce(r.market, timestamp_ms, ctx), order)
    state.set_globals(replace(g, order_count=seq))
