"""One lab run: a seeded population of traders and market makers trading
through the real Exchange and rules along a price path, under one
liquidation policy, and what it cost whom.

Deterministic: the population, the orders and the order of everything come
from ``random.Random(seed)``; no clock is read (wall time is measured by the
caller).  The same seed and parameters give the same numbers.
"""
from __future__ import annotations

import random

import msgspec

from sequencer.core.markets import (DEVNET_MARKETS, LIQUIDATION_BACKSTOP, LIQUIDATION_BOOK_AUCTION,
                                    LIQUIDATION_BOOK_FIRST, LIQUIDATION_BOOK_VAULT, LIQUIDATION_LADDER, USDC,
                                    MarketParams, check_market_params)
from sequencer.core.records import AuctionBid, Deleverage, Liquidate, OraclePrice
from sequencer.core.rules.auction import compute_auction_price
from sequencer.core.rules.margin import compute_equity, compute_unrealized_pnl
from sequencer.core.rules.positions import INSURANCE_ADDRESS
try:
    from sequencer.core.rules.vault import VAULT_ADDRESS
except ImportError:                      # an executor without the backstop vault: book+vault is unavailable
    VAULT_ADDRESS = None
from sequencer.core.state import Position
from sequencer.core.transition import RuleError
from sequencer.lab.checks import get_stuck_liquidations, iter_user_positions
from sequencer.lab.scenarios import Tick
from sequencer.core.rules.orders import IMMEDIATE_OR_CANCEL
from sequencer.lab.venue import Venue, get_lab_address

MARKET = 1
LEVERAGES = (2, 5, 10, 20, 50)
LEVERAGE_WEIGHTS = (10, 25, 30, 20, 15)
COLLATERALS = (1_000, 5_000, 20_000, 100_000)
COLLATERAL_WEIGHTS = (40, 30, 20, 10)
KEEPER_DISCOUNTS_PPM = (2_000, 4_000, 6_000, 10_000)
"""How far through the mark an auction price must be before a keeper bids (20-100 bp)."""
ADL_LOSS_THRESHOLD = 100
"""Quote units a counterparty may lose against the mark by rounding before its close counts as ADL."""


class Population(msgspec.Struct, frozen=True, kw_only=True):
    traders: int = 80
    makers: int = 3
    maker_levels: int = 5
    maker_spacing_ppm: int = 500
    """Distance between a maker's price levels (and of the first level from the price)."""
    maker_level_notional: int = 150_000 * USDC
    activity_ppm: int = 50_000
    """Chance per step that a flat trader opens a new position."""
    fund: int = 20_000 * USDC
    """The insurance fund at the start."""
    keepers: int = 3
    """Auction keepers (book+auction): each bids once the auction price is its
    own discount below (a long) or above (a short) the mark."""
    keeper_collateral: int = 2_000_000 * USDC
    vault: int = 200_000 * USDC
    """Deposited into the backstop vault at the start (book+vault)."""


def is_vault_available() -> bool:
    return VAULT_ADDRESS is not None


class Policy(msgspec.Struct, frozen=True):
    name: str
    description: str
    available: bool
    overrides: dict = {}
    """Market parameters the policy sets (on top of the run's own overrides)."""


POLICIES: dict[str, Policy] = {p.name: p for p in (
    Policy("backstop", "before issue 10: the insurance fund takes the position over at the mark; "
                       "ADL at the bankruptcy price when the fund would go negative", True,
           {"liquidation_policy": LIQUIDATION_BACKSTOP}),
    Policy("ladder", "partial steps at the mark against the opposite positions ranked by profit x leverage; "
                     "the fund pays bad debt and holds nothing; ADL only when bankrupt", True,
           {"liquidation_policy": LIQUIDATION_LADDER}),
    Policy("book-first", "a liquidation order into the book (no worse than the bankruptcy price), "
                         "then the ladder for what it did not take", True,
           {"liquidation_policy": LIQUIDATION_BOOK_FIRST}),
    Policy("book+auction", "the book, then a Dutch auction among keepers (mark to bankruptcy price), "
                           "then the ladder for what is unsold", True,
           {"liquidation_policy": LIQUIDATION_BOOK_AUCTION}),
    Policy("book+vault", "the book, then the backstop vault, then the ladder", is_vault_available(),
           {"liquidation_policy": LIQUIDATION_BOOK_VAULT}),
)}


def get_policy(name: str) -> Policy:
    policy = POLICIES.get(name)
    if policy is None:
        raise ValueError(f"unknown policy {name!r}; known: {', '.join(POLICIES)}")
    if not policy.available:
        raise ValueError(f"policy {name!r} ({policy.description}) needs the backstop vault "
                         "(sequencer.core.rules.vault), which this installation does not have")
    return policy


def apply_overrides(params: MarketParams, overrides: dict[str, int]) -> MarketParams:
    """Market parameters with ``field=value`` overrides, checked like any market."""
    unknown = set(overrides) - set(params.__struct_fields__)
    if unknown:
        raise ValueError(f"unknown market parameter(s) {', '.join(sorted(unknown))}; "
                         f"known: {', '.join(params.__struct_fields__)}")
    params = msgspec.structs.replace(params, **overrides)
    check_market_params(params)
    return params


class Sample(msgspec.Struct, frozen=True, array_like=True):
    seconds: int
    price: int
    oracle_price: int
    open_interest: int
    fund_equity: int
    vault_equity: int
    bad_debt: int


class Result(msgspec.Struct, kw_only=True):
    policy: str
    scenario: str
    seed: int
    liquidations: int = 0
    liquidated_notional: int = 0
    liquidation_cost: int = 0
    """What liquidated traders lost beyond the move itself (their equity at the mark before minus after)."""
    bad_debt: int = 0
    adl_events: int = 0
    """Counterparty positions closed at a price worse than the mark (auto-deleveraging)."""
    mark_closes: int = 0
    """Counterparty positions closed at the mark (the ladder's step for a solvent position)."""
    book_fills: int = 0
    """Resting orders the liquidation orders filled (book-first policies)."""
    auction_bids: int = 0
    """Keeper bids that took auction lots (book+auction)."""
    fund_pnl: int = 0
    vault_pnl: int | None = None
    """None: the policy has no vault."""
    stuck_positions: int = 0
    stuck_steps: int = 0
    records: int = 0
    steps: int = 0
    simulated_seconds: int = 0
    samples: list[Sample] = msgspec.field(default_factory=list)

    @property
    def liquidation_cost_bp(self) -> float:
        """Traders' average liquidation price vs the mark, in bp of the closed notional."""
        return 10_000 * self.liquidation_cost / self.liquidated_notional if self.liquidated_notional else 0.0

    def table_row(self) -> dict:
        return {"policy": self.policy, "bad debt": self.bad_debt, "fund P&L": self.fund_pnl,
                "vault P&L": self.vault_pnl, "liquidations": self.liquidations,
                "liq. vs mark (bp)": round(self.liquidation_cost_bp, 1), "book fills": self.book_fills,
                "auction bids": self.auction_bids, "closed at mark": self.mark_closes,
                "ADL events": self.adl_events, "stuck": self.stuck_positions}


class Lab:
    """One run's venue, population and measurements."""

    def __init__(self, policy: Policy, scenario: str, path: list[Tick], seed: int, population: Population,
                 params: MarketParams) -> None:
        self.policy, self.path, self.population, self.params = policy, path, population, params
        self.rng = random.Random(seed)
        self.traders = [f"trader{i}" for i in range(population.traders)]
        self.makers = [f"maker{i}" for i in range(population.makers)]
        balances = {name: self.rng.choices(COLLATERALS, COLLATERAL_WEIGHTS)[0] * USDC for name in self.traders}
        balances.update({name: 100_000_000 * USDC for name in self.makers})
        self.keepers = [f"keeper{i}" for i in range(population.keepers)]
        self.keeper_discounts = {name: self.rng.choice(KEEPER_DISCOUNTS_PPM) for name in self.keepers}
        balances.update({name: population.keeper_collateral for name in self.keepers})
        self.has_vault = params.liquidation_policy == LIQUIDATION_BOOK_VAULT
        if self.has_vault:
            balances["vault-lp"] = population.vault
        self.venue = Venue(balances, fund=population.fund, markets={MARKET: params})
        self.maker_orders: dict[str, list[int]] = {name: [] for name in self.makers}
        self.result = Result(policy=policy.name, scenario=scenario, seed=seed, vault_pnl=0 if self.has_vault else None)
        self.stuck: set[bytes] = set()

    # --- actors --------------------------------------------------------------------
    def quote(self, price: int) -> None:
        """Every maker cancels its quotes, then all quote ``maker_levels`` each side around ``price``."""
        venue, pop, tick = self.venue, self.population, self.params.tick_size
        for name, nonces in self.maker_orders.items():
            for nonce in nonces:
                if (get_lab_address(name), nonce) in venue.exchange.orders:
                    venue.submit(venue.cancel_record(name, nonce))
            nonces.clear()
        for name in self.makers:
            for level in range(1, pop.maker_levels + 1):
                offset = price * pop.maker_spacing_ppm * level // 1_000_000
                size = max(1, pop.maker_level_notional * self.params.scale // price // self.params.step_size)
                for is_buy in (True, False):
                    limit = (price - offset if is_buy else price + offset) // tick * tick
                    order = venue.order(name, is_buy, max(tick, limit), size * self.params.step_size, leverage=5)
                    if self.submit(order):
                        self.maker_orders[name].append(order.nonce)

    def open_position(self, name: str, price: int) -> None:
        """A market order (IOC through the book) for a leveraged position of a random side and size."""
        leverage = self.rng.choices(LEVERAGES, LEVERAGE_WEIGHTS)[0]
        is_buy = self.rng.random() < 0.5
        free = self.venue.free(name)
        notional = free * leverage * self.rng.randint(30, 80) // 100
        steps = notional * self.params.scale // price // self.params.step_size
        if steps <= 0:
            return
        limit = price * (1_000_000 + (5_000 if is_buy else -5_000)) // 1_000_000 // self.params.tick_size
        self.submit(self.venue.order(name, is_buy, limit * self.params.tick_size, steps * self.params.step_size,
                                     leverage=leverage, tif=IMMEDIATE_OR_CANCEL))

    def submit(self, record) -> bool:
        try:
            self.venue.submit(record)
        except RuleError:
            return False
        return True

    # --- the run ---------------------------------------------------------------------
    def run(self) -> Result:
        start_ms = self.venue.now
        first = self.path[0]
        self.venue.set_price(first.price)
        if self.has_vault:
            self.deposit_into_vault()
        self.quote(first.price)
        for name in self.traders:
            self.open_position(name, first.price)
        for tick in self.path[1:]:
            self.venue.now = max(self.venue.now, start_ms + tick.seconds * 1000)
            self.step(tick)
        self.finish()
        return self.result

    def step(self, tick: Tick) -> None:
        self.quote(tick.price)
        for name in self.traders:
            if self.venue.size(name) == 0 and self.rng.randrange(1_000_000) < self.population.activity_ppm:
                self.open_position(name, tick.price)
        self.unwind_keepers(tick.price)
        if tick.oracle:
            self.apply_price(tick.price)
        self.venue.funding()
        self.unwind_vault()
        self.end_auctions()
        self.bid_in_auctions()
        self.measure(tick)

    def apply_price(self, price: int) -> None:
        """The oracle price, then the liquidations the sequencer makes
        (``Exchange.on_oracle_price`` does the same, in the same order), each
        account measured on its own."""
        venue, state = self.venue, self.venue.state
        venue.now += 1
        error = venue.apply(OraclePrice(MARKET, price, venue.now, ()))
        if error is not None:
            raise error
        if getattr(state.markets[MARKET], "pending_oracle_price", 0):   # a jump: the next print confirms it
            venue.now += 1
            error = venue.apply(OraclePrice(MARKET, price, venue.now, ()))
            if error is not None:
                raise error
        targets = sorted(address for address, _, _ in iter_user_positions(state, MARKET))
        for address in targets:
            before_positions, before_accounts = dict(state.positions), dict(state.accounts)
            out = venue.exchange.liquidate_accounts(state, MARKET, [address], venue.now, venue.ctx)
            venue.log.extend((venue.now, r) for r in out)
            if out:
                self.measure_liquidation(address, price, out, before_positions, before_accounts)

    def measure_liquidation(self, address: bytes, price: int, records: list, before_positions: dict,
                            before_accounts: dict) -> None:
        """What one account's liquidation records (or an auction's end) did: the
        steps, the notional closed, the bad debt, what the owner lost beyond the
        mark, and how each counterparty was closed (a book fill, at the mark, ADL)."""
        state, params, result = self.venue.state, self.params, self.result
        market = state.markets[MARKET]
        old = before_positions[(address, MARKET)]
        new = state.positions.get((address, MARKET)) or Position()
        equity_before = compute_equity(old, price, market, params)
        equity_after = compute_equity(new, price, market, params)
        result.liquidations += sum(isinstance(r, (Liquidate, Deleverage)) for r in records)
        result.liquidated_notional += (abs(old.size) - abs(new.size)) * price // params.scale
        result.bad_debt += max(0, -equity_before)
        result.liquidation_cost += max(0, equity_before - max(0, equity_after))
        makers = {maker for r in records if isinstance(r, Liquidate) for maker, _ in r.makers}
        book_takers = makers | {VAULT_ADDRESS, *map(get_lab_address, self.keepers)}
        result.book_fills += sum(len(r.makers) for r in records if isinstance(r, Liquidate))
        for (other, m), position in state.positions.items():
            was = before_positions.get((other, m))
            if (m != MARKET or other in (address, INSURANCE_ADDRESS) or other in book_takers or was is None
                    or was.size == position.size):
                continue
            free_gain = state.accounts[other].collateral - before_accounts[other].collateral
            loss = (compute_equity(was, price, market, params)
                    - compute_equity(position, price, market, params) - free_gain)
            if loss > ADL_LOSS_THRESHOLD:
                result.adl_events += 1
            else:
                result.mark_closes += 1

    # --- the auction's keepers and the vault ---------------------------------------------
    def bid_in_auctions(self) -> None:
        """Each live auction (owner order) goes to the first keeper whose
        discount the price has reached, for as many lots as it can take."""
        venue, state, params = self.venue, self.venue.state, self.params
        for (owner, market_id), auction in sorted(state.auctions.items()):
            if auction.end_ms <= venue.now:
                continue
            mark = state.markets[market_id].oracle_price
            price = compute_auction_price(auction, venue.now, params)
            long = auction.end_price <= auction.start_price
            for name in self.keepers:
                discount = (mark - price if long else price - mark) * 1_000_000 // mark
                if discount < self.keeper_discounts[name]:
                    continue
                before = dict(state.positions), dict(state.accounts)
                bid = AuctionBid(get_lab_address(name), owner, market_id, auction.size, price, 5,
                                 venue.next_nonce(name), venue.now + 60_000, b"")
                try:
                    out = venue.submit(bid)
                except RuleError:
                    continue
                self.result.auction_bids += 1
                self.measure_liquidation(owner, mark, out, *before)
                break

    def unwind_keepers(self, price: int) -> None:
        """Keepers sell what they bought (buy back what they sold) into the book, 1% through the price."""
        tick = self.params.tick_size
        for name in self.keepers:
            size = self.venue.size(name)
            if size:
                limit = price * (1_000_000 + (10_000 if size < 0 else -10_000)) // 1_000_000 // tick * tick
                self.submit(self.venue.order(name, size < 0, max(tick, limit), abs(size), leverage=5,
                                             tif=IMMEDIATE_OR_CANCEL, reduce_only=True))

    def end_auctions(self) -> None:
        """The auctions over at this time end (the block builder's start-of-block step)."""
        venue, state = self.venue, self.venue.state
        for (owner, market_id), auction in sorted(state.auctions.items()):
            if auction.end_ms > venue.now:
                continue
            before = dict(state.positions), dict(state.accounts)
            out = venue.exchange.due_auction_ends(state, venue.now, venue.ctx)
            venue.log.extend((venue.now, r) for r in out)
            if out:
                self.measure_liquidation(owner, state.markets[market_id].oracle_price, out, *before)

    def unwind_vault(self) -> None:
        """The vault's unwind orders due at this time (the block builder's start-of-block step)."""
        if self.has_vault:
            from sequencer.core.vault_book import get_due_vault_unwinds
            venue = self.venue
            out = get_due_vault_unwinds(venue.exchange, venue.state, venue.now, venue.ctx)
            venue.log.extend((venue.now, r) for r in out)

    def deposit_into_vault(self) -> None:
        from sequencer.core.records import VaultDeposit
        venue = self.venue
        venue.submit(VaultDeposit(get_lab_address("vault-lp"), self.population.vault, 1, venue.next_nonce("vault-lp"),
                                  venue.now + 60_000, b""))

    def compute_vault_equity(self) -> int:
        if not self.has_vault:
            return 0
        state = self.venue.state
        account = state.accounts.get(VAULT_ADDRESS)
        equity = account.collateral if account else 0
        position = state.positions.get((VAULT_ADDRESS, MARKET))
        if position is not None:
            market = state.markets[MARKET]
            equity += compute_equity(position, market.oracle_price, market, self.params) if position.size \
                else position.margin
        return equity

    def measure(self, tick: Tick) -> None:
        state, venue = self.venue.state, self.venue
        stuck = get_stuck_liquidations(state, venue.markets, venue.now)
        self.result.stuck_steps += len(stuck)
        self.stuck.update(address for address, _ in stuck)
        market = state.markets[MARKET]
        self.result.samples.append(Sample(tick.seconds, tick.price, market.oracle_price, market.open_interest,
                                          self.compute_fund_equity(), self.compute_vault_equity(),
                                          self.result.bad_debt))

    def compute_fund_equity(self) -> int:
        state = self.venue.state
        position = state.positions.get((INSURANCE_ADDRESS, MARKET))
        upnl = compute_unrealized_pnl(position, state.markets[MARKET].oracle_price, self.params) if position else 0
        return state.globals.insurance_fund + upnl

    def finish(self) -> None:
        result = self.result
        result.fund_pnl = self.compute_fund_equity() - self.population.fund
        if self.has_vault:
            result.vault_pnl = self.compute_vault_equity() - self.population.vault
        result.stuck_positions = len(self.stuck)
        result.records = len(self.venue.log)
        result.steps = len(self.path) - 1
        result.simulated_seconds = self.path[-1].seconds - self.path[0].seconds


def run_lab(policy: str, scenario: str, path: list[Tick], *, seed: int = 1, population: Population | None = None,
            overrides: dict[str, int] | None = None, params: MarketParams | None = None) -> tuple[Result, Lab]:
    """Run one policy along ``path``; returns the result and the lab (its venue, for checks)."""
    chosen = get_policy(policy)
    params = apply_overrides(params or DEVNET_MARKETS[MARKET], {**chosen.overrides, **(overrides or {})})
    lab = Lab(chosen, scenario, path, seed, population or Population(), params)
    return lab.run(), lab
