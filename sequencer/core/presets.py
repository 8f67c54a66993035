"""Protocol constants, one table per preset (the consensus-specs way).

Everything the state transition reads comes from a `Preset`; a node's
operational settings (ports, paths, timeouts) live in `sequencer.node.config`.
Changing a field here changes the protocol: every executor replaying a log must
use the same preset as the sequencer that wrote it.
"""
from __future__ import annotations

import msgspec

# Units (DESIGN.md "State"): collateral in quote units with 6 decimals,
# fractions in parts per million.
COLLATERAL_DECIMALS = 6
PPM = 1_000_000

MAX_INT64 = 2**63 - 1
"""Largest integer the log, the state snapshots and the bridge carry (msgpack
int64): the bound of amounts, prices, sizes, costs and the funding index."""

MAX_BLOCK_TIME_MS = 253_402_300_799_999
"""The last millisecond of the year 9999 (UTC).  Rules v4 refuse a block dated
after it (``time_past_bound``, sequencer.core.transition.check_block_header;
onestep.vy checks the same at a block start).  Every time the state derives
from the block's then fits the 8 bytes the log and the one-step give it, the
vault's unwind nonce ``(time // vault_unwind_interval_ms) << 32 | market``
included (``Preset.__post_init__`` keeps the interval long enough).  Without
it a sequencer could date a block past the year 10,000 and write a record
that L1 cannot re-execute."""

MAX_BLOCK_BYTES = 96_000
"""Largest Kafka message (encoded block) a block may be.  The checkpointer posts
whole blocks as batch data zlib(msgpack([block bytes, ...])) and the bridge's
``propose`` takes at most MAX_BATCH_BYTES = 120,000 bytes of it
(l1_bridge/contracts/bridge.vy).  Signatures do not compress, so the budget is
on the raw bytes, which bounds the worst case: a block of n incompressible bytes
becomes at most n + 6 (msgpack framing) + 5 per 16 KiB deflate stored block + 6
(zlib header and checksum) bytes, 96,042 for n = 96,000 random bytes, which
leaves a fifth of a proposal spare.  So every block the rules accept can be posted on its own."""

SCHEMA_VERSION = 4
"""Version of the log encoding and of its rules (sequencer.core.records,
sequencer.core.rules.table): written into every Kafka message header and into
the L1 batch data header.  The rules are the table of ``Context.schema_version``
(this by default; a log written under v1 replays with ``schema_version=1``).
2: a liquidation, an auction's end and a forced close cancel the owner's orders
in the market by its order epoch, and a Liquidate names at most 4 makers.
3: the ladder closes only against the opposite positions a Deleverage record
(tag 24) names, at most 6; a Liquidate and an AuctionEnd stop where v2 ranked
every opposite position, and a forced close goes to the insurance fund.
4: a scheduled cancel-all (the dead-man's switch) cancels the account's orders
by its order epoch in every market instead of setting each order's flag."""


class Preset(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    chain_id: int
    """The L2 chain id, bound into every EIP-712 signature."""
    nonce_window: int
    """How many of an account's highest used nonces are kept.  When the window
    is full a new nonce must be above the smallest kept one (Hyperliquid keeps
    100)."""
    max_expiry_ahead_ms: int
    """A signed tx may not expire further ahead than this from block time."""
    max_block_records: int
    """Upper bound on the records in one block (one Kafka message)."""
    max_block_bytes: int = MAX_BLOCK_BYTES
    """Upper bound on the bytes of one block's message (see MAX_BLOCK_BYTES): a
    larger block is rejected by every executor (``block_too_large``)."""
    max_batch_txs: int
    """Upper bound on the txs in one POST /v1/txs."""
    max_amount: int
    """Largest amount/price/size a tx may carry: the log encodes 64-bit integers."""
    markets: str = "devnet"
    """Name of the market parameter table and oracle signer set
    (sequencer.core.markets.MARKET_TABLES / ORACLE_SETS)."""
    max_open_triggers: int = 20
    """Pending trigger orders (stop-loss / take-profit) one account may hold."""
    schedule_cancel_min_delay_ms: int = 5_000
    """A scheduled cancel-all must be at least this far after block time (Hyperliquid: 5 s)."""
    max_scheduled_cancels_per_day: int = 10
    """Scheduled cancel-alls that may run per account per UTC day (Hyperliquid: 10); past it a
    new schedule is refused until the next day, so one account cannot make every block scan its orders."""
    # The backstop vault (sequencer.core.rules.vault, docs/engine.md "Backstop vault").
    vault_lockup_ms: int = 60_000
    """Shares can be withdrawn this long after the depositor's last deposit."""
    vault_min_deposit: int = 10 * 10**6
    """Smallest VaultDeposit (10 USDC): with the virtual share, what makes a first-depositor
    donation attack cost far more than it can take from the next depositor's rounding."""
    vault_max_leverage: int = 5
    """The vault posts margin for positions it takes over at this leverage (or the market's
    max leverage, if lower)."""
    vault_max_market_share_ppm: int = 500_000
    """The vault's margin in one market stays at most this share of its equity."""
    vault_unwind_interval_ms: int = 60_000
    """At most one VaultUnwind per market in each such interval of block time."""
    vault_unwind_ppm: int = 100_000
    """A VaultUnwind sends this share of the vault's position (rounded up to a step) into the book."""
    vault_unwind_slippage_ppm: int = 10_000
    """An unwind's limit is this far from the mark (a sell below it, a buy above it)."""

    def __post_init__(self) -> None:
        intervals = MAX_BLOCK_TIME_MS // self.vault_unwind_interval_ms if self.vault_unwind_interval_ms > 0 else 2**32
        if intervals >= 2**32:
            raise ValueError(f"vault_unwind_interval_ms {self.vault_unwind_interval_ms} is too short: the unwind "
                             "nonce (time // interval) << 32 | market must fit 8 bytes up to MAX_BLOCK_TIME_MS "
                             f"(at least {MAX_BLOCK_TIME_MS // 2**32 + 1} ms)")


MAINNET = Preset(
    name="mainnet",
    chain_id=7_471_001,
    nonce_window=100,
    max_expiry_ahead_ms=24 * 3600 * 1000,
    max_block_records=4096,
    max_batch_txs=1000,
    max_amount=MAX_INT64,
    markets="production",
    vault_lockup_ms=4 * 24 * 3600 * 1000,
)

DEVNET = Preset(
    name="devnet",
    chain_id=7_471_337,
    nonce_window=100,
    max_expiry_ahead_ms=24 * 3600 * 1000,
    max_block_records=4096,
    max_batch_txs=1000,
    max_amount=MAX_INT64,
)

PRESETS = {p.name: p for p in (MAINNET, DEVNET)}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; known: {', '.join(sorted(PRESETS))}") from None
