"""Helpers for the perps tests: signed records, an in-process exchange with a
log of everything it applied, replay, and state summaries."""
from __future__ import annotations

import msgspec

from sequencer.core import eip712, signing
from sequencer.core.hashing import keccak
from sequencer.core.markets import DEVNET_MARKETS, DEVNET_ORACLE_KEYS, USDC
from sequencer.core.matching import Exchange
from sequencer.core.presets import DEVNET
from sequencer.core.records import (AdjustMargin, CancelOrder, OraclePrice, PlaceOrder, Record, Transfer,
                                    Withdraw)
from sequencer.core.state import State
from sequencer.core.transition import Context, apply_record, compute_genesis_state

BRIDGE = bytes.fromhex("5fbdb2315678afecb367f032d93f642f64180aa3")
DOMAIN = eip712.Domain(DEVNET.chain_id, BRIDGE)
SEPARATOR = eip712.compute_domain_separator(DOMAIN)
CTX = Context(preset=DEVNET, domain_separator=SEPARATOR, recover=signing.get_recover("coincurve"))
FAST_CTX = Context(preset=DEVNET, domain_separator=SEPARATOR, recover=signing.get_recover("coincurve"),
                   verify_signatures=False)

NAMES = ("alice", "bob", "carol", "dave", "erin", "frank")
KEYS = {name: keccak(b"isoroll perps key " + name.encode()) for name in NAMES}
ADDR = {name: signing.address_of(key) for name, key in KEYS.items()}

BTC, ETH = 1, 2
BTC_PARAMS, ETH_PARAMS = DEVNET_MARKETS[BTC], DEVNET_MARKETS[ETH]
ONE_BTC = 10**8
T0 = 1_700_000_020_000  # a multiple of the devnet funding interval plus 20 s
DAY = 86_400_000


def usd(dollars: int) -> int:
    return dollars * USDC


def sign(record, key: bytes):
    digest = eip712.compute_digest(SEPARATOR, eip712.get_primary_type(record), record)
    return msgspec.structs.replace(record, signature=signing.sign_digest(digest, key))


def sign_oracle(market: int, price: int, timestamp_ms: int, keys=DEVNET_ORACLE_KEYS[:2]) -> OraclePrice:
    record = OraclePrice(market, price, timestamp_ms, ())
    digest = eip712.compute_digest(SEPARATOR, "OraclePrice", record)
    return msgspec.structs.replace(record, signatures=tuple(signing.sign_digest(digest, k) for k in keys))


class Sim:
    """A sequencer in a test: genesis balances, an Exchange, block time, and
    the log of every record applied (with its block time) for replay."""

    def __init__(self, fund: int = 0, ctx: Context = CTX, **balances: int) -> None:
        self.ctx = ctx
        self.genesis = [(ADDR[name], amount) for name, amount in balances.items()]
        self.fund = fund
        self.state = self.make_genesis()
        self.exchange = Exchange(DEVNET_MARKETS)
        self.now = T0
        self.nonces = {name: 0 for name in NAMES}
        self.log: list[tuple[int, Record]] = []

    def make_genesis(self) -> State:
        state = compute_genesis_state(self.genesis)
        g = state.globals
        state.globals = msgspec.structs.replace(g, insurance_fund=self.fund,
                                                total_deposited=g.total_deposited + self.fund)
        return state

    def next_nonce(self, name: str) -> int:
        self.nonces[name] += 1
        return self.nonces[name]

    def order(self, name: str, is_buy: bool, price: int, size: int, *, market: int = BTC, leverage: int = 10,
              tif: int = 0, reduce_only: bool = False, expiry: int | None = None) -> PlaceOrder:
        expiry = self.now + 3_600_000 if expiry is None else expiry
        return sign(PlaceOrder(ADDR[name], market, is_buy, price, size, leverage, tif, reduce_only,
                               self.next_nonce(name), expiry, b""), KEYS[name])

    def cancel_record(self, name: str, order_nonce: int) -> CancelOrder:
        return sign(CancelOrder(ADDR[name], order_nonce, self.next_nonce(name), self.now + 60_000, b""), KEYS[name])

    def adjust_record(self, name: str, amount: int, market: int = BTC) -> AdjustMargin:
        return sign(AdjustMargin(ADDR[name], market, amount, self.next_nonce(name), self.now + 60_000, b""),
                    KEYS[name])

    def withdraw_record(self, name: str, amount: int) -> Withdraw:
        return sign(Withdraw(ADDR[name], amount, self.next_nonce(name), self.now + 60_000, b""), KEYS[name])

    def transfer_record(self, name: str, to: str, amount: int) -> Transfer:
        return sign(Transfer(ADDR[name], ADDR[to], amount, self.next_nonce(name), self.now + 60_000, b""),
                    KEYS[name])

    # --- through the exchange (what the block builder does) -------------------------
    def submit(self, record: Record) -> list[Record]:
        out = self.exchange.admit(self.state, record, self.now, self.ctx)
        self.log.extend((self.now, r) for r in out)
        return out

    def place(self, name: str, is_buy: bool, price: int, size: int, **kw) -> list[Record]:
        return self.submit(self.order(name, is_buy, price, size, **kw))

    def set_price(self, price: int, market: int = BTC, advance_ms: int = 1) -> list[Record]:
        """An oracle price and the liquidations it causes; a jump the rules hold
        pending is posted again 1 ms later, as a feed's next print confirms it."""
        out = self.post_price(price, market, advance_ms)
        if self.state.markets[market].pending_oracle_price:
            out += self.post_price(price, market, 1)
        return out

    def post_price(self, price: int, market: int = BTC, advance_ms: int = 1) -> list[Record]:
        """One signed oracle price at ``now + advance_ms`` through the Exchange."""
        self.now += advance_ms
        out = self.exchange.on_oracle_price(self.state, sign_oracle(market, price, self.now), self.now, self.ctx)
        self.log.extend((self.now, r) for r in out)
        return out

    def funding(self, advance_ms: int = 0) -> list[Record]:
        self.now += advance_ms
        out = self.exchange.due_funding(self.state, self.now, self.ctx)
        self.log.extend((self.now, r) for r in out)
        return out

    def apply_price(self, price: int, market: int = BTC):
        """The oracle price alone at ``now`` through ``apply_record`` (no
        liquidation scan); a jump the rules hold pending gets its confirming
        print at ``now + 1`` (sequencer.core.rules.mark)."""
        error = self.apply(sign_oracle(market, price, self.now))
        if error is None and self.state.markets[market].pending_oracle_price:
            self.now += 1
            error = self.apply(sign_oracle(market, price, self.now))
        return error

    def apply(self, record: Record):
        """Apply a record directly (a sequencer decision under test); returns the error or None."""
        error = apply_record(self.state, record, self.now, self.ctx)
        if error is None:
            self.log.append((self.now, record))
        return error

    def replay(self, ctx: Context | None = None) -> State:
        state = self.make_genesis()
        for timestamp_ms, record in self.log:
            error = apply_record(state, record, timestamp_ms, ctx or self.ctx)
            assert error is None, (record, error)
        return state

    # --- views ------------------------------------------------------------------------
    def free(self, name: str) -> int:
        account = self.state.accounts.get(ADDR[name])
        return account.collateral if account else 0

    def position(self, name: str, market: int = BTC):
        return self.state.positions.get((ADDR[name], market))

    def size(self, name: str, market: int = BTC) -> int:
        p = self.position(name, market)
        return p.size if p else 0
