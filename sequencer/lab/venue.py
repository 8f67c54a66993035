"""An exchange in process: genesis balances, the block builder's ``Exchange``,
block time, and the log of every record applied (for replay checks).

Records are unsigned and the context does not check signatures: the lab and
the adversary tests are about the margin rules, not about who signed.  The
perps tests' ``Sim`` (tests/unit/perps_support.py) is this venue with keys:
it overrides ``address``, ``sign`` and ``oracle_record`` and nothing else, so
the order-book helpers have one definition."""
from __future__ import annotations

import msgspec

from sequencer.core import eip712, signing
from sequencer.core.hashing import keccak
from sequencer.core.markets import DEVNET_MARKETS, MarketParams
from sequencer.core.matching import Exchange
from sequencer.core.presets import DEVNET
from sequencer.core.records import (AdjustMargin, CancelOrder, Deposit, OraclePrice, PlaceOrder, Record, Transfer,
                                    Withdraw)
from sequencer.core.rules.orders import GOOD_TILL_CANCEL
from sequencer.core.state import Position, State
from sequencer.core.transition import Context, RuleError, apply_record, compute_genesis_state

__all__ = ["Venue", "get_lab_address"]
VENUE_START_MS = 1_700_000_020_000
"""Block time the venue starts at: a multiple of the devnet funding interval plus 20 s."""


def get_lab_address(name: str) -> bytes:
    """A deterministic 20-byte address for a named simulated account."""
    return keccak(b"isoroll lab account " + name.encode())[-20:]


def make_unchecked_context(markets: dict[int, MarketParams]) -> Context:
    separator = eip712.compute_domain_separator(eip712.Domain(DEVNET.chain_id, bytes(20)))
    return Context(preset=DEVNET, domain_separator=separator, recover=signing.get_recover("coincurve"),
                   verify_signatures=False, markets=markets)


class Venue:
    """One sequencer: ``place``/``submit`` go through ``Exchange.admit`` (the
    block builder's path), ``apply`` through ``apply_record`` alone."""

    ORDER_LIFETIME_MS = 24 * 3_600_000
    """An order's expiry after ``now`` unless given."""

    def __init__(self, balances: dict[str, int], *, fund: int = 0, markets: dict[int, MarketParams] | None = None,
                 start_ms: int = VENUE_START_MS, ctx: Context | None = None) -> None:
        self.markets = markets if markets is not None else DEVNET_MARKETS
        self.ctx = ctx if ctx is not None else make_unchecked_context(self.markets)
        self.genesis = [(self.address(name), amount) for name, amount in balances.items()]
        self.fund = fund
        self.state = self.make_genesis()
        self.exchange = Exchange(self.markets)
        self.now = start_ms
        self.nonces: dict[str, int] = {}
        self.log: list[tuple[int, Record]] = []

    # --- who signs (the perps tests' Sim overrides these three) ------------------------------
    def address(self, name: str) -> bytes:
        return get_lab_address(name)

    def sign(self, record: Record, name: str) -> Record:
        """The record as ``name`` would sign it (unsigned here: signatures are not checked)."""
        return record

    def oracle_record(self, market: int, price: int, timestamp_ms: int) -> OraclePrice:
        return OraclePrice(market, price, timestamp_ms, ())

    def make_genesis(self) -> State:
        state = compute_genesis_state(self.genesis)
        g = state.globals
        state.globals = msgspec.structs.replace(g, insurance_fund=self.fund,
                                                total_deposited=g.total_deposited + self.fund)
        return state

    def next_nonce(self, name: str) -> int:
        self.nonces[name] = self.nonces.get(name, 0) + 1
        return self.nonces[name]

    # --- records ---------------------------------------------------------------------
    def order(self, name: str, is_buy: bool, price: int, size: int, *, market: int = 1, leverage: int = 10,
              tif: int = GOOD_TILL_CANCEL, reduce_only: bool = False, expiry: int | None = None) -> PlaceOrder:
        expiry = self.now + self.ORDER_LIFETIME_MS if expiry is None else expiry
        return self.sign(PlaceOrder(self.address(name), market, is_buy, price, size, leverage, tif, reduce_only,
                                    self.next_nonce(name), expiry, b""), name)

    def cancel_record(self, name: str, order_nonce: int) -> CancelOrder:
        return self.sign(CancelOrder(self.address(name), order_nonce, self.next_nonce(name), self.now + 60_000, b""),
                         name)

    def adjust_record(self, name: str, amount: int, market: int = 1) -> AdjustMargin:
        return self.sign(AdjustMargin(self.address(name), market, amount, self.next_nonce(name), self.now + 60_000,
                                      b""), name)

    def withdraw_record(self, name: str, amount: int) -> Withdraw:
        return self.sign(Withdraw(self.address(name), amount, self.next_nonce(name), self.now + 60_000, b""), name)

    def transfer_record(self, name: str, to: str, amount: int) -> Transfer:
        return self.sign(Transfer(self.address(name), self.address(to), amount, self.next_nonce(name),
                                  self.now + 60_000, b""), name)

    def deposit_record(self, name: str, amount: int) -> Deposit:
        return Deposit(self.state.globals.inbox_count, self.address(name), amount)

    # --- the block builder's path ---------------------------------------------------------
    def submit(self, record: Record) -> list[Record]:
        """``Exchange.admit``: raises RuleError with the state unchanged if refused."""
        out = self.exchange.admit(self.state, record, self.now, self.ctx)
        self.log.extend((self.now, r) for r in out)
        return out

    def place(self, name: str, is_buy: bool, price: int, size: int, **kw) -> list[Record]:
        return self.submit(self.order(name, is_buy, price, size, **kw))

    def try_place(self, name: str, is_buy: bool, price: int, size: int, **kw) -> list[Record] | RuleError:
        try:
            return self.place(name, is_buy, price, size, **kw)
        except RuleError as exc:
            return exc

    def set_price(self, price: int, market: int = 1, advance_ms: int = 1) -> list[Record]:
        """An oracle price at ``now + advance_ms`` and the liquidations it causes.
        A jump the rules hold pending is posted again 1 ms later, as a feed's
        next print confirms it (sequencer.core.rules.mark)."""
        out = self.post_price(price, market, advance_ms)
        if self.state.markets[market].pending_oracle_price:
            out += self.post_price(price, market, 1)
        return out

    def post_price(self, price: int, market: int = 1, advance_ms: int = 1) -> list[Record]:
        """One oracle price at ``now + advance_ms`` through the Exchange."""
        self.now += advance_ms
        record = self.oracle_record(market, price, self.now)
        out = self.exchange.on_oracle_price(self.state, record, self.now, self.ctx)
        self.log.extend((self.now, r) for r in out)
        return out

    def funding(self, advance_ms: int = 0) -> list[Record]:
        self.now += advance_ms
        out = self.exchange.due_funding(self.state, self.now, self.ctx)
        self.log.extend((self.now, r) for r in out)
        return out

    # --- the rules alone ----------------------------------------------------------------
    def apply_price(self, price: int, market: int = 1) -> RuleError | None:
        """The oracle price alone at ``now`` through ``apply_record`` (no
        liquidation scan); a jump the rules hold pending gets its confirming
        print at ``now + 1`` (sequencer.core.rules.mark)."""
        error = self.apply(self.oracle_record(market, price, self.now))
        if error is None and self.state.markets[market].pending_oracle_price:
            self.now += 1
            error = self.apply(self.oracle_record(market, price, self.now))
        return error

    def apply(self, record: Record) -> RuleError | None:
        """``apply_record`` only (a sequencer decision under test); the error or None."""
        error = apply_record(self.state, record, self.now, self.ctx)
        if error is None:
            self.log.append((self.now, record))
        return error

    def replay(self, ctx: Context | None = None) -> State:
        """The log applied again from genesis (under ``ctx``, by default this venue's)."""
        state = self.make_genesis()
        for timestamp_ms, record in self.log:
            error = apply_record(state, record, timestamp_ms, ctx or self.ctx)
            if error is not None:
                raise AssertionError(f"replay refused {record}: {error}")
        return state

    # --- views --------------------------------------------------------------------------
    def free(self, name: str) -> int:
        account = self.state.accounts.get(self.address(name))
        return account.collateral if account else 0

    def position(self, name: str, market: int = 1) -> Position:
        return self.state.positions.get((self.address(name), market)) or Position()

    def size(self, name: str, market: int = 1) -> int:
        return self.position(name, market).size

    def mark(self, market: int = 1) -> int:
        return self.state.markets[market].mark_price
