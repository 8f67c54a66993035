# pragma version ~=0.4.1
"""
@title isoroll one-step, OraclePrice
@notice onestep.vy hands this contract the OraclePrice items (tag 32) in an
    open block; it re-executes rules.funding.process_oracle_price and
    rules.mark.apply_oracle_price against the witness (the market leaf,
    written if the price applies or is held pending) and returns the state
    root after it and the receipt outcome. The twin of prover/plan_oracle.py.
    The oracle set (signers, quorum) is fixed at deployment: the rules'
    (sequencer.core.rules.base.get_oracle_set). The rules it mirrors verify
    signatures (Context.verify_signatures); a context that skips them cannot
    agree with this contract.
"""
import records
import trace
import onestep_lib as lib
import onestep_market as mk

initializes: lib
initializes: mk

exports: (lib.DOMAIN_SEPARATOR, lib.MAX_AMOUNT, lib.MAX_EXPIRY_AHEAD_MS, lib.NONCE_WINDOW, mk.market_table)

MAX_OPENINGS: constant(uint256) = trace.MAX_OPENINGS
MAX_NONCES: constant(uint256) = trace.MAX_NONCES
MAX_ITEM: constant(uint256) = records.MAX_ITEM_SIZE
MAX_LEAF: constant(uint256) = trace.MAX_LEAF
MAX_INT64: constant(uint256) = 2**63 - 1
PPM: constant(uint256) = 1_000_000
TAG_ORACLE_PRICE: constant(uint256) = 32
# the item: kind, tag, market (4), price (8), timestamp_ms (8), the count of
# signatures (1), then that many 65-byte signatures r || s || v
COUNT_AT: constant(uint256) = 22
SIGNATURES_AT: constant(uint256) = 23
SIGNATURE_SIZE: constant(uint256) = 65
MAX_SIGNATURES: constant(uint256) = 15
MAX_SIGNERS: constant(uint256) = 15
MARKET_WORDS: constant(uint256) = 12
MARKET_LEAF_SIZE: constant(uint256) = 32 * MARKET_WORDS
ORACLE_PRICE_TYPEHASH: constant(bytes32) = keccak256("OraclePrice(uint32 market,uint256 price,uint64 timestamp)")

# the oracle set: k (ORACLE_QUORUM) of these n signers must sign a price
oracle_signers: public(DynArray[address, MAX_SIGNERS])
is_oracle_signer: public(HashMap[address, bool])
ORACLE_QUORUM: public(immutable(uint256))


@deploy
def __init__(domain_separator: bytes32, max_amount: uint256, max_expiry_ahead_ms: uint256, nonce_window: uint256,
             markets: DynArray[mk.MarketParams, mk.MAX_MARKETS], signers: DynArray[address, MAX_SIGNERS],
             quorum: uint256):
    """
    @param signers at most 15 distinct non-zero addresses: a record holds at
        most 15 signatures, so more than n of them always repeat a signer or
        name a non-signer (the rule fails them, as the item's NOOP does)
    @param quorum stored as given: 0, or more than n, accepts no price (as the rule)
    """
    lib.__init__(domain_separator, max_amount, max_expiry_ahead_ms, nonce_window)
    mk.init_markets(markets)
    # a price past 8 bytes (a NOOP item) must be one the rule refuses too
    assert max_amount <= MAX_INT64, "max amount"
    for s: address in signers:
        assert s != empty(address), "oracle signer: zero address"
        assert not self.is_oracle_signer[s], "oracle signer listed twice"
        self.is_oracle_signer[s] = True
    self.oracle_signers = signers
    ORACLE_QUORUM = quorum


# --- the rule ---------------------------------------------------------------------

@internal
@view
def quorum_signed(digest: bytes32, item: Bytes[MAX_ITEM], count: uint256) -> bool:
    """rules.funding.verify_oracle_quorum: every signature recovers (v 27/28,
    0 < r, s < n, low s: lib.recover) an oracle signer not seen before, and
    there are at least the quorum (> 0) of them."""
    seen: DynArray[address, MAX_SIGNATURES] = []
    for i: uint256 in range(count, bound=MAX_SIGNATURES):
        signer: address = lib.recover(digest, item, SIGNATURES_AT + SIGNATURE_SIZE * i)
        if signer == empty(address) or not self.is_oracle_signer[signer] or signer in seen:
            return False
        seen.append(signer)
    return ORACLE_QUORUM > 0 and count >= ORACLE_QUORUM


@internal
@pure
def market_words(op: trace.Opening) -> uint256[MARKET_WORDS]:
    """The market leaf's 12 words (sequencer/core/commitment.py
    encode_market_leaf); all zero when absent (rules.base.get_market)."""
    words: uint256[MARKET_WORDS] = empty(uint256[MARKET_WORDS])
    if not op.present:
        return words
    assert len(op.value) == MARKET_LEAF_SIZE, "witness: market leaf"
    for i: uint256 in range(MARKET_WORDS):
        words[i] = convert(extract32(op.value, 32 * i), uint256)
    return words


@internal
@pure
def distance(a: uint256, b: uint256) -> uint256:
    if a > b:
        return a - b
    return b - a


@internal
@pure
def median3(a: int256, b: int256, c: int256) -> int256:
    """rules.mark.compute_median3."""
    return max(min(a, b), min(max(a, b), c))


@internal
@pure
def compute_mark(w: uint256[MARKET_WORDS], price: uint256, p: mk.MarketParams, now: uint256) -> uint256:
    """rules.mark.compute_mark_price with the oracle at `price`:
    median(oracle, oracle + the basis EMA clamped to the band, the last
    trade while fresh, else the oracle)."""
    oracle: int256 = convert(price, int256)
    band: int256 = convert(price * p.mark_basis_band_ppm // PPM, int256)
    basis: int256 = max(-band, min(band, convert(convert(w[mk.MARKET_BASIS_EMA], bytes32), int256)))
    trade: int256 = oracle
    last: uint256 = w[mk.MARKET_LAST_TRADE_PRICE]
    if last != 0 and now <= w[mk.MARKET_LAST_TRADE_TIME] + p.mark_trade_max_age_ms:
        trade = convert(last, int256)
    return convert(self.median3(oracle, oracle + basis, trade), uint256)


@internal
@pure
def after_price(w: uint256[MARKET_WORDS], price: uint256, at: uint256, now: uint256,
                p: mk.MarketParams) -> uint256[MARKET_WORDS]:
    """rules.mark.apply_oracle_price: a jump (more than oracle_jump_ppm from
    the applied price within oracle_jump_window_ms of it) not confirming
    the pending price (within oracle_confirm_band_ppm of it) is held
    pending; otherwise the price applies, the pending one is dropped and
    the mark is recomputed at the block time. `at` is after both times."""
    out: uint256[MARKET_WORDS] = w
    applied: uint256 = w[mk.MARKET_ORACLE_PRICE]
    pending: uint256 = w[mk.MARKET_PENDING_ORACLE_PRICE]
    jump: bool = (applied > 0 and at - w[mk.MARKET_ORACLE_TIME] <= p.oracle_jump_window_ms
                  and self.distance(price, applied) * PPM > p.oracle_jump_ppm * applied)
    confirming: bool = pending > 0 and self.distance(price, pending) * PPM <= p.oracle_confirm_band_ppm * pending
    if jump and not confirming:
        out[mk.MARKET_PENDING_ORACLE_PRICE] = price
        out[mk.MARKET_PENDING_ORACLE_TIME] = at
        return out
    out[mk.MARKET_ORACLE_PRICE] = price
    out[mk.MARKET_ORACLE_TIME] = at
    out[mk.MARKET_PENDING_ORACLE_PRICE] = 0
    out[mk.MARKET_PENDING_ORACLE_TIME] = 0
    out[mk.MARKET_MARK_PRICE] = self.compute_mark(out, price, p, now)
    return out


@internal
@view
def oracle_price(c0: lib.Cursor, ctx: trace.Ctx, item: Bytes[MAX_ITEM], count: uint256, op: trace.Opening) -> bytes32:
    """rules.funding.process_oracle_price. Witness: the market (written if it
    applies); `op` is its opening. Empty when the record fails."""
    market: uint256 = lib.word(item, 2, 4)
    price: uint256 = lib.word(item, 6, 8)
    at: uint256 = lib.word(item, 14, 8)
    found: bool = False
    p: mk.MarketParams = empty(mk.MarketParams)
    found, p = mk.market_params(market)
    if not found or price == 0 or price > lib.MAX_AMOUNT:
        return empty(bytes32)
    key: bytes32 = mk.market_key(market)
    lib.verify_leaf(c0, key, op)
    w: uint256[MARKET_WORDS] = self.market_words(op)
    if at <= max(w[mk.MARKET_ORACLE_TIME], w[mk.MARKET_PENDING_ORACLE_TIME]) or at > ctx.timestamp_ms:
        return empty(bytes32)
    digest: bytes32 = lib.eip712_digest(keccak256(abi_encode(ORACLE_PRICE_TYPEHASH, market, price, at)))
    if not self.quorum_signed(digest, item, count):
        return empty(bytes32)
    leaf: Bytes[MAX_LEAF] = abi_encode(self.after_price(w, price, at, ctx.timestamp_ms, p))
    return lib.write_leaf(c0.root, key, op, leaf)


@external
@view
def apply(state_root: bytes32, ctx: trace.Ctx, item: Bytes[MAX_ITEM], openings: DynArray[trace.Opening, MAX_OPENINGS],
          nonces: DynArray[uint256, MAX_NONCES]) -> (bytes32, bool):
    """
    @notice The state root after an OraclePrice item in an open block, and the
        receipt outcome (a failed record changes nothing). A signature count
        above 15 or a length that does not match it is a NOOP, as in
        prover/records.py.
    """
    n: uint256 = len(item)
    if ctx.block_open == 0 or n < SIGNATURES_AT or lib.word(item, 0, 1) != 2 or lib.word(item, 1, 1) != TAG_ORACLE_PRICE:
        return state_root, False
    count: uint256 = lib.word(item, COUNT_AT, 1)
    if count > MAX_SIGNATURES or n != SIGNATURES_AT + SIGNATURE_SIZE * count:
        return state_root, False
    c0: lib.Cursor = lib.Cursor(root=state_root, used=0)
    root: bytes32 = self.oracle_price(c0, ctx, item, count, openings[lib.at(c0, len(openings))])
    if root == empty(bytes32):
        return state_root, False
    return root, True
