# pragma version ~=0.4.1
"""
@title isoroll one-step, the vault step of a Liquidate (book+vault, rules v4)
@notice onestep_liquidate.vy hands this contract a Liquidate item (tag 18)
    that names no makers in a market whose liquidation policy is book+vault
    (4). It re-executes rules.liquidation.process_liquidate_v3 under rules v4
    (LIQUIDATION_V4) there, against
    the witness (prover/plan_vault_step.py), and returns the state root after
    the record and the receipt outcome:
    the refusals (no fresh mark, no position, a healthy one); the funding
    settled (funding owed past the margin moved into the cost, margin 0);
    the owner's orders cancelled by the order epoch; a position whose
    auction runs refused unless bankrupt (then its auction ends and the
    record stops); else the book step takes nothing (no makers) and the
    lots go to the backstop vault (rules.vault.process_vault_takeover):
    none when the liquidated account is the vault, the vault has no shares,
    a position of it with a size has no fresh mark, or its equity is not
    positive; else each candidate of compute_takeover_candidates, largest
    first, until one applies (apply_takeover: the close at the mark
    rounded against the account, the fee capped by its margin to the vault,
    its bad debt from the fund; take_vault_side: the vault's funding
    settled (rules v4: funding owed past its margin moved into its cost,
    margin 0), its opposite position closed first, margin at its leverage
    for the rest, refused past its free collateral, its per-market share
    of the equity or the initial margin); the whole takeover undone when
    the fund would end negative (process_vault_step). What the vault did
    not take stops there (rules v3's process_ladder_step: Deleverage
    records go on).
    Witness: the market and the position (read; a refused record stops
    there), the auction, the globals, then the vault: its account, its
    position in each market of the table (ascending ids), the market after
    each position with a size, its total shares (all read against the
    pre-state root); if the record applies: the position, the market, the
    globals, then, when the vault took lots, its account and its position
    in the market (written, each once with its final value), or the
    auction (deleted) when it ended. Pending (reverts "pending"): a vault
    whose reads and the five writes pass the 32 openings (the table's
    markets plus the vault's positions with a size above 21).
"""
import records
import trace
import onestep_lib as lib
import onestep_market as mk
import onestep_fill as fill
import onestep_vault_equity as ve

initializes: lib
initializes: mk
initializes: ve[mk := mk]

exports: (lib.DOMAIN_SEPARATOR, lib.MAX_AMOUNT, lib.MAX_EXPIRY_AHEAD_MS, lib.NONCE_WINDOW, mk.market_table)

MAX_OPENINGS: constant(uint256) = trace.MAX_OPENINGS
MAX_NONCES: constant(uint256) = trace.MAX_NONCES
MAX_ITEM: constant(uint256) = records.MAX_ITEM_SIZE
MAX_LEAF: constant(uint256) = trace.MAX_LEAF
PPM: constant(int256) = mk.PPM
MAX_INT64: constant(int256) = 2**63 - 1
TAG_LIQUIDATE: constant(uint256) = 18
POLICY_BOOK_VAULT: constant(uint256) = 4
INSURANCE: constant(address) = empty(address)  # rules.positions.INSURANCE_ADDRESS
VAULT: constant(address) = ve.VAULT
WRITES: constant(uint256) = 5  # position, market, globals, the vault's account and position

# the preset's vault constants (sequencer.core.presets.Preset vault_*)
VAULT_MAX_LEVERAGE: public(immutable(uint256))
VAULT_MAX_MARKET_SHARE_PPM: public(immutable(uint256))


struct Step:
    # the record's leaves in memory
    position: mk.Position    # the liquidated position
    market: Bytes[MAX_LEAF]
    insurance: int256        # added to the insurance fund
    interest: int256         # added to the market's open interest
    vault: mk.Position       # the vault's position in the market
    free: int256             # the vault's free collateral


@deploy
def __init__(domain_separator: bytes32, max_amount: uint256, max_expiry_ahead_ms: uint256, nonce_window: uint256,
             markets: DynArray[mk.MarketParams, mk.MAX_MARKETS], vault_max_leverage: uint256,
             vault_max_market_share_ppm: uint256):
    lib.__init__(domain_separator, max_amount, max_expiry_ahead_ms, nonce_window)
    mk.init_markets(markets)
    ve.init_vault(markets)
    VAULT_MAX_LEVERAGE = vault_max_leverage
    VAULT_MAX_MARKET_SHARE_PPM = vault_max_market_share_ppm


# --- the takeover (rules.vault) ------------------------------------------------------------

@internal
@view
def leverage(p: mk.MarketParams) -> int256:
    """rules.vault.get_vault_leverage."""
    return convert(max(1, min(VAULT_MAX_LEVERAGE, p.max_leverage)), int256)


@internal
@view
def candidates(s: Step, qty: int256, mark: int256, p: mk.MarketParams, equity: int256) -> DynArray[int256, 2]:
    """rules.vault.compute_takeover_candidates (the vault's position as read,
    before its funding settles): what closes its opposite position plus what
    its margin budget opens (its free collateral and its per-market share of
    the equity, floor(E x share / PPM) from E x VAULT_SCALE), then the
    closing part alone; largest first, each once, none of 0."""
    closable: int256 = 0
    if s.vault.size != 0 and (s.vault.size > 0) != (s.position.size > 0):
        closable = min(qty, abs(s.vault.size))
    share: int256 = convert(VAULT_MAX_MARKET_SHARE_PPM, int256)
    cap: int256 = mk.floor_div(equity * share, PPM * convert(ve.vault_scale, int256))
    budget: int256 = max(0, min(s.free, cap - s.vault.margin))
    step: int256 = convert(p.step_size, int256)
    opening: int256 = budget * self.leverage(p) * convert(p.scale, int256) // mark // step * step
    lots: int256 = min(qty, closable + opening)
    out: DynArray[int256, 2] = []
    if lots > 0:
        out.append(lots)
    if closable > 0 and closable != lots:
        out.append(closable)
    return out


@internal
@view
def take(s: Step, lots: int256, mark: int256, p: mk.MarketParams, equity: int256) -> (bool, Step):
    """rules.vault.apply_takeover and take_vault_side of `lots`, all or
    nothing: the liquidated side closed at the mark rounded against it, the
    fee (capped by its margin) to the vault, its bad debt from the fund; the
    vault's funding settled, its opposite position closed first (the closed
    margin and PnL to its free collateral), margin at its leverage for the
    rest. False past a bound (the caller keeps `s`)."""
    scale: int256 = convert(p.scale, int256)
    long: bool = s.position.size > 0
    gross: int256 = lots * mark
    notional: int256 = mk.ceil_div(gross, scale)
    if long:
        notional = -(gross // scale)
    if abs(notional) > MAX_INT64:
        return False, s
    out: Step = s
    realised: int256 = 0
    out.position, realised = fill.apply_close(s.position, lots, notional)
    margin: int256 = s.position.margin + realised
    fee: int256 = min(mk.ceil_div(abs(notional) * convert(p.liquidation_fee_ppm, int256), PPM), max(0, margin))
    bad_debt: int256 = max(0, -margin)
    out.position.margin = margin - fee + bad_debt
    out.interest += fill.long_change(s.position.size, out.position.size)
    # the vault's side: it buys what a long sells
    f: mk.Funding = mk.settle_funding(s.vault, s.market, p)
    out.market = lib.set_word(s.market, mk.MARKET_FUNDING_DUST, convert(f.dust, bytes32))
    out.insurance += f.sweep - bad_debt
    # rules v4 (LiquidationRules.absorb_vault_deficit): funding owed past
    # the vault's margin moves into its cost, so its margin never ends negative
    vault: mk.Position = mk.absorb_funding_deficit(f.position)
    free: int256 = s.free
    closing: int256 = 0
    if vault.size != 0 and (vault.size > 0) != long:
        closing = min(lots, abs(vault.size))
    opening: int256 = lots - closing
    close_notional: int256 = mk.floor_div(-notional * closing, lots)
    if closing != 0:
        r: fill.Released = fill.close_and_release(vault, closing, close_notional, free)
        if not r.ok:
            return False, s
        vault = r.position
        free = r.free
    if opening != 0:
        open_notional: int256 = -notional - close_notional
        required: int256 = mk.ceil_div(abs(open_notional), self.leverage(p))
        if long:
            vault.size += opening
        else:
            vault.size -= opening
        vault.cost += open_notional
        vault.margin += required
        free -= required
    if free < 0:
        return False, s
    if opening != 0:
        if vault.margin * PPM * convert(ve.vault_scale, int256) > equity * convert(VAULT_MAX_MARKET_SHARE_PPM, int256):
            return False, s
        held: int256 = fill.equity_scaled(vault, mark, scale) * PPM
        if held < abs(vault.size) * mark * convert(p.initial_margin_ppm, int256):
            return False, s
    out.interest += fill.long_change(s.vault.size, vault.size)
    out.vault = vault
    out.free = free + fee
    return True, out


# --- the entry ------------------------------------------------------------------------------
# The witness is read here, one opening at a time: an internal function given
# `openings` would copy all MAX_OPENINGS of them into memory (the gas of a step).

@external
@view
def apply(state_root: bytes32, ctx: trace.Ctx, item: Bytes[MAX_ITEM], openings: DynArray[trace.Opening, MAX_OPENINGS],
          nonces: DynArray[uint256, MAX_NONCES]) -> (bytes32, bool):
    """
    @notice The state root after a Liquidate item naming no makers in a
        book+vault market, and the receipt outcome (a refused record changes
        nothing). onestep_liquidate.vy checks the item's layout, the market
        and the account (not the fund's) before it forwards the record.
    """
    account: address = lib.addr(item, 2)
    market: uint256 = lib.word(item, 22, 4)
    found: bool = False
    p: mk.MarketParams = empty(mk.MarketParams)
    found, p = mk.market_params(market)
    assert found and len(item) == 27 and p.liquidation_policy == POLICY_BOOK_VAULT and account != INSURANCE, "route"
    n: uint256 = len(openings)
    c: lib.Cursor = lib.Cursor(root=state_root, used=0)
    keys: bytes32[4] = [mk.market_key(market), mk.position_key(account, market), mk.auction_key(account, market),
                        lib.GLOBALS_KEY]
    op: trace.Opening = empty(trace.Opening)
    s: Step = empty(Step)
    for i: uint256 in range(2):
        op = openings[lib.at(c, n)]
        lib.verify_leaf(c, keys[i], op)
        c.used += 1
        if i == 0:
            s.market = op.value
        else:
            s.position = mk.read_position(op)
    mark: int256 = mk.fresh_mark(s.market, p, ctx.timestamp_ms)
    if mark == 0 or not mk.is_liquidatable(s.position, s.market, mark, p):
        return state_root, False
    op = openings[lib.at(c, n)]
    lib.verify_leaf(c, keys[2], op)
    c.used += 1
    in_auction: bool = op.present
    g: lib.Globals = lib.read_globals(c, openings[lib.at(c, n)])
    c.used += 1
    # settle_liquidation_funding, cancel_orders_v2
    f: mk.Funding = mk.settle_funding(s.position, s.market, p)
    s.position = mk.absorb_funding_deficit(f.position)
    s.market = lib.set_word(s.market, mk.MARKET_FUNDING_DUST, convert(f.dust, bytes32))
    s.insurance = f.sweep
    qty: int256 = mk.liquidation_size(s.position, mark, p)
    s.position.order_epoch = g.order_count
    taken: bool = False
    vault_nonces: bytes32 = empty(bytes32)
    if in_auction:
        # process_liquidate_in_auction: left to its auction unless bankrupt
        # (then the auction ends and rules v3 stop there)
        if fill.equity_scaled(s.position, mark, convert(p.scale, int256)) >= 0:
            return state_root, False
    else:
        # the vault (rules.vault.compute_vault_equity, get_total_shares), read whole
        assert c.used + 1 + WRITES <= MAX_OPENINGS, "pending"
        op = openings[lib.at(c, n)]
        lib.verify_leaf(c, lib.account_key(VAULT), op)
        c.used += 1
        v: ve.Vault = ve.start(lib.read_account(op))
        for market_id: uint256 in ve.market_ids:
            assert c.used + 1 + WRITES <= MAX_OPENINGS, "pending"
            op = openings[lib.at(c, n)]
            lib.verify_leaf(c, mk.position_key(VAULT, market_id), op)
            c.used += 1
            pos: mk.Position = mk.read_position(op)
            if market_id == market:
                s.vault = pos
            if op.present:
                if pos.size != 0:
                    assert c.used + 1 + WRITES <= MAX_OPENINGS, "pending"
                    op = openings[lib.at(c, n)]
                    lib.verify_leaf(c, mk.market_key(market_id), op)
                    c.used += 1
                # op: the market after a position with a size (a flat one reads no market)
                v = ve.add_position(v, pos, op.value, market_id, g.timestamp_ms)
        assert c.used + 1 + WRITES <= MAX_OPENINGS, "pending"
        op = openings[lib.at(c, n)]
        lib.verify_leaf(c, mk.vault_share_key(VAULT), op)
        c.used += 1
        s.free = convert(v.account.collateral, int256)
        # process_vault_takeover, then process_vault_step's undo when the fund ends negative
        if account != VAULT and lib.leaf_word(op.value, 0) != 0 and v.valued and v.equity > 0:
            tries: DynArray[int256, 2] = self.candidates(s, qty, mark, p, v.equity)
            for lots: int256 in tries:
                after: Step = empty(Step)
                taken, after = self.take(s, lots, mark, p, v.equity)
                if taken:
                    taken = convert(g.insurance_fund, int256) + after.insurance >= 0
                    if taken:
                        s = after
                    break
        vault_nonces = v.account.nonces_hash
    # the writes, each leaf once with its final value
    interest: int256 = lib.leaf_int(s.market, mk.MARKET_OPEN_INTEREST) + s.interest
    s.market = lib.set_word(s.market, mk.MARKET_OPEN_INTEREST, convert(convert(interest, uint256), bytes32))
    g.insurance_fund = convert(convert(g.insurance_fund, int256) + s.insurance, uint256)
    c = lib.rewrite(c, keys[1], mk.position_leaf(s.position), openings[lib.at(c, n)])
    c = lib.rewrite(c, keys[0], s.market, openings[lib.at(c, n)])
    c = lib.write_globals(c, g, openings[lib.at(c, n)])
    if in_auction:  # ended (deleted)
        c = lib.rewrite(c, keys[2], b"", openings[lib.at(c, n)])
    if taken:
        c = lib.rewrite(c, lib.account_key(VAULT), abi_encode(convert(s.free, uint256), vault_nonces),
                        openings[lib.at(c, n)])
        c = lib.rewrite(c, mk.position_key(VAULT, market), mk.position_leaf(s.vault), openings[lib.at(c, n)])
    return c.root, True
