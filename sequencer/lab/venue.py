"""An exchange in process: genesis balances, the block builder's ``Exchange``,
block time, and the log of every record applied (for replay checks).

Records are unsigned and the context does not check signatures: the lab and
the adversary tests are about the margin rules, not about who signed."""
from __future__ import annotations

import msgspec

from sequencer.core import eip712, signing
from sequencer.core.hashing import keccak
from sequencer.core.markets import DEVNET_MARKETS, MarketParams
from sequencer.core.matching import Exchange
from sequencer.core.presets import DEVNET
from sequencer.core.records import (AdjustMargin, CancelOrder, Deposit, OraclePrice, PlaceOrder, Record,
                                    Withdraw)
from sequencer.core.state import Position, State
from sequencer.core.rules.orders import GOOD_TILL_CANCEL, IMMEDIATE_OR_CANCEL, POST_ONLY
from sequencer.core.transition import Context, RuleError, apply_record, compute_genesis_state

__all__ = ["Venue", "get_lab_address", "GOOD_TILL_CANCEL", "IMMEDIATE_OR_CANCEL", "POST_ONLY"]
VENUE_START_MS = 1_700_000_020_000
"""Block time the venue starts at: a multiple of the devnet funding interval plus 20 s."""
ORDER_LIFETIME_MS = 24 * 3_600_000


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

    def __init__(self, balances: dict[str, int], *, fund: int = 0,
                 markets: dict[int, MarketParams] | None = None, start_ms: int = VENUE_START_MS) -> None:
        self.markets = markets if markets is not None else DEVNET_MARKETS
        self.ctx = make_unchecked_context(self.markets)
        self.genesis = [(get_lab_address(name), amount) for name, amount in balances.items()]
        self.fund = fund
        self.state = self.make_genesis()
        self.exchange = Exchange(self.markets)
        self.now = start_ms
        self.nonces: dict[str, int] = {}
        self.log: list[tuple[int, Record]] = []

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
              tif: int = GOOD_TILL_CANCEL, reduce_only: bool = False) -> PlaceOrder:
        return PlaceOrder(get_lab_address(name), market, is_buy, price, size, leverage, tif, reduce_only,
                          self.next_nonce(name), self.now + ORDER_LIFETIME_MS, b"")

    def cancel_record(self, name: str, order_nonce: int) -> CancelOrder:
        return CancelOrder(get_lab_address(name), order_nonce, self.next_nonce(name), self.now + 60_000, b"")

    def adjust_record(self, name: str, amount: int, market: int = 1) -> AdjustMargin:
        return AdjustMargin(get_lab_address(name), market, amount, self.next_nonce(name), self.now + 60_000, b"")

    def withdraw_record(self, name: str, amount: int) -> Withdraw:
        return Withdraw(get_lab_address(name), amount, self.next_nonce(name), self.now + 60_000, b"")

    def deposit_record(self, name: str, amount: int) -> Deposit:
        return Deposit(self.state.globals.inbox_count, get_lab_address(name), amount)

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
        record = OraclePrice(market, price, self.now, ())
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
        error = self.apply(OraclePrice(market, price, self.now, ()))
        if error is None and self.state.markets[market].pending_oracle_price:
            self.now += 1
            error = self.apply(OraclePrice(market, price, self.now, ()))
        return error

    def apply(self, record: Record) -> RuleError | None:
        """``apply_record`` only (a sequencer decision under test); the error or None."""
        error = apply_record(self.state, record, self.now, self.ctx)
        if error is None:
            self.log.append((self.now, record))
        return error

    def replay(self) -> State:
        state = self.make_genesis()
        for timestamp_ms, record in self.log:
            error = apply_record(state, record, timestamp_ms, self.ctx)
            if error is not None:
                raise AssertionError(f"replay refused {record}: {error}")
        return state

    # --- views --------------------------------------------------------------------------
    def address(self, name: str) -> bytes:
        return get_lab_address(name)

    def free(self, name: str) -> int:
        account = self.state.accounts.get(get_lab_address(name))
        return account.collateral if account else 0

    def position(self, name: str, market: int = 1) -> Position:
        return self.state.positions.get((get_lab_address(name), market)) or Position()

    def size(self, name: str, market: int = 1) -> int:
        return self.position(name, market).size

    def mark(self, market: int = 1) -> int:
        return self.state.markets[market].mark_price
