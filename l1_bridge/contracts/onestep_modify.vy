# pragma version ~=0.4.1
"""
@title isoroll one-step, ModifyOrder (tag 10)
@notice onestep.vy hands this contract a ModifyOrder item in an open block:
    cancel the account's resting order `order_nonce` and place its
    replacement (the old order's market, side, leverage, time in force and
    reduce-only with the new price and size) under the tx's nonce, both or
    neither; the replacement takes the next placement sequence number (it
    loses its time priority) (sequencer/core/rules/orders.py
    process_modify_order). Item (127 bytes): 0x02 0x0a account (20)
    order_nonce (8) price (8) size (8) nonce (8) expiry (8) signature (65).
    Witness (prover/plan_auction.py): read against the pre-state root the
    old order, the new order's slot (must be absent), the trigger slot of
    the new nonce (must be absent), the account and, when the old order is
    registered, its owner's position in its market (rules v4: an order at or
    below the position's order epoch, absent = 0, was cancelled by a
    liquidation, a forced close or the dead-man's switch and is not open:
    process_modify_order_v4); if it applies: the
    account, the old order (cancelled), globals (order_count + 1) and the
    new order (created), each opened against the root of the writes before it.
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
TAG_MODIFY_ORDER: constant(uint256) = 10
ITEM_SIZE: constant(uint256) = 127
SIGNATURE_AT: constant(uint256) = 62
READS: constant(uint256) = 4
IMMEDIATE_OR_CANCEL: constant(uint256) = 1
MODIFY_ORDER_TYPEHASH: constant(bytes32) = keccak256("ModifyOrder(address account,uint64 orderNonce,uint256 price,uint256 size,uint64 nonce,uint64 expiry)")
# order leaf words (sequencer/core/commitment.py encode_order_leaf)
ORDER_SIZE: constant(uint256) = 1
ORDER_FILLED: constant(uint256) = 2
ORDER_CANCELLED: constant(uint256) = 3
ORDER_MARKET: constant(uint256) = 4
ORDER_IS_BUY: constant(uint256) = 5
ORDER_LEVERAGE: constant(uint256) = 7
ORDER_TIME_IN_FORCE: constant(uint256) = 8
ORDER_REDUCE_ONLY: constant(uint256) = 9
ORDER_EXPIRY: constant(uint256) = 10
ORDER_SEQ: constant(uint256) = 11
POSITION_ORDER_EPOCH: constant(uint256) = 4   # the position leaf's fifth word (0 in a four-word leaf)


struct Modify:
    account: address
    order_nonce: uint256
    price: uint256
    size: uint256
    nonce: uint256
    expiry: uint256


@deploy
def __init__(domain_separator: bytes32, max_amount: uint256, max_expiry_ahead_ms: uint256, nonce_window: uint256,
             markets: DynArray[mk.MarketParams, mk.MAX_MARKETS]):
    lib.__init__(domain_separator, max_amount, max_expiry_ahead_ms, nonce_window)
    assert max_amount <= MAX_INT64, "max amount"
    mk.init_markets(markets)


@internal
@pure
def read_modify(item: Bytes[MAX_ITEM]) -> Modify:
    return Modify(account=lib.addr(item, 2), order_nonce=lib.word(item, 22, 8), price=lib.word(item, 30, 8),
                  size=lib.word(item, 38, 8), nonce=lib.word(item, 46, 8), expiry=lib.word(item, 54, 8))


@internal
@pure
def resting(order: Bytes[MAX_LEAF], order_epoch: uint256, timestamp_ms: uint256) -> bool:
    """rules.orders.require_resting_order on the leaf: open (not cancelled by
    its flag nor by its owner's order epoch, not filled), not
    immediate-or-cancel, not expired."""
    if lib.leaf_word(order, ORDER_CANCELLED) != 0:
        return False
    if lib.leaf_word(order, ORDER_SEQ) <= order_epoch:
        return False
    if lib.leaf_word(order, ORDER_FILLED) >= lib.leaf_word(order, ORDER_SIZE):
        return False
    if lib.leaf_word(order, ORDER_TIME_IN_FORCE) == IMMEDIATE_OR_CANCEL:
        return False
    return lib.leaf_word(order, ORDER_EXPIRY) >= timestamp_ms


@internal
@view
def terms_ok(m: Modify, order: Bytes[MAX_LEAF]) -> bool:
    """rules.orders.check_order_terms of the replacement: the new price and
    size with the old order's market, leverage, time in force and reduce-only."""
    found: bool = False
    p: mk.MarketParams = empty(mk.MarketParams)
    found, p = mk.market_params(lib.leaf_word(order, ORDER_MARKET))
    if not found:
        return False
    if m.price == 0 or m.price > lib.MAX_AMOUNT or m.price % p.tick_size != 0:
        return False
    if m.size == 0 or m.size > lib.MAX_AMOUNT or m.size % p.step_size != 0:
        return False
    leverage: uint256 = lib.leaf_word(order, ORDER_LEVERAGE)
    if leverage < 1 or leverage > p.max_leverage:
        return False
    time_in_force: uint256 = lib.leaf_word(order, ORDER_TIME_IN_FORCE)
    if time_in_force > 2:
        return False
    if lib.leaf_word(order, ORDER_REDUCE_ONLY) != 0:
        return time_in_force == IMMEDIATE_OR_CANCEL
    return m.size * m.price >= p.min_order_notional * p.scale


@internal
@pure
def replacement(order: Bytes[MAX_LEAF], m: Modify, params_hash: bytes32, seq: uint256) -> Bytes[MAX_LEAF]:
    """The new order's leaf: the old order's market, side, leverage, time in
    force and reduce-only words with the new terms and the next sequence number."""
    return abi_encode(params_hash, m.size, empty(uint256), empty(uint256), lib.leaf_word(order, ORDER_MARKET),
                      lib.leaf_word(order, ORDER_IS_BUY), m.price, lib.leaf_word(order, ORDER_LEVERAGE),
                      lib.leaf_word(order, ORDER_TIME_IN_FORCE), lib.leaf_word(order, ORDER_REDUCE_ONLY), m.expiry, seq)


@external
@view
def apply(state_root: bytes32, ctx: trace.Ctx, item: Bytes[MAX_ITEM], openings: DynArray[trace.Opening, MAX_OPENINGS],
          nonces: DynArray[uint256, MAX_NONCES]) -> (bytes32, bool):
    """
    @notice The state root after a ModifyOrder item in an open block and the
        receipt outcome (a failed modify changes nothing). A wrong length is a NOOP.
    """
    if ctx.block_open == 0 or len(item) != ITEM_SIZE or lib.word(item, 0, 1) != 2 or lib.word(item, 1, 1) != TAG_MODIFY_ORDER:
        return state_root, False
    m: Modify = self.read_modify(item)
    n: uint256 = len(openings)
    assert n >= READS, "witness: missing opening"
    old_key: bytes32 = mk.order_key(m.account, m.order_nonce)
    new_key: bytes32 = mk.order_key(m.account, m.nonce)
    account_key: bytes32 = lib.account_key(m.account)
    c: lib.Cursor = lib.Cursor(root=state_root, used=0)
    lib.verify_leaf(c, old_key, openings[0])
    lib.verify_leaf(c, new_key, openings[1])
    lib.verify_leaf(c, mk.trigger_key(m.account, m.nonce), openings[2])
    lib.verify_leaf(c, account_key, openings[3])
    if not openings[0].present:
        return state_root, False
    old: Bytes[MAX_LEAF] = openings[0].value
    assert n > READS, "witness: missing opening"
    lib.verify_leaf(c, mk.position_key(m.account, lib.leaf_word(old, ORDER_MARKET)), openings[READS])
    order_epoch: uint256 = 0  # an absent position leaf: epoch 0 (its opening's value is not read)
    if openings[READS].present:
        order_epoch = lib.leaf_word(openings[READS].value, POSITION_ORDER_EPOCH)
    if not self.resting(old, order_epoch, ctx.timestamp_ms) or not self.terms_ok(m, old):
        return state_root, False
    acct: lib.AccountLeaf = lib.read_account(openings[3])
    params_hash: bytes32 = keccak256(abi_encode(MODIFY_ORDER_TYPEHASH, m.account, m.order_nonce, m.price, m.size,
                                                m.nonce, m.expiry))
    if not lib.user_checks(params_hash, item, SIGNATURE_AT, m.account, m.nonce, m.expiry, ctx, acct, nonces):
        return state_root, False
    if openings[1].present or openings[2].present:
        return state_root, False
    c.used = READS + 1
    c = lib.rewrite(c, account_key, lib.account_leaf(acct.collateral, m.nonce, nonces), openings[lib.at(c, n)])
    c = lib.rewrite(c, old_key, lib.set_word(old, ORDER_CANCELLED, convert(1, bytes32)), openings[lib.at(c, n)])
    g: lib.Globals = lib.read_globals(c, openings[lib.at(c, n)])
    g.order_count += 1
    c = lib.write_globals(c, g, openings[lib.at(c, n)])
    return lib.rewrite(c, new_key, self.replacement(old, m, params_hash, g.order_count), openings[lib.at(c, n)]).root, True
