"""Market parameter tables and oracle signer sets (protocol constants, no I/O).

Units (DESIGN.md "State"): collateral in quote units (USDC, 6 decimals); sizes
in base lots of ``10**-base_decimals`` base units; prices in quote units per
whole base unit; fractions in ppm.  A fill's notional is
``size * price // 10**base_decimals``; every market checks that
``tick_size * step_size`` is a multiple of ``10**base_decimals`` so that a fill
at a tick price of a step size has an exact integer notional.

Margin fractions follow the dYdX v4 liquidity tiers (ANCHORS.md,
dydxprotocol/v4-chain ``protocol/x/perpetuals``): large caps IMF 2% with
maintenance 60% of IMF (1.2%), small caps IMF 10% / MMF 50% of it (5%), long
tail IMF 20% / MMF 10%.  Max leverage is 1/IMF.  Funding is settled once per
interval, capped per dYdX at |rate_8h| <= 600% x (IMF - MMF), scaled to the
interval (1/8 of the 8-hour cap for an hourly interval).  Liquidation fee: at
most dYdX's 1.5%, and kept below the MMF so each partial liquidation step
strictly improves the position's health.  Partial liquidation above a notional
threshold follows Hyperliquid (positions above 100k USDC: 20% at a time).
docs/engine.md has the full table and the formulas.
"""
from __future__ import annotations

import msgspec

from sequencer.core.hashing import keccak
from sequencer.core.presets import PPM

USDC = 10**6
HOUR_MS = 3_600_000

INSURANCE_FEE_SHARE_PPM = 200_000
"""The share of every trade's fees paid into the insurance fund (20%; the rest
goes to the fee pool).  dYdX v4 pays all trading fees to stakers and feeds its
insurance fund from liquidation fees only (a share of 0); Hyperliquid directs
all fees to the community (HLP and the assistance fund).  isoroll's fund has no
vault behind it yet, so it takes a fifth of the fees on top of liquidation fees
(docs/engine.md, "Fees")."""


class MarketParams(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    symbol: str
    base_decimals: int
    """Sizes are in lots of 10**-base_decimals base units."""
    tick_size: int
    """Prices are multiples of this (quote units per whole base unit)."""
    step_size: int
    """Sizes are multiples of this (base lots)."""
    initial_margin_ppm: int
    maintenance_margin_ppm: int
    max_leverage: int
    maker_fee_ppm: int
    taker_fee_ppm: int
    funding_interval_ms: int
    funding_cap_ppm: int
    """Largest |rate| of one FundingTick, in ppm of notional per interval."""
    funding_interest_ppm: int
    """Interest component per interval the sequencer adds to the premium."""
    oracle_max_age_ms: int
    """Trades and liquidations refuse an oracle price older than this."""
    liquidation_fee_ppm: int
    """Cap of the liquidation fee (ppm of the closed notional), paid to the insurance fund."""
    partial_liquidation_notional: int
    """Positions above this notional (quote units) are liquidated in parts."""
    partial_liquidation_ppm: int
    """The fraction of the position closed by one partial liquidation."""
    min_order_notional: int = 0
    """Smallest notional (size x limit price, quote units) of an order that is
    not reduce-only: no dust orders reserving a few micro-USDC."""
    insurance_fee_share_ppm: int = 0
    """The share of trading fees paid into the insurance fund (the rest to the fee pool)."""
    liquidation_policy: int = 2
    """What the liquidation ladder does with a liquidatable position
    (``LIQUIDATION_POLICIES``, docs/engine.md): 2 book-first (the shipped
    tables), 3 book+auction, 4 book+vault, 0 the ladder without the book,
    1 the backstop before issue 10 (the fund takes positions over; the lab's)."""
    auction_duration_ms: int = 60_000
    """How long a liquidation auction's price takes to decay from the mark to
    the bankruptcy price (book+auction)."""
    # The mark price and oracle integrity (issue 10; sequencer.core.rules.mark).
    mark_basis_band_ppm: int = 5_000
    """The trade-vs-oracle basis is clamped to +-this fraction of the oracle, so
    the mark never leaves oracle +- band (kept below IMF - MMF: no trading far
    from the oracle can move the mark enough to liquidate a fresh position)."""
    mark_ema_half_life_ms: int = 60_000
    """A trade after this long moves the basis EMA half way to its sample; a
    trade in the same millisecond as the last one does not move it."""
    mark_trade_max_age_ms: int = 60_000
    """The last trade price counts in the mark while at most this old, else the oracle."""
    oracle_jump_ppm: int = 50_000
    """An oracle price this far from the applied one, within oracle_jump_window_ms
    of it, is held pending until the next price confirms it."""
    oracle_jump_window_ms: int = 60_000
    oracle_confirm_band_ppm: int = 10_000
    """The next price confirms a pending one when within this fraction of it."""

    @property
    def scale(self) -> int:
        return 10 ** self.base_decimals


LIQUIDATION_LADDER, LIQUIDATION_BACKSTOP, LIQUIDATION_BOOK_FIRST, LIQUIDATION_BOOK_AUCTION, LIQUIDATION_BOOK_VAULT = \
    range(5)
LIQUIDATION_POLICIES: dict[str, int] = {
    "ladder": LIQUIDATION_LADDER, "backstop": LIQUIDATION_BACKSTOP, "book-first": LIQUIDATION_BOOK_FIRST,
    "book+auction": LIQUIDATION_BOOK_AUCTION, "book+vault": LIQUIDATION_BOOK_VAULT}
"""``MarketParams.liquidation_policy`` values by name (the lab's ``--policy``)."""


class OracleSet(msgspec.Struct, frozen=True):
    signers: tuple[bytes, ...]
    """Addresses allowed to sign OraclePrice records."""
    quorum: int
    """k of n: how many distinct signers must sign one price."""


def compute_funding_cap_ppm(imf_ppm: int, mmf_ppm: int, interval_ms: int) -> int:
    """dYdX v4: |8-hour rate| <= 600% x (IMF - MMF), pro rata per interval."""
    return 6 * (imf_ppm - mmf_ppm) * interval_ms // (8 * HOUR_MS)


def make_market(*, id: int, symbol: str, base_decimals: int, tick_size: int, step_size: int,
                imf_ppm: int, mmf_ppm: int, funding_interval_ms: int, oracle_max_age_ms: int,
                partial_liquidation_notional: int = 100_000 * USDC, partial_liquidation_ppm: int = 200_000,
                liquidation_fee_ppm: int = 5_000, maker_fee_ppm: int = 100, taker_fee_ppm: int = 500,
                funding_interest_ppm: int | None = None, min_order_notional: int = USDC,
                insurance_fee_share_ppm: int = INSURANCE_FEE_SHARE_PPM) -> MarketParams:
    if funding_interest_ppm is None:
        # Hyperliquid / BitMEX interest: 0.01% per 8 hours, pro rata.
        funding_interest_ppm = 100 * funding_interval_ms // (8 * HOUR_MS)
    params = MarketParams(
        id=id, symbol=symbol, base_decimals=base_decimals, tick_size=tick_size, step_size=step_size,
        initial_margin_ppm=imf_ppm, maintenance_margin_ppm=mmf_ppm, max_leverage=PPM // imf_ppm,
        maker_fee_ppm=maker_fee_ppm, taker_fee_ppm=taker_fee_ppm,
        funding_interval_ms=funding_interval_ms,
        funding_cap_ppm=compute_funding_cap_ppm(imf_ppm, mmf_ppm, funding_interval_ms),
        funding_interest_ppm=funding_interest_ppm,
        oracle_max_age_ms=oracle_max_age_ms, liquidation_fee_ppm=liquidation_fee_ppm,
        partial_liquidation_notional=partial_liquidation_notional,
        partial_liquidation_ppm=partial_liquidation_ppm, min_order_notional=min_order_notional,
        mark_trade_max_age_ms=oracle_max_age_ms, oracle_jump_window_ms=oracle_max_age_ms,
        insurance_fee_share_ppm=insurance_fee_share_ppm)
    check_market_params(params)
    return params


def check_market_params(p: MarketParams) -> None:
    problems = []
    if (p.tick_size * p.step_size) % p.scale:
        problems.append("tick_size * step_size must be a multiple of 10**base_decimals (exact notionals)")
    if not 0 < p.maintenance_margin_ppm < p.initial_margin_ppm <= PPM:
        problems.append("need 0 < maintenance < initial <= 1e6 ppm")
    if not 1 <= p.max_leverage <= PPM // p.initial_margin_ppm:
        problems.append("max_leverage must be within 1 .. 1/IMF")
    if not 0 <= p.liquidation_fee_ppm < p.maintenance_margin_ppm:
        problems.append("liquidation fee must be below the maintenance fraction")
    if not 0 < p.partial_liquidation_ppm < PPM:
        problems.append("partial liquidation fraction must be within (0, 1e6) ppm")
    if not 0 <= p.insurance_fee_share_ppm <= PPM:
        problems.append("the insurance fund's fee share must be within 0..1e6 ppm")
    if p.liquidation_policy not in LIQUIDATION_POLICIES.values():
        problems.append(f"unknown liquidation policy {p.liquidation_policy}")
    if p.auction_duration_ms <= 0:
        problems.append("the liquidation auction's duration must be positive")
    if p.min_order_notional < 0:
        problems.append("minimum order notional must not be negative")
    if not 0 <= p.mark_basis_band_ppm < p.initial_margin_ppm - p.maintenance_margin_ppm:
        problems.append("the mark's basis band must be below IMF - MMF")
    if min(p.mark_ema_half_life_ms, p.oracle_jump_ppm, p.oracle_confirm_band_ppm) <= 0:
        problems.append("mark EMA half-life, oracle jump threshold and confirmation band must be positive")
    if min(p.mark_trade_max_age_ms, p.oracle_jump_window_ms) < 0:
        problems.append("last-trade age and oracle jump window must not be negative")
    if min(p.tick_size, p.step_size, p.funding_interval_ms, p.oracle_max_age_ms) <= 0:
        problems.append("tick, step, funding interval and oracle max age must be positive")
    if problems:
        raise ValueError(f"market {p.id} {p.symbol}: " + "; ".join(problems))


# dYdX v4 liquidity tiers (IMF, MMF) in ppm.
LARGE_CAP = (20_000, 12_000)   # IMF 2%, MMF 60% of IMF
SMALL_CAP = (100_000, 50_000)  # IMF 10%, MMF 50% of IMF
LONG_TAIL = (200_000, 100_000)  # IMF 20%, MMF 50% of IMF


def _btc(interval_ms: int, max_age_ms: int, partial: int) -> MarketParams:
    # 1 lot = 1 satoshi; tick $1; step 0.0001 BTC.
    return make_market(id=1, symbol="BTC-USD", base_decimals=8, tick_size=1 * USDC, step_size=10_000,
                       imf_ppm=LARGE_CAP[0], mmf_ppm=LARGE_CAP[1], funding_interval_ms=interval_ms,
                       oracle_max_age_ms=max_age_ms, partial_liquidation_notional=partial)


def _eth(interval_ms: int, max_age_ms: int, partial: int) -> MarketParams:
    # 1 lot = 1 gwei of ETH; tick $0.1; step 0.001 ETH.
    return make_market(id=2, symbol="ETH-USD", base_decimals=9, tick_size=USDC // 10, step_size=10**6,
                       imf_ppm=LARGE_CAP[0], mmf_ppm=LARGE_CAP[1], funding_interval_ms=interval_ms,
                       oracle_max_age_ms=max_age_ms, partial_liquidation_notional=partial)


DEVNET_MARKETS: dict[int, MarketParams] = {
    # A one-minute funding interval and a 10k USDC partial threshold so the
    # behaviour shows within a devnet session.
    1: _btc(60_000, 60_000, 10_000 * USDC),
    2: _eth(60_000, 60_000, 10_000 * USDC),
}

PRODUCTION_MARKETS: dict[int, MarketParams] = {
    1: _btc(HOUR_MS, 10_000, 100_000 * USDC),
    2: _eth(HOUR_MS, 10_000, 100_000 * USDC),
    3: make_market(id=3, symbol="SOL-USD", base_decimals=9, tick_size=USDC // 1000, step_size=10**7,
                   imf_ppm=SMALL_CAP[0], mmf_ppm=SMALL_CAP[1], funding_interval_ms=HOUR_MS,
                   oracle_max_age_ms=10_000, liquidation_fee_ppm=15_000),
    4: make_market(id=4, symbol="DOGE-USD", base_decimals=6, tick_size=10, step_size=10**6,
                   imf_ppm=LONG_TAIL[0], mmf_ppm=LONG_TAIL[1], funding_interval_ms=HOUR_MS,
                   oracle_max_age_ms=10_000, liquidation_fee_ppm=15_000),
}

MARKET_TABLES: dict[str, dict[int, MarketParams]] = {
    "devnet": DEVNET_MARKETS,
    "production": PRODUCTION_MARKETS,
}


def get_market_table(name: str) -> dict[int, MarketParams]:
    try:
        return MARKET_TABLES[name]
    except KeyError:
        raise ValueError(f"unknown market table {name!r}; known: {', '.join(sorted(MARKET_TABLES))}") from None


# --- oracle signer sets ---------------------------------------------------------

def make_oracle_set(signers: tuple[bytes, ...], quorum: int) -> OracleSet:
    """A k-of-n set; k must be a strict majority so two conflicting prices
    for one timestamp cannot both reach quorum."""
    if len(set(signers)) != len(signers) or any(len(s) != 20 for s in signers):
        raise ValueError("oracle signers must be distinct 20-byte addresses")
    if signers and not len(signers) // 2 < quorum <= len(signers):
        raise ValueError(f"quorum {quorum} of {len(signers)} is not a strict majority")
    return OracleSet(tuple(signers), quorum)


DEVNET_ORACLE_KEYS: tuple[bytes, ...] = tuple(keccak(b"isoroll devnet oracle %d" % i) for i in range(3))
"""Private keys of the devnet oracle signers (public knowledge: devnet only)."""


def _devnet_oracle_set() -> OracleSet:
    from sequencer.core.signing import address_of
    return make_oracle_set(tuple(address_of(k) for k in DEVNET_ORACLE_KEYS), 2)


ORACLE_SETS: dict[str, OracleSet] = {
    "devnet": _devnet_oracle_set(),
    # Production signers are configured per deployment (Context.oracle_signers);
    # an empty set accepts no price.
    "production": OracleSet((), 1),
}


def compute_median_price(prices: list[int]) -> int:
    """Median of the signers' observations (lower median for an even count,
    so the result is one of the observed prices)."""
    if not prices:
        raise ValueError("no prices")
    ordered = sorted(prices)
    return ordered[(len(ordered) - 1) // 2]
