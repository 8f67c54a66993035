"""The sequencer-side order books and the block builder's entry point, ``Exchange``.

Matching is not settlement (DESIGN.md): the Exchange decides who trades with
whom (price-time priority per market, partial fills, immediate-or-cancel,
post-only, self-trade prevention, reduce-only, pre-trade risk) and emits
Trade records; every record goes through ``transition.apply_record`` like any
replica applies it, so the state here is exactly the state an executor
rebuilds from the log.  After an oracle price (or a funding tick) it emits a
Liquidate record for every position that is liquidatable (rules v3: and the
Deleverage records that take its ladder steps against named counterparties,
then, outside the backstop policy, those that unwind any position the
insurance fund holds, as it does right after a ForcedClose hands it one;
docs/engine.md "Rules v3").

Pure and deterministic: no I/O, no clock (block time is passed in), no
randomness.  The books are a cache of the open orders in the state:
``rebuild(state)`` gives back the same books after a restart or a failover.

Policies (docs/engine.md):
- self-trade prevention "cancel newest": an order that would trade with an
  order of its own account is rejected whole before anything fills;
- post-only: rejected whole when it would cross;
- reduce-only: rejected unless it reduces the current position; it fills at
  most the position size;
- pre-trade risk: free collateral minus what the account's resting orders
  reserve (margin at their leverage plus the maker fee) must cover the new
  order's margin and taker fee; withdrawals, transfers and margin moves may
  not dip into the reserve;
- a resting order that fails its side of a Trade (collateral spent since, a
  reduce-only order that no longer reduces, ...) is passed over for that
  taker and stays in the book (the state still has it open).
"""
from __future__ import annotations

from bisect import bisect_left, insort
from collections import deque
from typing import Any

from msgspec.structs import replace

from sequencer.core.markets import MarketParams, get_market_table
from sequencer.core.presets import PPM
from sequencer.core.records import (AuctionBid, AuctionEnd, AdjustMargin, CancelOrder, ForcedClose, FundingTick, Liquidate, OraclePrice,
                                    PlaceOrder, Record, Trade, Transfer, Withdraw)
from sequencer.core.rules.base import TradeError, get_market_params, require_fresh_price
from sequencer.core.markets import LIQUIDATION_BACKSTOP, LIQUIDATION_BOOK_AUCTION, LIQUIDATION_BOOK_VAULT
from sequencer.core.records import Deleverage
from sequencer.core.rules.liquidation import (BOOK_POLICIES, MAX_DELEVERAGE_COUNTERPARTIES, MAX_LIQUIDATION_MAKERS_V2,
                                              absorb_funding_deficit, can_fund_pay_shortfall, close_fund_at_mark,
                                              compute_liquidation_limit, get_liquidation_rules, is_within_limit,
                                              make_deleverage_cap, process_close_at_mark,
                                              rank_by_profit_and_leverage)
from sequencer.core.rules.positions import settle_funding
from sequencer.core.rules.funding import get_due_funding_time
from sequencer.core.rules.margin import (compute_equity_scaled, compute_liquidation_size, compute_order_margin,
                                         is_liquidatable)
from sequencer.core.rules.orders import IMMEDIATE_OR_CANCEL, POST_ONLY, check_order_terms
from sequencer.core.rules.positions import INSURANCE_ADDRESS
from sequencer.core.state import Order, State, is_order_open
from sequencer.core.transition import Context, RuleError, apply_record
from sequencer.core.records import ModifyOrder, PlaceTrigger, ScheduleCancel, ScheduledCancelAll, TriggerFire
from sequencer.core.rules.orders import as_replacement
from sequencer.core.trigger_book import TriggerBook
from sequencer.core.records import VaultDeposit

MAX_LIQUIDATION_STEPS = 64
"""Partial liquidations of one position after one price update, at most
(what is left goes on at the next update, or with the next fills)."""

MAX_FUND_UNWIND_STEPS = 8
"""Deleverage records that unwind the insurance fund's position in one
market after one event, at most (6 counterparties each; what is left goes
on after the next price update or funding tick)."""

EIGHT_HOURS_MS = 8 * 3_600_000
IMPACT_MARGIN = 500 * 10**6
"""dYdX v4: the impact notional of a market is 500 USDC / IMF (25,000 USDC at 2%)."""
MAX_PREMIUM_SAMPLES = 3_600


class RefusedAfterMatching(RuleError):
    """An order refused after matching had already changed the books (it met
    its own order behind makers that could not fill, or its rest would cross
    the book): the state is reverted and the books are rebuilt from it."""


class BookOrder:
    __slots__ = ("market", "account", "nonce", "is_buy", "price", "remaining", "seq", "expiry", "leverage",
                 "reserve", "live")

    def __init__(self, market: int, account: bytes, nonce: int, is_buy: bool, price: int, remaining: int,
                 seq: int, expiry: int, leverage: int, reserve: int) -> None:
        self.market = market
        self.leverage = leverage
        self.account = account
        self.nonce = nonce
        self.is_buy = is_buy
        self.price = price
        self.remaining = remaining
        self.seq = seq
        self.expiry = expiry
        self.reserve = reserve
        self.live = True


class Side:
    """One side of a book: sorted price levels, FIFO within a level.
    Removed orders are marked dead and skipped (lazy deletion)."""
    __slots__ = ("is_buy", "prices", "levels", "sizes", "counts")

    def __init__(self, is_buy: bool) -> None:
        self.is_buy = is_buy
        self.prices: list[int] = []          # ascending
        self.levels: dict[int, deque[BookOrder]] = {}
        self.sizes: dict[int, int] = {}      # live remaining per level
        self.counts: dict[int, int] = {}     # live orders per level

    def get_price(self, rank: int) -> int | None:
        """The rank-th best price (0 = best)."""
        if rank >= len(self.prices):
            return None
        return self.prices[-1 - rank] if self.is_buy else self.prices[rank]

    def best(self) -> int | None:
        return self.get_price(0)

    def add(self, order: BookOrder, keep_priority: bool = False) -> None:
        """Append to its level, or with ``keep_priority`` put it back at its
        place by placement sequence (an order restored after a refused modify)."""
        level = self.levels.get(order.price)
        if level is None:
            level = self.levels[order.price] = deque()
            self.sizes[order.price] = 0
            self.counts[order.price] = 0
            insort(self.prices, order.price)
        if keep_priority:
            level.insert(next((i for i, o in enumerate(level) if o.seq > order.seq), len(level)), order)
        else:
            level.append(order)
        self.sizes[order.price] += order.remaining
        self.counts[order.price] += 1

    def reduce(self, order: BookOrder, amount: int) -> None:
        order.remaining -= amount
        self.sizes[order.price] -= amount

    def kill(self, order: BookOrder) -> None:
        order.live = False
        price = order.price
        self.sizes[price] -= order.remaining
        self.counts[price] -= 1
        if self.counts[price] == 0:
            del self.levels[price], self.sizes[price], self.counts[price]
            del self.prices[bisect_left(self.prices, price)]

    def iter_live(self):
        for rank in range(len(self.prices)):
            price = self.get_price(rank)
            for order in self.levels[price]:
                if order.live:
                    yield order


class Book:
    __slots__ = ("market", "bids", "asks")

    def __init__(self, market: int) -> None:
        self.market = market
        self.bids = Side(True)
        self.asks = Side(False)

    def side(self, is_buy: bool) -> Side:
        return self.bids if is_buy else self.asks


def is_crossing(is_buy: bool, limit: int, price: int) -> bool:
    return price <= limit if is_buy else price >= limit


def is_resting(order: Order, timestamp_ms: int) -> bool:
    """An order the book holds: open, not immediate-or-cancel, not expired."""
    return (not order.cancelled and order.filled < order.size and order.time_in_force != IMMEDIATE_OR_CANCEL
            and order.expiry >= timestamp_ms)


class Exchange:
    """The order books of every market, and the one entry point of the block
    builder.  Every method that takes ``state`` applies what it returns to
    it, in the returned (log) order."""

    def __init__(self, markets: dict[int, MarketParams] | None = None) -> None:
        self.markets = markets if markets is not None else get_market_table("devnet")
        self.books: dict[int, Book] = {m: Book(m) for m in self.markets}
        self.orders: dict[tuple[bytes, int], BookOrder] = {}
        self.owner_orders: dict[bytes, set[int]] = {}
        """The nonces of ``orders`` by owner (what a liquidation drops from the book)."""
        self.reserved: dict[bytes, int] = {}
        self.premium_samples: dict[int, list[int]] = {m: [] for m in self.markets}
        """Premiums (ppm) sampled at each oracle price since the market's last funding tick."""
        self.triggers = TriggerBook()
        """Pending triggers and scheduled cancel-alls (sequencer.core.trigger_book)."""

    @classmethod
    def for_context(cls, ctx: Context) -> "Exchange":
        return cls(ctx.markets or get_market_table(ctx.preset.markets))

    # --- user records -------------------------------------------------------------
    def admit(self, state: State, record: Record, timestamp_ms: int, ctx: Context) -> list[Record]:
        """Apply a user record; for a PlaceOrder also match it and apply the
        trades.  Raises RuleError with the state unchanged if it is refused."""
        return self.run_atomically(state, self.admit_record, state, record, timestamp_ms, ctx)

    def run_atomically(self, state: State, method, *args) -> list[Record]:
        """Run ``method``; if it raises, the state is as before.  An
        unexpected exception (a bug) also rebuilds the books from the state."""
        snapshot = state.snapshot()
        try:
            return method(*args)
        except RuleError as exc:
            state.revert(snapshot)
            if isinstance(exc, RefusedAfterMatching):
                self.rebuild(state)
            raise
        except Exception:
            state.revert(snapshot)
            self.rebuild(state)
            raise

    def admit_record(self, state: State, record: Record, timestamp_ms: int, ctx: Context) -> list[Record]:
        if isinstance(record, PlaceOrder):
            return self.admit_order(state, record, timestamp_ms, ctx)
        if isinstance(record, OraclePrice):
            apply_or_raise(state, record, timestamp_ms, ctx)
            return [record, *self.liquidate_market(state, record.market, timestamp_ms, ctx),
                    *self.unwind_fund(state, record.market, timestamp_ms, ctx)]
        if isinstance(record, ModifyOrder):
            return self.admit_modify(state, record, timestamp_ms, ctx)
        self.check_reserve(state, record)
        apply_or_raise(state, record, timestamp_ms, ctx)
        if isinstance(record, CancelOrder):
            self.remove_order((record.account, record.order_nonce))
            self.triggers.remove((record.account, record.order_nonce))
        elif isinstance(record, PlaceTrigger):
            self.triggers.add(record.account, record.nonce, state.triggers[(record.account, record.nonce)])
        elif isinstance(record, ScheduleCancel):
            self.triggers.set_cancel_at(record.account, record.cancel_at_ms)
        elif isinstance(record, ForcedClose):
            # like a Liquidate: the orders the rule cancelled in the state leave the book
            self.remove_cancelled_orders(state, record.account, record.market)
            # rules v3: the fund took the position over; it hands it back at once
            return [record, *self.unwind_fund(state, record.market, timestamp_ms, ctx)]
        elif isinstance(record, AuctionBid):
            # a bid that sold the lot ends the auction: a position still liquidatable goes on at once
            touched = sorted({record.account, record.owner})
            return [record, *self.liquidate_accounts(state, record.market, touched, timestamp_ms, ctx)]
        return [record]

    def check_reserve(self, state: State, record: Record) -> None:
        """Collateral reserved by resting orders cannot be withdrawn, sent or moved."""
        amount = None
        if isinstance(record, (Withdraw, Transfer, VaultDeposit)) or (isinstance(record, AdjustMargin) and record.amount > 0):
            amount = record.amount
        elif isinstance(record, AuctionBid) and record.market in self.markets:
            amount = compute_order_margin(record.size, record.price, max(1, record.leverage), 0,
                                          self.markets[record.market])
        if amount is not None:
            reserved = self.reserved.get(record.account, 0)
            account = state.accounts.get(record.account)
            free = account.collateral if account else 0
            if reserved and free - amount < reserved:
                raise RuleError("collateral_reserved",
                                f"{reserved} of the free collateral {free} is reserved by open orders; "
                                "cancel orders first")

    def admit_order(self, state: State, r: PlaceOrder, timestamp_ms: int, ctx: Context,
                    applied: Record | None = None) -> list[Record]:
        """Match and rest ``r``; ``applied`` is the record the log carries when
        it is not ``r`` itself (a ModifyOrder whose replacement ``r`` is)."""
        record = applied or r
        params = self.markets.get(r.market) or get_market_params(ctx, r.market)
        if params is None or r.market not in self.books:
            raise RuleError("unknown_market", f"market {r.market} is not configured; GET /v1/markets lists them")
        book = self.books[r.market]
        check_order_terms(r, params, ctx)
        fillable = self.check_order(state, r, book, params, timestamp_ms)
        apply_or_raise(state, record, timestamp_ms, ctx)
        trades, filled = self.match(state, r, book, fillable, timestamp_ms, ctx)
        if filled < r.size and r.time_in_force != IMMEDIATE_OR_CANCEL:
            best = book.side(not r.is_buy).best()
            if best is not None and is_crossing(r.is_buy, r.price, best):
                raise RefusedAfterMatching("would_cross_book",
                                f"the order's rest would sit at {r.price} across the best "
                                f"{'ask' if r.is_buy else 'bid'} {best}, an order that cannot fill now "
                                "(the book is never crossed)")
            order = state.orders[(r.account, r.nonce)]
            self.add_order(r.account, r.nonce, order, params)
        if not trades:
            return [record]
        touched = sorted({r.account, *(t.maker for t in trades)})
        return [record, *trades, *self.liquidate_accounts(state, r.market, touched, timestamp_ms, ctx)]

    def admit_modify(self, state: State, r: ModifyOrder, timestamp_ms: int, ctx: Context) -> list[Record]:
        """Cancel-replace: the old order leaves the book (its reserve and its
        place no longer count), the replacement is checked, matched and rested
        like a new order.  Refused before matching, the old order goes back to
        its place; refused after, the books are rebuilt from the reverted state."""
        key = (r.account, r.order_nonce)
        snapshot = state.snapshot()
        apply_or_raise(state, r, timestamp_ms, ctx)  # the rule first: a refused modify never touches the book
        state.revert(snapshot)
        old = state.orders[key]
        held = key in self.orders
        self.remove_order(key)
        try:
            return self.admit_order(state, as_replacement(r, old), timestamp_ms, ctx, applied=r)
        except RefusedAfterMatching:
            raise
        except RuleError:
            if held:
                self.add_order(r.account, r.order_nonce, old, self.markets[old.market], keep_priority=True)
            raise

    # --- pre-trade checks -----------------------------------------------------------
    def check_order(self, state: State, r: PlaceOrder, book: Book, params: MarketParams, timestamp_ms: int) -> int:
        """Refuse what must not reach the log; returns how much may fill now."""
        opposite = book.side(not r.is_buy)
        best = opposite.best()
        crosses = best is not None and is_crossing(r.is_buy, r.price, best)
        if r.time_in_force == POST_ONLY and crosses:
            raise RuleError("post_only_would_cross",
                            f"post-only order at {r.price} would cross the best {'ask' if r.is_buy else 'bid'} {best}")
        position = state.positions.get((r.account, r.market))
        size = position.size if position else 0
        closable = abs(size) if size and (size > 0) != r.is_buy else 0
        if r.reduce_only and not closable:
            raise RuleError("reduce_only", "reduce-only order would not reduce a position (none on the other side)")
        if crosses:
            self.check_self_trade(r, opposite, timestamp_ms)
        self.check_risk(state, r, params, closable, best)
        return min(r.size, closable) if r.reduce_only else r.size

    def check_self_trade(self, r: PlaceOrder, opposite: Side, timestamp_ms: int) -> None:
        """Refuse before anything is written an order that would reach its own
        order with the depth in front of it; matching refuses it whole too if
        makers in front are passed over and it reaches its own order anyway."""
        remaining = r.size
        for maker in opposite.iter_live():
            if remaining <= 0 or not is_crossing(r.is_buy, r.price, maker.price):
                return
            if maker.expiry < timestamp_ms:
                continue
            if maker.account == r.account:
                raise_self_trade(maker.nonce, RuleError)
            remaining -= maker.remaining

    def check_risk(self, state: State, r: PlaceOrder, params: MarketParams, closable: int, best: int | None) -> None:
        if r.reduce_only:
            return
        account = state.accounts.get(r.account)
        free = (account.collateral if account else 0) - self.reserved.get(r.account, 0)
        worst = r.price if r.is_buy or best is None else max(r.price, best)
        opening = max(0, r.size - closable)
        required = compute_order_margin(opening, worst, r.leverage, params.taker_fee_ppm, params)
        if free < required:
            raise RuleError("insufficient_collateral",
                            f"free collateral {free} (after {self.reserved.get(r.account, 0)} reserved by open "
                            f"orders) does not cover the order's margin and fee {required}")

    # --- matching -------------------------------------------------------------------
    def match(self, state: State, r: PlaceOrder, book: Book, fillable: int, timestamp_ms: int,
              ctx: Context) -> tuple[list[Trade], int]:
        """Fill the new order against the book in price-time priority; each
        fill is applied as a Trade.  Returns the trades and the size filled."""
        opposite = book.side(not r.is_buy)
        trades: list[Trade] = []
        remaining, rank = fillable, 0
        while remaining > 0:
            price = opposite.get_price(rank)
            if price is None or not is_crossing(r.is_buy, r.price, price):
                break
            level = opposite.levels[price]
            remaining, stop = self.match_level(state, r, opposite, level, remaining, trades, timestamp_ms, ctx)
            if stop:
                break
            if price in opposite.levels:
                rank += 1
        return trades, fillable - remaining

    def match_level(self, state: State, r: PlaceOrder, side: Side, level: deque, remaining: int,
                    trades: list[Trade], timestamp_ms: int, ctx: Context) -> tuple[int, bool]:
        i = 0
        while remaining > 0 and i < len(level):
            maker = level[i]
            if not maker.live:
                if i == 0:
                    level.popleft()
                else:
                    i += 1
                continue
            if maker.expiry < timestamp_ms:
                self.remove_order((maker.account, maker.nonce))
                continue
            if maker.account == r.account:
                raise_self_trade(maker.nonce, RefusedAfterMatching)
            fill = min(remaining, maker.remaining)
            trade = Trade(r.market, maker.account, maker.nonce, r.account, r.nonce, maker.price, fill)
            error = apply_record(state, trade, timestamp_ms, ctx)
            if error is not None:
                if isinstance(error, TradeError) and error.side == "maker":
                    i += 1  # this maker cannot trade now: pass over it, it stays in the book
                    continue
                return remaining, True
            trades.append(trade)
            remaining -= fill
            self.on_maker_fill(maker, fill, side)
        return remaining, False

    def on_maker_fill(self, maker: BookOrder, fill: int, side: Side) -> None:
        if fill == maker.remaining:
            self.remove_order((maker.account, maker.nonce))
            return
        side.reduce(maker, fill)
        if maker.reserve:
            new_reserve = compute_order_margin(maker.remaining, maker.price, maker.leverage,
                                               self.markets[maker.market].maker_fee_ppm, self.markets[maker.market])
            self.reserved[maker.account] -= maker.reserve - new_reserve
            maker.reserve = new_reserve

    # --- book upkeep ----------------------------------------------------------------
    def add_order(self, account: bytes, nonce: int, order: Order, params: MarketParams,
                  keep_priority: bool = False) -> None:
        remaining = order.size - order.filled
        reserve = 0 if order.reduce_only else compute_order_margin(remaining, order.price, order.leverage,
                                                                   params.maker_fee_ppm, params)
        book_order = BookOrder(order.market, account, nonce, order.is_buy, order.price, remaining, order.seq,
                               order.expiry, order.leverage, reserve)
        self.books[order.market].side(order.is_buy).add(book_order, keep_priority)
        self.orders[(account, nonce)] = book_order
        nonces = self.owner_orders.get(account)  # no set made and thrown away per order (setdefault)
        if nonces is None:
            self.owner_orders[account] = {nonce}
        else:
            nonces.add(nonce)
        if reserve:
            self.reserved[account] = self.reserved.get(account, 0) + reserve

    def remove_order(self, key: tuple[bytes, int]) -> None:
        book_order = self.orders.pop(key, None)
        if book_order is None:
            return
        nonces = self.owner_orders[key[0]]
        if len(nonces) == 1:
            del self.owner_orders[key[0]]
        else:
            nonces.discard(key[1])
        self.books[book_order.market].side(book_order.is_buy).kill(book_order)
        if book_order.reserve:
            left = self.reserved[book_order.account] - book_order.reserve
            if left:
                self.reserved[book_order.account] = left
            else:
                del self.reserved[book_order.account]

    def prune_expired(self, timestamp_ms: int) -> None:
        """Drop orders that expired before ``timestamp_ms`` (matching drops them lazily)."""
        for key in [k for k, o in self.orders.items() if o.expiry < timestamp_ms]:
            self.remove_order(key)

    def rebuild(self, state: State) -> None:
        """Rebuild every book from the open orders in the state (after a
        restart or a failover): the same books as before, same priorities."""
        self.books = {m: Book(m) for m in self.markets}
        self.orders.clear()
        self.owner_orders.clear()
        self.reserved.clear()
        self.triggers.rebuild(state)
        now = state.globals.timestamp_ms
        resting = [(o.seq, k, o) for k, o in state.orders.items()
                   if is_resting(o, now) and o.market in self.books and is_order_open(state, *k)]
        for _, (account, nonce), order in sorted(resting, key=lambda item: item[0]):
            self.add_order(account, nonce, order, self.markets[order.market])

    # --- oracle, liquidations, funding ---------------------------------------------------
    def on_oracle_price(self, state: State, record: OraclePrice, timestamp_ms: int, ctx: Context) -> list[Record]:
        """Apply a price, then liquidate every position it made liquidatable."""
        def apply_price() -> list[Record]:
            apply_or_raise(state, record, timestamp_ms, ctx)
            return [record, *self.liquidate_market(state, record.market, timestamp_ms, ctx),
                    *self.unwind_fund(state, record.market, timestamp_ms, ctx)]
        out = self.run_atomically(state, apply_price)
        self.sample_premium(record.market, record.price)
        return out

    def liquidate_market(self, state: State, market_id: int, timestamp_ms: int, ctx: Context) -> list[Record]:
        targets = sorted(address for (address, m), p in state.positions.items()
                         if m == market_id and p.size and address != INSURANCE_ADDRESS)
        return self.liquidate_accounts(state, market_id, targets, timestamp_ms, ctx)

    def liquidate_accounts(self, state: State, market_id: int, targets: list[bytes], timestamp_ms: int,
                           ctx: Context) -> list[Record]:
        """Liquidate each target's position while it is liquidatable (partial
        steps); the orders a liquidation cancels in the state leave the book."""
        params = self.markets[market_id]
        positions, markets = state.positions, state.markets
        out: list[Record] = []
        for address in targets:  # after every taker's fills: most have no position at risk, so check cheaply
            passed_over: set[tuple[bytes, int]] | None = None
            for step in range(MAX_LIQUIDATION_STEPS):
                position = positions.get((address, market_id))
                if position is None or not position.size:
                    break
                market = markets[market_id]
                try:
                    mark = require_fresh_price(market, params, timestamp_ms)
                except RuleError:
                    break
                if not is_liquidatable(position, mark, market, params):
                    break
                if passed_over is None:
                    passed_over = set()
                was_in_auction = (address, market_id) in state.auctions
                record = self.apply_liquidation(state, address, position, mark, params, passed_over,
                                                timestamp_ms, ctx)
                if record is None:
                    break
                out.append(record)
                self.remove_cancelled_orders(state, address, market_id)
                if (was_in_auction and (address, market_id) not in state.auctions and isinstance(record, Liquidate)
                        and get_liquidation_rules(ctx).named_ladder):
                    # a position gone bankrupt in auction (only a zero-maker Liquidate ends one): v3
                    # sends it down the ladder whole, as v1 and v2 did inside the Liquidate
                    out += self.ladder_lots(state, address, market_id, abs(position.size), timestamp_ms, ctx)
        return out

    def apply_liquidation(self, state: State, address: bytes, position, mark: int, params: MarketParams,
                          passed_over: set, timestamp_ms: int, ctx: Context) -> Liquidate | Deleverage | None:
        """Apply one Liquidate naming the makers the liquidation order meets in
        this book (book-first policies; none when the book has none within the
        bankruptcy price, so what is left goes down the ladder); a maker that
        could not fill is passed over and the record made again without it
        (after as many tries as the rules' maker cap, with none).  None if the
        rule refused it.  The steps of one price update are bounded
        (``MAX_LIQUIDATION_STEPS``): when they run out while the book still
        has makers, the rest waits for the next update rather than going down
        the ladder, so dust orders at the top of the book cannot push a
        position past real liquidity to a close at the mark."""
        market_id = params.id
        rules = get_liquidation_rules(ctx)
        max_makers = rules.max_makers
        for attempt in range(max_makers + 1):
            if attempt == max_makers:     # the ladder takes the step
                makers = ()
            else:
                makers = self.find_liquidation_makers(state, address, position, mark, params, passed_over,
                                                      timestamp_ms, max_makers)
            if not makers and rules.named_ladder:
                return self.apply_named_ladder_step(state, address, position, mark, params, timestamp_ms, ctx)
            record = Liquidate(address, market_id, makers)
            before = {key: state.orders[key].filled for key in makers}
            snapshot = state.snapshot()
            if apply_record(state, record, timestamp_ms, ctx) is not None:
                state.revert(snapshot)
                return None
            unfilled = [key for key in makers if state.orders[key].filled == before[key]]
            if unfilled:
                state.revert(snapshot)
                passed_over.update(unfilled)
                continue
            state.commit(snapshot)
            for key, filled in before.items():
                book_order = self.orders.get(key)
                if book_order is not None:
                    self.on_maker_fill(book_order, state.orders[key].filled - filled,
                                       self.books[market_id].side(book_order.is_buy))
            return record
        return None

    def apply_named_ladder_step(self, state: State, address: bytes, position, mark: int, params: MarketParams,
                                timestamp_ms: int, ctx: Context) -> Liquidate | Deleverage | None:
        """Rules v3, a step the book does not take: a Liquidate naming no makers
        where it acts (the fund takes the step over under backstop, an auction
        starts under book+auction, the vault takes lots under book+vault, the
        auction of a position gone bankrupt ends), else a Deleverage naming the
        counterparties (``choose_deleverage_counterparties``).  A zero-maker
        Liquidate that would only settle funding and cancel orders is not
        written: the Deleverage does both.  None if the rule refused the record
        or no opposite position can take the step (it waits for the next update)."""
        key = (address, params.id)
        if params.liquidation_policy in ZERO_MAKER_POLICIES or key in state.auctions:
            record = Liquidate(address, params.id, ())
            was_in_auction = key in state.auctions
            snapshot = state.snapshot()
            if apply_record(state, record, timestamp_ms, ctx) is not None:
                state.revert(snapshot)
                return None
            after = state.positions.get(key)
            if (after.size if after else 0) != position.size or (key in state.auctions) != was_in_auction:
                state.commit(snapshot)
                return record
            state.revert(snapshot)
        return self.apply_deleverage(state, address, position, mark, params, timestamp_ms, ctx)

    def apply_deleverage(self, state: State, address: bytes, position, mark: int, params: MarketParams,
                         timestamp_ms: int, ctx: Context) -> Deleverage | None:
        """Apply one Deleverage of the position naming the counterparties the
        engine chooses; None when there are none or the rule refused it."""
        counterparties = choose_deleverage_counterparties(state, address, position, mark, params)
        if not counterparties:
            return None
        record = Deleverage(address, params.id, counterparties)
        if apply_record(state, record, timestamp_ms, ctx) is not None:
            return None
        return record

    def ladder_lots(self, state: State, address: bytes, market_id: int, lots: int, timestamp_ms: int,
                    ctx: Context) -> list[Record]:
        """Rules v3: Deleverage records (no book, no new auction) while the
        position is liquidatable at a fresh mark, until ``lots`` of it have
        closed: what an auction did not sell, or the whole of a position whose
        auction ended because it went bankrupt (v1 and v2 closed them against
        the ranked opposite positions inside the AuctionEnd or the Liquidate)."""
        params = self.markets[market_id]
        key = (address, market_id)
        out: list[Record] = []
        start = state.positions.get(key)
        start_size = abs(start.size) if start else 0
        for _ in range(MAX_LIQUIDATION_STEPS):
            position = state.positions.get(key)
            if position is None or not position.size or start_size - abs(position.size) >= lots:
                break
            market = state.markets[market_id]
            try:
                mark = require_fresh_price(market, params, timestamp_ms)
            except RuleError:
                break
            if key in state.auctions or not is_liquidatable(position, mark, market, params):
                break
            record = self.apply_deleverage(state, address, position, mark, params, timestamp_ms, ctx)
            if record is None:
                break
            out.append(record)
            self.remove_cancelled_orders(state, address, market_id)
        return out

    def unwind_fund(self, state: State, market_id: int, timestamp_ms: int, ctx: Context) -> list[Record]:
        """Rules v3: Deleverage records naming the insurance fund as the account,
        while it holds a position in the market (what forced closes handed
        it) and the rule accepts them, each naming the users on the other side
        the engine picks (``choose_unwind_counterparties``); at most
        ``MAX_FUND_UNWIND_STEPS``.  Not under the backstop policy, where the
        fund holds positions by design.  The users closed at the fund's
        bankruptcy price (the fund short) keep the rest of their positions:
        any of them now liquidatable is liquidated after."""
        params = self.markets.get(market_id) if isinstance(market_id, int) else None
        if (params is None or params.liquidation_policy == LIQUIDATION_BACKSTOP
                or not get_liquidation_rules(ctx).named_ladder):
            return []
        key = (INSURANCE_ADDRESS, market_id)
        out: list[Record] = []
        for _ in range(MAX_FUND_UNWIND_STEPS):
            position = state.positions.get(key)
            if position is None or not position.size:
                break
            try:
                mark = require_fresh_price(state.markets[market_id], params, timestamp_ms)
            except RuleError:
                break
            counterparties = choose_unwind_counterparties(state, position, mark, params)
            record = Deleverage(INSURANCE_ADDRESS, market_id, counterparties)
            if not counterparties or apply_record(state, record, timestamp_ms, ctx) is not None:
                break
            out.append(record)
        touched = sorted({address for record in out for address in record.counterparties})
        return out + self.liquidate_accounts(state, market_id, touched, timestamp_ms, ctx) if touched else out

    def find_liquidation_makers(self, state: State, address: bytes, position, mark: int, params: MarketParams,
                                passed_over: set, timestamp_ms: int,
                                max_makers: int = MAX_LIQUIDATION_MAKERS_V2) -> tuple[tuple[bytes, int], ...]:
        """The resting orders a liquidation order of this step meets, best first
        (price-time priority, the book's own order), within the position's
        bankruptcy price, at most ``max_makers``; () for a policy
        without the book or a position in auction."""
        if params.liquidation_policy not in BOOK_POLICIES or (address, params.id) in state.auctions:
            return ()
        market = state.markets[params.id]
        long = position.size > 0
        limit = compute_liquidation_limit(position, market, params)
        need = compute_liquidation_size(position, mark, market, params)
        makers = []
        for order in self.books[params.id].side(long).iter_live():
            if need <= 0 or len(makers) == max_makers or not is_within_limit(long, order.price, limit):
                break
            key = (order.account, order.nonce)
            if order.expiry < timestamp_ms or order.account == address or key in passed_over:
                continue
            makers.append(key)
            need -= order.remaining
        return tuple(makers)

    def remove_cancelled_orders(self, state: State, address: bytes, market_id: int) -> None:
        """Drop from the book the owner's orders the state has cancelled (a
        liquidation, a forced close): only the owner's, through ``owner_orders``."""
        for nonce in sorted(self.owner_orders.get(address, ())):
            key = (address, nonce)
            if self.orders[key].market == market_id and not is_order_open(state, address, nonce):
                self.remove_order(key)

    def due_auction_ends(self, state: State, timestamp_ms: int, ctx: Context) -> list[Record]:
        """AuctionEnd for every liquidation auction over at this block time,
        each followed by the liquidation of what is left of the position while
        it is liquidatable (applied; one the rule refuses, e.g. on a stale
        mark, waits)."""
        def apply_ends() -> list[Record]:
            out: list[Record] = []
            for (address, market_id), auction in sorted(state.auctions.items()):
                record = AuctionEnd(address, market_id)
                if auction.end_ms <= timestamp_ms and apply_record(state, record, timestamp_ms, ctx) is None:
                    out.append(record)
                    self.remove_cancelled_orders(state, address, market_id)
                    if get_liquidation_rules(ctx).named_ladder:     # v3: the unsold lots down the ladder
                        out += self.ladder_lots(state, address, market_id,
                                                self.compute_unsold_lots(state, address, market_id, auction.size,
                                                                         timestamp_ms), timestamp_ms, ctx)
                    out += self.liquidate_accounts(state, market_id, [address], timestamp_ms, ctx)  # the rest
            return out
        return self.run_atomically(state, apply_ends)

    def compute_unsold_lots(self, state: State, address: bytes, market_id: int, unsold: int,
                            timestamp_ms: int) -> int:
        """The lots v1 and v2 sent down the ladder at an auction's end: what it
        did not sell, or the whole position if it went bankrupt (0 when there
        is no fresh mark: nothing goes on)."""
        position = state.positions.get((address, market_id))
        if position is None or not position.size:
            return 0
        params, market = self.markets[market_id], state.markets[market_id]
        try:
            mark = require_fresh_price(market, params, timestamp_ms)
        except RuleError:
            return 0
        if compute_equity_scaled(position, mark, market, params) < 0:
            return abs(position.size)
        return min(unsold, abs(position.size))

    def due_funding(self, state: State, timestamp_ms: int, ctx: Context) -> list[Record]:
        """FundingTick records due at this block time (applied), each followed
        by the liquidations it causes."""
        return self.run_atomically(state, self.apply_due_funding, state, timestamp_ms, ctx)

    def apply_due_funding(self, state: State, timestamp_ms: int, ctx: Context) -> list[Record]:
        out: list[Record] = []
        for market_id in sorted(self.markets):
            params = self.markets[market_id]
            market = state.markets.get(market_id)
            boundary = get_due_funding_time(market, params, timestamp_ms)
            if boundary is None:
                continue
            tick = FundingTick(market_id, self.compute_funding_rate(market_id, market.oracle_price), boundary)
            if apply_record(state, tick, timestamp_ms, ctx) is None:
                self.premium_samples[market_id] = []
                out.append(tick)
                out.extend(self.liquidate_market(state, market_id, timestamp_ms, ctx))
                out.extend(self.unwind_fund(state, market_id, timestamp_ms, ctx))
        return out

    # --- triggers and scheduled cancels ------------------------------------------------
    def fire_trigger(self, state: State, key: tuple[bytes, int], timestamp_ms: int, ctx: Context) -> list[Record]:
        """Fire a crossed trigger: the TriggerFire, then its immediate-or-cancel
        order matched like a new one (the liquidations its trades cause after).
        An order the pre-trade checks refuse (nothing left to reduce, not enough
        free collateral, self-trade) fills nothing; the trigger is spent either way.
        Raises RuleError, state unchanged, if the fire itself is refused."""
        account, nonce = key
        trigger = state.triggers[key]
        apply_or_raise(state, TriggerFire(account, nonce), timestamp_ms, ctx)
        self.triggers.remove(key)
        order = PlaceOrder(account, trigger.market, trigger.is_buy, trigger.price, trigger.size, trigger.leverage,
                           IMMEDIATE_OR_CANCEL, trigger.reduce_only, nonce, timestamp_ms, b"")
        params, book = self.markets[trigger.market], self.books[trigger.market]
        mark = state.snapshot()
        try:
            fillable = self.check_order(state, order, book, params, timestamp_ms)
            trades, _ = self.match(state, order, book, fillable, timestamp_ms, ctx)
        except RuleError as exc:
            state.revert(mark)
            if isinstance(exc, RefusedAfterMatching):
                self.rebuild(state)
            return [TriggerFire(account, nonce)]
        if not trades:
            return [TriggerFire(account, nonce)]
        touched = sorted({account, *(t.maker for t in trades)})
        return [TriggerFire(account, nonce), *trades,
                *self.liquidate_accounts(state, trigger.market, touched, timestamp_ms, ctx)]

    def run_scheduled_cancel(self, state: State, account: bytes, timestamp_ms: int, ctx: Context) -> list[Record]:
        """The account's due cancel-all; its orders and triggers leave the books.
        A refused one (the index was stale) is dropped from the index."""
        record = ScheduledCancelAll(account)
        error = apply_record(state, record, timestamp_ms, ctx)
        self.triggers.remove_account(account)
        if error is not None:
            self.triggers.rebuild(state)
            return []
        for key in [k for k in self.orders if k[0] == account]:
            self.remove_order(key)
        return [record]

    def sample_premium(self, market_id: int, oracle_price: int) -> None:
        samples = self.premium_samples.setdefault(market_id, [])
        if len(samples) < MAX_PREMIUM_SAMPLES:
            samples.append(self.compute_premium(market_id, oracle_price))

    def compute_premium(self, market_id: int, oracle_price: int) -> int:
        """dYdX v4 / Hyperliquid: (max(0, impact bid - oracle) - max(0, oracle - impact ask)) / oracle in
        ppm, the impact prices being the average prices of a market sell / buy of the impact notional
        (0 for a side without that depth): no single small order moves it."""
        params = self.markets[market_id]
        notional = IMPACT_MARGIN * PPM // params.initial_margin_ppm
        book = self.books[market_id]
        bid = compute_impact_price(book.bids, notional, params.scale)
        ask = compute_impact_price(book.asks, notional, params.scale)
        premium = max(0, bid - oracle_price) if bid else 0
        premium -= max(0, oracle_price - ask) if ask else 0
        return premium * PPM // oracle_price

    def compute_funding_rate(self, market_id: int, oracle_price: int) -> int:
        """The average of the impact-price premiums sampled at the oracle prices
        since the last tick and one now, taken as an 8-hour rate, pro rata per
        interval, plus the interest component, clamped to the cap."""
        params = self.markets[market_id]
        samples = [*self.premium_samples.get(market_id, ()), self.compute_premium(market_id, oracle_price)]
        premium = sum(samples) // len(samples)
        rate = premium * params.funding_interval_ms // EIGHT_HOURS_MS + params.funding_interest_ppm
        return max(-params.funding_cap_ppm, min(params.funding_cap_ppm, rate))

    # --- views -----------------------------------------------------------------------
    def book(self, market: int, depth: int = 20) -> dict[str, Any]:
        """Aggregated levels, best first: {"market", "bids": [[price, size, orders]], "asks": [...]}."""
        b = self.books[market]
        levels = {}
        for name, side in (("bids", b.bids), ("asks", b.asks)):
            rows = []
            for rank in range(min(depth, len(side.prices))):
                price = side.get_price(rank)
                rows.append([price, side.sizes[price], side.counts[price]])
            levels[name] = rows
        return {"market": market, **levels}

    def open_orders(self, account: bytes, market: int | None = None) -> list[dict[str, Any]]:
        """The account's resting orders in priority order (for GET /v1/accounts and cancel-all)."""
        return [{"market": o.market, "nonce": o.nonce, "isBuy": o.is_buy, "price": o.price, "remaining": o.remaining,
                 "expiry": o.expiry, "reserved": o.reserve}
                for (a, _), o in sorted(self.orders.items(), key=lambda kv: kv[1].seq)
                if a == account and (market is None or o.market == market)]

    def dump(self) -> dict[int, dict[str, list]]:
        """Every live order in priority order, for equality checks."""
        return {m: {name: [(o.price, o.account, o.nonce, o.remaining, o.seq) for o in side.iter_live()]
                    for name, side in (("bids", b.bids), ("asks", b.asks))}
                for m, b in sorted(self.books.items())}


ZERO_MAKER_POLICIES = frozenset({LIQUIDATION_BACKSTOP, LIQUIDATION_BOOK_AUCTION, LIQUIDATION_BOOK_VAULT})
"""Rules v3: the policies under which a Liquidate naming no makers may act
(the fund's takeover, an auction's start, the vault's step)."""


def choose_deleverage_counterparties(state: State, address: bytes, position, mark: int,
                                     params: MarketParams) -> tuple[bytes, ...]:
    """The opposite positions a Deleverage of this step names, at most
    ``MAX_DELEVERAGE_COUNTERPARTIES``, suited to the branch the rule will take
    (``process_named_ladder``), decided on a snapshot of the state (undone
    after) with the position's funding settled as the rule settles it:

    - when the fund holds the whole position's bad debt at the mark
      (``can_fund_pay_shortfall``) and the close at the mark of the step leaves
      it >= 0: the fund's own opposite position first (it unwinds what forced
      closes gave it), then the users ranked by profit x leverage
      (``rank_by_profit_and_leverage``), as many as cover the step; if the
      fund's position made the close cost too much, the ranked users alone;
    - otherwise (the rule auto-deleverages at the bankruptcy price, the fund
      taking no part): the ranked users alone, as many as cover the whole
      position with each one's cap."""
    long, market_id = position.size > 0, params.id
    users = rank_by_profit_and_leverage(state, market_id, not long, mark, params)
    fund = state.positions.get((INSURANCE_ADDRESS, market_id))
    holders = [(INSURANCE_ADDRESS, fund, 0)] if fund is not None and fund.size and (fund.size > 0) != long else []
    snapshot = state.snapshot()
    try:
        settled = absorb_funding_deficit(settle_funding(state, address, market_id, position, params))
        market = state.markets[market_id]
        if can_fund_pay_shortfall(state, settled, mark, params):
            step = compute_liquidation_size(settled, mark, market, params)
            for candidates in ([holders + users, users] if holders else [users]):
                at_mark = select_covering(candidates, step)
                if at_mark and can_close_at_mark(state, address, settled, at_mark, mark, params):
                    return tuple(address for (address, _, _), _ in at_mark)
        cap = make_deleverage_cap(settled, mark, market, params)
        chosen = select_covering(users, abs(settled.size), cap)
    finally:
        state.revert(snapshot)
    return tuple(address for (address, _, _), _ in chosen)


def can_close_at_mark(state: State, address: bytes, position, chosen: list, mark: int,
                      params: MarketParams) -> bool:
    """Whether the rule's close at the mark of the lots ``chosen`` take leaves
    the fund >= 0 (run on a snapshot, undone after)."""
    snapshot = state.snapshot()
    try:
        lots = sum(taken for _, taken in chosen)
        process_close_at_mark(state, address, position, lots, mark, params, None, [c for c, _ in chosen],
                              absorb_deficit=True)
        return state.globals.insurance_fund >= 0
    except RuleError:
        return False
    finally:
        state.revert(snapshot)


def choose_unwind_counterparties(state: State, position, mark: int, params: MarketParams) -> tuple[bytes, ...]:
    """The users a Deleverage of the insurance fund's own position names
    (``process_fund_unwind``), at most ``MAX_DELEVERAGE_COUNTERPARTIES``: those
    on the other side ranked by profit x leverage, as many as cover the
    position; when the fund cannot pay the close at the mark (decided on a
    snapshot, as the rule decides it), as many as cover it within each one's
    cap at the fund's bankruptcy price (the insurance fund as its margin)."""
    users = rank_by_profit_and_leverage(state, params.id, position.size < 0, mark, params)
    if not users:
        return ()
    snapshot = state.snapshot()
    try:
        settled = settle_funding(state, INSURANCE_ADDRESS, params.id, position, params)
        chosen = select_covering(users, abs(settled.size))
        if not can_unwind_at_mark(state, settled, chosen, mark, params):
            fund = absorb_funding_deficit(replace(settled, margin=state.globals.insurance_fund))
            cap = make_deleverage_cap(fund, mark, state.markets[params.id], params)
            chosen = select_covering(users, abs(settled.size), cap)
    finally:
        state.revert(snapshot)
    return tuple(address for (address, _, _), _ in chosen)


def can_unwind_at_mark(state: State, position, chosen: list, mark: int, params: MarketParams) -> bool:
    """Whether ``process_fund_unwind`` closes what ``chosen`` take at the mark:
    the fund holds the whole position's loss there and the close (rounded in
    its favour) leaves it >= 0 (run on a snapshot, undone after)."""
    if not can_fund_pay_shortfall(state, position, mark, params):
        return False
    snapshot = state.snapshot()
    try:
        close_fund_at_mark(state, position, mark, params, [c for c, _ in chosen])
        return state.globals.insurance_fund >= 0
    except RuleError:
        return False
    finally:
        state.revert(snapshot)


def select_covering(candidates: list, qty: int, cap=None) -> list:
    """The first candidates, in order, that take ``qty`` lots between them
    (each at most its size and ``cap``; one that can take none is passed
    over), at most ``MAX_DELEVERAGE_COUNTERPARTIES``; with the lots each takes."""
    chosen, rest = [], qty
    for candidate in candidates:
        if rest <= 0 or len(chosen) == MAX_DELEVERAGE_COUNTERPARTIES:
            break
        take = min(rest, abs(candidate[1].size))
        if cap is not None:
            take = min(take, cap(candidate[1]))
        if take > 0:
            chosen.append((candidate, take))
            rest -= take
    return chosen


def compute_impact_price(side: Side, notional: int, scale: int) -> int:
    """Average price of taking ``notional`` (quote units) from ``side``, best
    levels first; 0 when the side is not that deep."""
    taken_notional = taken_size = 0
    for rank in range(len(side.prices)):
        price = side.get_price(rank)
        size = min(side.sizes[price], -(-(notional - taken_notional) * scale // price))
        taken_size += size
        taken_notional += size * price // scale
        if taken_notional >= notional:
            return taken_notional * scale // taken_size
    return 0


def raise_self_trade(nonce: int, error: type[RuleError]) -> None:
    raise error("self_trade", f"order would trade with the account's own order {nonce} "
                              "(self-trade prevention: the new order is rejected whole)")


def apply_or_raise(state: State, record: Record, timestamp_ms: int, ctx: Context) -> None:
    error = apply_record(state, record, timestamp_ms, ctx)
    if error is not None:
        raise error


__all__ = ["Exchange", "Book", "Side", "BookOrder", "is_resting", "MAX_LIQUIDATION_STEPS"]
