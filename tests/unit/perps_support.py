"""Helpers for the perps tests: signed records, an in-process exchange with a
log of everything it applied, replay, and state summaries."""
from __future__ import annotations

import msgspec

from sequencer.core import eip712, signing
from sequencer.core.hashing import keccak
from sequencer.core.markets import DEVNET_MARKETS, DEVNET_ORACLE_KEYS, USDC
from sequencer.core.presets import DEVNET
from sequencer.core.records import OraclePrice, Record
from sequencer.core.transition import Context
from sequencer.lab.venue import Venue

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


class Sim(Venue):
    """A sequencer in a test: the lab's Venue (sequencer.lab.venue) with the
    named test keys: every record signed, prices signed by the devnet oracle
    keys, signatures checked (``CTX``), block time from ``T0``."""

    ORDER_LIFETIME_MS = 3_600_000

    def __init__(self, fund: int = 0, ctx: Context = CTX, **balances: int) -> None:
        super().__init__(balances, fund=fund, markets=ctx.markets or DEVNET_MARKETS, start_ms=T0, ctx=ctx)

    def address(self, name: str) -> bytes:
        return ADDR[name]

    def sign(self, record: Record, name: str) -> Record:
        return sign(record, KEYS[name])

    def oracle_record(self, market: int, price: int, timestamp_ms: int) -> OraclePrice:
        return sign_oracle(market, price, timestamp_ms)

    def position(self, name: str, market: int = BTC):
        """The position, or None when the account never had one in the market."""
        return self.state.positions.get((ADDR[name], market))

    def size(self, name: str, market: int = BTC) -> int:
        position = self.position(name, market)
        return position.size if position else 0
