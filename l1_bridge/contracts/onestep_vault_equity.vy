# pragma version ~=0.4.1
"""
@title isoroll one-step, the backstop vault's equity (Vyper module)
@notice rules.vault.compute_vault_equity as L1 computes it, shared by
    onestep_vault.vy (deposits and withdrawals) and onestep_vault_step.vy
    (the vault's takeover in a Liquidate under book+vault). The equity E
    (a Fraction in Python: free collateral plus, per position, margin -
    funding owed - cost + size x mark / S) is the integer E x VAULT_SCALE,
    VAULT_SCALE the least common multiple of the market table's scales
    (fixed at deployment, at most 2**64), so nothing is rounded. The caller
    reads the witness (the vault's position in every market of the table,
    ascending ids, the market after each position with a size) and adds each
    position here (`add_position`). A contract `initializes: ve[mk := mk]`.
"""
import trace
import onestep_lib as lib
import onestep_market as mk

uses: mk

MAX_LEAF: constant(uint256) = trace.MAX_LEAF
MAX_MARKETS: constant(uint256) = mk.MAX_MARKETS
MAX_VAULT_SCALE: constant(uint256) = 2**64
PPM: constant(int256) = mk.PPM
VAULT: constant(address) = 0x000000000000000000000000000000000000000A  # rules.vault.VAULT_ADDRESS

# E x VAULT_SCALE is exact: VAULT_SCALE is a multiple of every market's scale
vault_scale: public(uint256)
# the table's market ids, ascending (rules.vault.get_vault_positions reads them in that order)
market_ids: public(DynArray[uint256, MAX_MARKETS])


struct Vault:
    # what a record reads of the vault, against the pre-state root
    equity: int256      # E x VAULT_SCALE, exactly
    valued: bool        # every position with a size has a fresh mark
    account: lib.AccountLeaf
    total: uint256      # the total shares (the share leaf of the vault's own address)


@internal
def init_vault(markets: DynArray[mk.MarketParams, MAX_MARKETS]):
    """The market ids (ascending, as the table must be given) and VAULT_SCALE."""
    scale: uint256 = 1
    for m: mk.MarketParams in markets:
        n: uint256 = len(self.market_ids)
        assert n == 0 or m.id > self.market_ids[n - 1], "markets ascending"
        self.market_ids.append(m.id)
        scale = scale // self.gcd(scale, m.scale) * m.scale
        assert scale <= MAX_VAULT_SCALE, "vault scale"
    self.vault_scale = scale


@internal
@pure
def gcd(a: uint256, b: uint256) -> uint256:
    x: uint256 = a
    y: uint256 = b
    for i: uint256 in range(400):
        if y == 0:
            break
        r: uint256 = x % y
        x = y
        y = r
    return x


@internal
@pure
def position_equity(pos: mk.Position, market: Bytes[MAX_LEAF], p: mk.MarketParams,
                    timestamp_ms: uint256) -> (bool, int256):
    """S x the position's equity at the mark (rules.margin.compute_equity_scaled:
    margin - funding owed - cost, plus size x mark / S), and whether it could be
    valued: a position with a size needs a fresh mark (rules.base.require_fresh_price);
    a flat one (leftover margin) is valued at mark 0 with nothing owed."""
    scale: int256 = convert(p.scale, int256)
    if pos.size == 0:
        return True, (pos.margin - pos.cost) * scale
    mark: int256 = mk.fresh_mark(market, p, timestamp_ms)
    if mark == 0:
        return False, 0
    index: int256 = lib.leaf_int(market, mk.MARKET_FUNDING_INDEX)
    owed: int256 = mk.ceil_div(pos.size * (index - pos.funding_snapshot), scale * PPM)
    return True, (pos.margin - owed - pos.cost) * scale + pos.size * mark


@internal
@view
def start(account: lib.AccountLeaf) -> Vault:
    """The vault valued with its free collateral alone (its positions to add)."""
    return Vault(equity=convert(account.collateral, int256) * convert(self.vault_scale, int256), valued=True,
                 account=account, total=0)


@internal
@view
def add_position(v: Vault, pos: mk.Position, market: Bytes[MAX_LEAF], market_id: uint256,
                 timestamp_ms: uint256) -> Vault:
    """The vault with one of its positions valued (E x VAULT_SCALE gains the
    position's S x equity times VAULT_SCALE / S: exact, S divides VAULT_SCALE)."""
    p: mk.MarketParams = mk.market_table[market_id]
    ok: bool = False
    scaled: int256 = 0
    ok, scaled = self.position_equity(pos, market, p, timestamp_ms)
    out: Vault = v
    out.valued = v.valued and ok
    out.equity += scaled * (convert(self.vault_scale, int256) // convert(p.scale, int256))
    return out
