# pragma version ~=0.4.1
# pragma optimize codesize
"""
@title isoroll one-step, the trigger kinds
@notice onestep.vy hands this contract the record items of CancelOrder (5),
    PlaceTrigger (9), ScheduleCancel (11), TriggerFire (19) and
    ScheduledCancelAll (20) in an open block; it re-executes the rule
    (sequencer/core/rules: orders, triggers) against the witness, in the
    order of docs/fraud-proofs.md, and returns the state root after it and
    the receipt outcome. The twin of prover/plan_triggers.py (the witness
    plan) over the Python rules.
    Leaves (sequencer/core/commitment.py): the order (kind 3, 12 words), the
    trigger (kind 8, 11 words), the order schedule (kind 9, 4 words; all
    zero is an empty leaf, so emptying one deletes it).
    ScheduledCancelAll (rules v4) writes the account's order epoch in every
    listed market (one position leaf each, whatever its orders) and cancels
    the pending triggers the witness names, complete by count (the schedule
    counts them exactly); beyond a step's openings (3 + markets + pending
    triggers > 32) it reverts "pending" (docs/fraud-proofs.md).
    Memory: the witness is not handed to internal functions (each copy of 32
    openings is ~150 KB); `apply` takes the first FIRST openings (every kind
    but the cancel-all's loop needs no more) and single openings after that.
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
FIRST: constant(uint256) = 7
DAY_MS: constant(uint256) = 86_400_000
TAG_CANCEL_ORDER: constant(uint256) = 5
TAG_PLACE_TRIGGER: constant(uint256) = 9
TAG_SCHEDULE_CANCEL: constant(uint256) = 11
TAG_TRIGGER_FIRE: constant(uint256) = 19
TAG_SCHEDULED_CANCEL_ALL: constant(uint256) = 20
CANCEL_ORDER_TYPEHASH: constant(bytes32) = keccak256("CancelOrder(address account,uint64 orderNonce,uint64 nonce,uint64 expiry)")
PLACE_TRIGGER_TYPEHASH: constant(bytes32) = keccak256("PlaceTrigger(address account,uint32 market,bool isBuy,uint256 triggerPrice,uint256 price,uint256 size,uint32 leverage,uint8 tpsl,bool reduceOnly,uint64 nonce,uint64 expiry)")
SCHEDULE_CANCEL_TYPEHASH: constant(bytes32) = keccak256("ScheduleCancel(address account,uint64 cancelAt,uint64 nonce,uint64 expiry)")
TAKE_PROFIT: constant(uint256) = 1
STOP_LOSS: constant(uint256) = 2
IMMEDIATE_OR_CANCEL: constant(uint256) = 1
GLOBALS_ORDER_COUNT: constant(uint256) = 10
# order leaf words
ORDER_SIZE: constant(uint256) = 1
ORDER_FILLED: constant(uint256) = 2
ORDER_CANCELLED: constant(uint256) = 3
# trigger leaf words
TRIGGER_MARKET: constant(uint256) = 1
TRIGGER_IS_BUY: constant(uint256) = 2
TRIGGER_PRICE: constant(uint256) = 3
TRIGGER_LIMIT: constant(uint256) = 4
TRIGGER_SIZE: constant(uint256) = 5
TRIGGER_LEVERAGE: constant(uint256) = 6
TRIGGER_TPSL: constant(uint256) = 7
TRIGGER_REDUCE_ONLY: constant(uint256) = 8
TRIGGER_STATUS: constant(uint256) = 10
PENDING: constant(uint256) = 0
FIRED: constant(uint256) = 1
CANCELLED: constant(uint256) = 2

# the listed market ids, ascending (the cancel-all writes the order epoch in each)
listed: DynArray[uint256, mk.MAX_MARKETS]

# sequencer.core.presets.Preset, fixed at deployment
MAX_OPEN_TRIGGERS: public(immutable(uint256))
SCHEDULE_MIN_DELAY_MS: public(immutable(uint256))
MAX_CANCELS_PER_DAY: public(immutable(uint256))


struct Schedule:
    # sequencer.core.state.OrderSchedule
    cancel_at_ms: uint256
    open_triggers: uint256
    cancel_day: uint256
    cancels: uint256


@deploy
def __init__(domain_separator: bytes32, max_amount: uint256, max_expiry_ahead_ms: uint256, nonce_window: uint256,
             markets: DynArray[mk.MarketParams, mk.MAX_MARKETS], max_open_triggers: uint256,
             schedule_min_delay_ms: uint256, max_cancels_per_day: uint256):
    lib.__init__(domain_separator, max_amount, max_expiry_ahead_ms, nonce_window)
    mk.init_markets(markets)
    assert max_amount <= MAX_INT64, "max amount"
    MAX_OPEN_TRIGGERS = max_open_triggers
    SCHEDULE_MIN_DELAY_MS = schedule_min_delay_ms
    MAX_CANCELS_PER_DAY = max_cancels_per_day
    prev: uint256 = 0
    for m: mk.MarketParams in markets:
        assert len(self.listed) == 0 or m.id > prev, "markets not ascending"
        self.listed.append(m.id)
        prev = m.id


# --- the order schedule leaf ----------------------------------------------------------

@internal
@pure
def read_schedule(op: trace.Opening) -> Schedule:
    """The schedule leaf (all zero when absent: rules.orders.get_order_schedule)."""
    v: Bytes[MAX_LEAF] = op.value
    return Schedule(cancel_at_ms=lib.leaf_word(v, 0), open_triggers=lib.leaf_word(v, 1),
                    cancel_day=lib.leaf_word(v, 2), cancels=lib.leaf_word(v, 3))


@internal
@pure
def write_schedule(c: lib.Cursor, key: bytes32, s: Schedule, op: trace.Opening) -> lib.Cursor:
    """Open the schedule leaf again against the current root and write `s`
    (commitment.py: an all-zero schedule is the empty leaf, so where there is
    none it changes nothing, and emptying a present one deletes it)."""
    if s.cancel_at_ms == 0 and s.open_triggers == 0 and s.cancel_day == 0 and s.cancels == 0:
        return lib.rewrite(c, key, b"", op)
    return lib.rewrite(c, key, abi_encode(s), op)


@internal
@pure
def cancels_today(s: Schedule, timestamp_ms: uint256) -> uint256:
    """rules.triggers.get_cancels_today."""
    if s.cancel_day == timestamp_ms // DAY_MS:
        return s.cancels
    return 0


# --- the rules ---------------------------------------------------------------------

@internal
@view
def preamble(root: bytes32, struct_hash: bytes32, item: Bytes[MAX_ITEM], sig_at: uint256, account: address,
             nonce: uint256, expiry: uint256, ctx: trace.Ctx, op_acct: trace.Opening,
             nonces: DynArray[uint256, MAX_NONCES]) -> bytes32:
    """rules.base.process_user_preamble on the account leaf `op_acct` (opened
    against `root`): the expiry window, the account's signature and a usable
    nonce. The root with the nonce recorded in the account leaf (the
    record's first write), or empty when a check fails."""
    key: bytes32 = lib.account_key(account)
    lib.verify_leaf(lib.Cursor(root=root, used=0), key, op_acct)
    acct: lib.AccountLeaf = lib.read_account(op_acct)
    if not lib.user_checks(struct_hash, item, sig_at, account, nonce, expiry, ctx, acct, nonces):
        return empty(bytes32)
    return lib.write_leaf(root, key, op_acct, lib.account_leaf(acct.collateral, nonce, nonces))


@internal
@view
def cancel_order(c0: lib.Cursor, ctx: trace.Ctx, item: Bytes[MAX_ITEM], ops: trace.Opening[FIRST],
                 nonces: DynArray[uint256, MAX_NONCES]) -> bytes32:
    """rules.orders.process_cancel_order. Witness: order (read); with an
    order: account (read; written if it applies), then the order written
    (cancelled). With none: the trigger of that nonce (read), and if there
    is one, account (read; written if it applies), then the trigger
    (cancelled) and the schedule (open_triggers - 1) written."""
    account: address = lib.addr(item, 2)
    order_nonce: uint256 = lib.word(item, 22, 8)
    nonce: uint256 = lib.word(item, 30, 8)
    expiry: uint256 = lib.word(item, 38, 8)
    key: bytes32 = mk.order_key(account, order_nonce)
    lib.verify_leaf(c0, key, ops[0])
    target: uint256 = 0
    if not ops[0].present:
        key = mk.trigger_key(account, order_nonce)
        lib.verify_leaf(c0, key, ops[1])
        if not ops[1].present:
            return empty(bytes32)
        target = 1
    struct_hash: bytes32 = keccak256(abi_encode(CANCEL_ORDER_TYPEHASH, account, order_nonce, nonce, expiry))
    root: bytes32 = self.preamble(c0.root, struct_hash, item, 46, account, nonce, expiry, ctx, ops[target + 1], nonces)
    if root == empty(bytes32):
        return empty(bytes32)
    v: Bytes[MAX_LEAF] = ops[target].value
    if target == 1:  # a trigger: pending ones only (rules.orders.cancel_trigger)
        if lib.leaf_word(v, TRIGGER_STATUS) != PENDING:
            return empty(bytes32)
        v = lib.set_word(v, TRIGGER_STATUS, convert(CANCELLED, bytes32))
    elif lib.leaf_word(v, ORDER_CANCELLED) != 0 or lib.leaf_word(v, ORDER_FILLED) >= lib.leaf_word(v, ORDER_SIZE):
        return empty(bytes32)
    else:
        v = lib.set_word(v, ORDER_CANCELLED, convert(1, bytes32))
    c: lib.Cursor = lib.rewrite(lib.Cursor(root=root, used=target + 2), key, v, ops[target + 2])
    if target == 0:
        return c.root
    s: Schedule = self.read_schedule(ops[4])
    s.open_triggers -= 1
    return self.write_schedule(c, mk.order_schedule_key(account), s, ops[4]).root


@internal
@view
def trigger_terms_ok(p: mk.MarketParams, is_buy: bool, trigger_price: uint256, price: uint256, size: uint256,
                     leverage: uint256, tpsl: uint256, reduce_only: bool) -> bool:
    """rules.triggers.check_trigger_terms: the tpsl kind, the trigger price,
    the terms of the immediate-or-cancel order it becomes
    (rules.orders.check_order_terms) and a limit that fills at the trigger."""
    if tpsl != TAKE_PROFIT and tpsl != STOP_LOSS:
        return False
    if trigger_price == 0 or trigger_price > lib.MAX_AMOUNT or trigger_price % p.tick_size != 0:
        return False
    if price == 0 or price > lib.MAX_AMOUNT or price % p.tick_size != 0:
        return False
    if size == 0 or size > lib.MAX_AMOUNT or size % p.step_size != 0:
        return False
    if leverage < 1 or leverage > p.max_leverage:
        return False
    if not reduce_only and size * price < p.min_order_notional * p.scale:
        return False
    if is_buy:
        return price >= trigger_price
    return price <= trigger_price


@internal
@view
def place_trigger(c0: lib.Cursor, ctx: trace.Ctx, item: Bytes[MAX_ITEM], ops: trace.Opening[FIRST],
                  nonces: DynArray[uint256, MAX_NONCES]) -> bytes32:
    """rules.triggers.process_place_trigger. Witness: the order and the
    trigger of the nonce (read: both absent), schedule (read), account
    (read; written if it applies), then the schedule (open_triggers + 1) and
    the trigger (created, pending) written."""
    account: address = lib.addr(item, 2)
    market: uint256 = lib.word(item, 22, 4)
    is_buy: bool = lib.word(item, 26, 1) != 0
    trigger_price: uint256 = lib.word(item, 27, 8)
    price: uint256 = lib.word(item, 35, 8)
    size: uint256 = lib.word(item, 43, 8)
    leverage: uint256 = lib.word(item, 51, 4)
    tpsl: uint256 = lib.word(item, 55, 1)
    reduce_only: bool = lib.word(item, 56, 1) != 0
    nonce: uint256 = lib.word(item, 57, 8)
    expiry: uint256 = lib.word(item, 65, 8)
    found: bool = False
    p: mk.MarketParams = empty(mk.MarketParams)
    found, p = mk.market_params(market)
    if not found or not self.trigger_terms_ok(p, is_buy, trigger_price, price, size, leverage, tpsl, reduce_only):
        return empty(bytes32)
    lib.verify_leaf(c0, mk.order_key(account, nonce), ops[0])
    trig_key: bytes32 = mk.trigger_key(account, nonce)
    lib.verify_leaf(c0, trig_key, ops[1])
    sched_key: bytes32 = mk.order_schedule_key(account)
    lib.verify_leaf(c0, sched_key, ops[2])
    params_hash: bytes32 = keccak256(abi_encode(PLACE_TRIGGER_TYPEHASH, account, market, is_buy, trigger_price, price,
                                                size, leverage, tpsl, reduce_only, nonce, expiry))
    root: bytes32 = self.preamble(c0.root, params_hash, item, 73, account, nonce, expiry, ctx, ops[3], nonces)
    if root == empty(bytes32) or ops[0].present or ops[1].present:
        return empty(bytes32)
    s: Schedule = self.read_schedule(ops[2])
    if s.open_triggers >= MAX_OPEN_TRIGGERS:
        return empty(bytes32)
    s.open_triggers += 1
    c: lib.Cursor = self.write_schedule(lib.Cursor(root=root, used=4), sched_key, s, ops[4])
    leaf: Bytes[MAX_LEAF] = abi_encode(params_hash, market, is_buy, trigger_price, price, size, leverage, tpsl,
                                       reduce_only, ctx.timestamp_ms, PENDING)
    return lib.rewrite(c, trig_key, leaf, ops[5]).root


@internal
@view
def schedule_cancel(c0: lib.Cursor, ctx: trace.Ctx, item: Bytes[MAX_ITEM], ops: trace.Opening[FIRST],
                    nonces: DynArray[uint256, MAX_NONCES]) -> bytes32:
    """rules.triggers.process_schedule_cancel. Witness: schedule (read),
    account (read; written if it applies), then the schedule written."""
    account: address = lib.addr(item, 2)
    cancel_at: uint256 = lib.word(item, 22, 8)
    nonce: uint256 = lib.word(item, 30, 8)
    expiry: uint256 = lib.word(item, 38, 8)
    sched_key: bytes32 = mk.order_schedule_key(account)
    lib.verify_leaf(c0, sched_key, ops[0])
    s: Schedule = self.read_schedule(ops[0])
    struct_hash: bytes32 = keccak256(abi_encode(SCHEDULE_CANCEL_TYPEHASH, account, cancel_at, nonce, expiry))
    root: bytes32 = self.preamble(c0.root, struct_hash, item, 46, account, nonce, expiry, ctx, ops[1], nonces)
    if root == empty(bytes32):
        return empty(bytes32)
    if cancel_at != 0:
        if cancel_at < ctx.timestamp_ms + SCHEDULE_MIN_DELAY_MS:
            return empty(bytes32)
        if self.cancels_today(s, ctx.timestamp_ms) >= MAX_CANCELS_PER_DAY:
            return empty(bytes32)
    s.cancel_at_ms = cancel_at
    return self.write_schedule(lib.Cursor(root=root, used=2), sched_key, s, ops[2]).root


@internal
@pure
def is_crossed(trigger: Bytes[MAX_LEAF], mark: uint256) -> bool:
    """rules.triggers.is_trigger_crossed: a buy stop-loss or a sell
    take-profit fires when the mark rises to the trigger price, the others
    when it falls to it."""
    trigger_price: uint256 = lib.leaf_word(trigger, TRIGGER_PRICE)
    if (lib.leaf_word(trigger, TRIGGER_IS_BUY) != 0) == (lib.leaf_word(trigger, TRIGGER_TPSL) == STOP_LOSS):
        return mark >= trigger_price
    return mark <= trigger_price


@internal
@pure
def fired_order(t: Bytes[MAX_LEAF], timestamp_ms: uint256, seq: uint256) -> Bytes[MAX_LEAF]:
    """The order leaf a fired trigger becomes: its params hash, size, market,
    side, limit, leverage and reduce-only, immediate-or-cancel, expiring with
    the block, placed last (rules.triggers.process_trigger_fire)."""
    return abi_encode(extract32(t, 0), lib.leaf_word(t, TRIGGER_SIZE), empty(uint256), False,
                      lib.leaf_word(t, TRIGGER_MARKET), lib.leaf_word(t, TRIGGER_IS_BUY) != 0,
                      lib.leaf_word(t, TRIGGER_LIMIT), lib.leaf_word(t, TRIGGER_LEVERAGE), IMMEDIATE_OR_CANCEL,
                      lib.leaf_word(t, TRIGGER_REDUCE_ONLY) != 0, timestamp_ms, seq)


@internal
@view
def trigger_fire(c0: lib.Cursor, ctx: trace.Ctx, item: Bytes[MAX_ITEM], ops: trace.Opening[FIRST]) -> bytes32:
    """rules.triggers.process_trigger_fire. Witness: trigger (read); if it
    is pending in a listed market: market, the order of the nonce (read:
    absent), schedule (read; written if it applies), then the trigger
    (fired), globals (order_count + 1) and the order (created) written."""
    account: address = lib.addr(item, 2)
    nonce: uint256 = lib.word(item, 22, 8)
    trig_key: bytes32 = mk.trigger_key(account, nonce)
    lib.verify_leaf(c0, trig_key, ops[0])
    t: Bytes[MAX_LEAF] = ops[0].value
    if not ops[0].present or lib.leaf_word(t, TRIGGER_STATUS) != PENDING:
        return empty(bytes32)
    market: uint256 = lib.leaf_word(t, TRIGGER_MARKET)
    found: bool = False
    p: mk.MarketParams = empty(mk.MarketParams)
    found, p = mk.market_params(market)
    if not found:
        return empty(bytes32)
    lib.verify_leaf(c0, mk.market_key(market), ops[1])
    order_key: bytes32 = mk.order_key(account, nonce)
    lib.verify_leaf(c0, order_key, ops[2])
    sched_key: bytes32 = mk.order_schedule_key(account)
    lib.verify_leaf(c0, sched_key, ops[3])
    mark: int256 = mk.fresh_mark(ops[1].value, p, ctx.timestamp_ms)
    if mark == 0 or not self.is_crossed(t, convert(mark, uint256)) or ops[2].present:
        return empty(bytes32)
    s: Schedule = self.read_schedule(ops[3])
    s.open_triggers -= 1
    c: lib.Cursor = self.write_schedule(lib.Cursor(root=c0.root, used=3), sched_key, s, ops[3])
    c = lib.rewrite(c, trig_key, lib.set_word(t, TRIGGER_STATUS, convert(FIRED, bytes32)), ops[4])
    # globals: the order count (word 10) + 1 is the fired order's placement sequence number
    lib.verify_leaf(c, lib.GLOBALS_KEY, ops[5])
    seq: uint256 = lib.leaf_word(ops[5].value, GLOBALS_ORDER_COUNT) + 1
    c = lib.Cursor(root=lib.write_leaf(c.root, lib.GLOBALS_KEY, ops[5],
                                       lib.set_word(ops[5].value, GLOBALS_ORDER_COUNT, convert(seq, bytes32))),
                   used=6)
    return lib.rewrite(c, order_key, self.fired_order(t, ctx.timestamp_ms, seq), ops[6]).root


@internal
@view
def cancel_all_due(c0: lib.Cursor, ctx: trace.Ctx, sched_key: bytes32, op_sched: trace.Opening,
                   op_globals: trace.Opening) -> (Schedule, uint256):
    """rules.triggers.process_scheduled_cancel_all_v4, before the writes:
    the schedule (read) and, if it is due, globals (read). Returns the
    schedule and the order epoch to write (globals' order count), or
    MAX_UINT256 when nothing is due (the record fails). Reverts "pending"
    when the openings (the schedule, globals, a position per listed market,
    a trigger per pending one, the schedule again) pass a step's."""
    lib.verify_leaf(c0, sched_key, op_sched)
    s: Schedule = self.read_schedule(op_sched)
    if s.cancel_at_ms == 0 or s.cancel_at_ms > ctx.timestamp_ms:
        return s, max_value(uint256)
    assert 3 + len(self.listed) + s.open_triggers <= MAX_OPENINGS, "pending"
    lib.verify_leaf(c0, lib.GLOBALS_KEY, op_globals)
    return s, lib.leaf_word(op_globals.value, GLOBALS_ORDER_COUNT)


@internal
@pure
def write_epoch(c: lib.Cursor, key: bytes32, epoch: uint256, op: trace.Opening) -> lib.Cursor:
    """rules.liquidation.cancel_orders_v2 on the position leaf `key`, opened
    against the root so far: its order epoch becomes `epoch` (an absent leaf
    becomes (0, 0, 0, 0, epoch); with epoch 0 it stays empty)."""
    lib.verify_leaf(c, key, op)
    p: mk.Position = mk.read_position(op)
    p.order_epoch = epoch
    return lib.Cursor(root=lib.write_leaf(c.root, key, op, mk.position_leaf(p)), used=c.used + 1)


@internal
@pure
def cancel_pending(c: lib.Cursor, key: bytes32, op: trace.Opening) -> lib.Cursor:
    """rules.orders.cancel_trigger on a trigger the witness names, opened
    against the root so far: it must be there and pending (else the witness
    lies: revert), and is written cancelled."""
    lib.verify_leaf(c, key, op)
    assert op.present and lib.leaf_word(op.value, TRIGGER_STATUS) == PENDING, "witness: trigger"
    return lib.Cursor(root=lib.write_leaf(c.root, key, op, lib.set_word(op.value, TRIGGER_STATUS,
                                                                         convert(CANCELLED, bytes32))),
                      used=c.used + 1)


@external
@view
def apply(state_root: bytes32, ctx: trace.Ctx, item: Bytes[MAX_ITEM], openings: DynArray[trace.Opening, MAX_OPENINGS],
          nonces: DynArray[uint256, MAX_NONCES]) -> (bytes32, bool):
    """
    @notice The state root after a trigger-kind record item in an open block,
        and the receipt outcome (a failed record changes nothing). A wrong
        length is a NOOP, as in onestep.vy. A missing opening is an empty
        one (which does not verify: the step reverts).
    """
    n: uint256 = len(item)
    tag: uint256 = lib.word(item, 1, 1)
    if ctx.block_open == 0 or n < 2 or lib.word(item, 0, 1) != 2:
        return state_root, False
    ops: trace.Opening[FIRST] = empty(trace.Opening[FIRST])
    for i: uint256 in range(FIRST):
        if i == len(openings):
            break
        ops[i] = openings[i]
    c0: lib.Cursor = lib.Cursor(root=state_root, used=0)
    root: bytes32 = empty(bytes32)
    if tag == TAG_CANCEL_ORDER and n == 111:
        root = self.cancel_order(c0, ctx, item, ops, nonces)
    elif tag == TAG_PLACE_TRIGGER and n == 138:
        root = self.place_trigger(c0, ctx, item, ops, nonces)
    elif tag == TAG_SCHEDULE_CANCEL and n == 111:
        root = self.schedule_cancel(c0, ctx, item, ops, nonces)
    elif tag == TAG_TRIGGER_FIRE and n == 30:
        root = self.trigger_fire(c0, ctx, item, ops)
    elif tag == TAG_SCHEDULED_CANCEL_ALL and n == 22:
        # inline: `openings` handed to an internal function would be copied
        account: address = lib.addr(item, 2)
        sched_key: bytes32 = mk.order_schedule_key(account)
        s: Schedule = empty(Schedule)
        epoch: uint256 = 0
        s, epoch = self.cancel_all_due(c0, ctx, sched_key, ops[0], ops[1])
        if epoch != max_value(uint256):
            c: lib.Cursor = lib.Cursor(root=state_root, used=2)
            for m: uint256 in self.listed:
                c = self.write_epoch(c, mk.position_key(account, m), epoch, openings[c.used])
            # every pending trigger, by count: the schedule counts them exactly
            assert len(nonces) == s.open_triggers, "witness: triggers"
            for i: uint256 in range(MAX_NONCES):
                if i == len(nonces):
                    break
                assert i == 0 or nonces[i] > nonces[i - 1], "witness: trigger order"
                c = self.cancel_pending(c, mk.trigger_key(account, nonces[i]), openings[c.used])
            s.cancels = self.cancels_today(s, ctx.timestamp_ms) + 1
            s.cancel_day = ctx.timestamp_ms // DAY_MS
            s.cancel_at_ms = 0
            s.open_triggers = 0
            root = self.write_schedule(c, sched_key, s, openings[c.used]).root
    if root == empty(bytes32):
        return state_root, False
    return root, True
