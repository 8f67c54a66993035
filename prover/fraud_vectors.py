"""Shared fraud-proof vectors: Python writes them, the unit tests check
prover.records / prover.trace against them, the EVM tests check records.vy and
onestep.vy against the same files on py-evm (docs/fraud-proofs.md).

    .venv/bin/python -m prover.fraud_vectors            # rewrite the files
    .venv/bin/python -m prover.fraud_vectors --check    # exit 1 if a file is stale

Everything is derived from keccak of counters: no randomness, no clock.

records_vectors.json:
  lists[]:   {count, data, root, openings: [{index, item, siblings, count, expect}]}
  bad_data[]: {name, data}      (derive must fail)
onestep_vectors.json:
  params:    {domain_separator, max_amount, max_expiry_ahead_ms, nonce_window, markets}
             (markets: onestep_perps.vy's MarketParams tuples)
  cases[]:   {name, state_root, ctx, item, openings, nonces, post_state_root, post_ctx_hash, ok}
             (ctx as the Ctx tuple; openings as (present, value, (bitmap, siblings, other_key, other_value_hash)))
  tables[]:  {name, markets, families, cases}: another market table (deploy every family with it), its cases
             as above (book+vault: the vault step of a Liquidate, which the devnet table cannot reach)
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import msgspec

from prover.hashing import keccak
from prover.records import (BlockEnd, BlockStart, Noop, compute_records_root, derive_records_root,
                            encode_data, encode_item, prove_item, verify_item)
from prover.trace import TraceContext, TraceRunner, get_onestep_markets
from sequencer.core import eip712
from sequencer.core.presets import DEVNET
from sequencer.core.encoding import encode_block, make_block
from sequencer.core.records import (AdjustMargin, CancelOrder, Deposit, ForcedWithdrawal, FundingTick, PlaceOrder,
                                    Transfer, Withdraw)
from sequencer.core.transition import compute_genesis_state
from sequencer.core.rules.base import Context
from sequencer.core.signing import SECP256K1_N, address_of, get_recover, sign_digest
from sequencer.core.state import Account, Globals, Market, Order, Position, State

VECTORS_DIR = Path(__file__).resolve().parent.parent / "tests" / "vectors"
RECORDS_PATH = VECTORS_DIR / "records_vectors.json"
ONESTEP_PATH = VECTORS_DIR / "onestep_vectors.json"
SEED = b"isoroll/fraud-vectors/v1"


def hx(b: bytes) -> str:
    return "0x" + bytes(b).hex()


def det(tag: str, i: int, n: int) -> bytes:
    out, c = b"", 0
    while len(out) < n:
        out += keccak(SEED + tag.encode() + i.to_bytes(8, "big") + c.to_bytes(4, "big"))
        c += 1
    return out[:n]


def make_items(count: int, tag: str) -> list[bytes]:
    return [det(tag, i, 1 + det(tag + "/len", i, 1)[0] % 140) for i in range(count)]


def opening(items: list[bytes], root: bytes, index: int, *, item: bytes | None = None,
            siblings: list[bytes] | None = None, count: int | None = None) -> dict:
    n = len(items) if count is None else count
    if siblings is None:
        siblings = list(prove_item(items, index).siblings) if index < len(items) else []
    item = items[index] if item is None else item
    return {"index": index, "item": hx(item), "siblings": [hx(s) for s in siblings], "count": n,
            "expect": verify_item(root, n, item, index, siblings)}


def make_list(count: int) -> dict:
    items = make_items(count, f"list{count}")
    data = encode_data(items)
    root = compute_records_root(items)
    assert derive_records_root(data) == (root, count)
    openings = [opening(items, root, i) for i in sorted({0, count // 2, count - 1}) if count]
    if count >= 2:
        good = list(prove_item(items, 1).siblings)
        openings += [
            opening(items, root, 1, item=items[1] + b"\x00"),                      # tampered item
            opening(items, root, 0, item=items[1], siblings=good),                  # another item's opening
            opening(items, root, 1, siblings=good[:-1]),                            # a sibling dropped
            opening(items, root, 1, siblings=good + [root]),                        # a level added
            opening(items, root, 1, count=count * 4),                               # a count with more levels
            opening(items, root, count, item=items[0], siblings=good),             # index at the count
        ]
    if count == 3:  # the padding slot (index 3 of a 4-leaf tree) cannot be opened
        openings.append(opening(items, root, 3, item=b"\x00" * 32, siblings=list(prove_item(items, 2).siblings),
                                count=4))
    return {"count": count, "data": hx(data), "root": hx(root), "openings": openings}


def bad_data() -> list[dict]:
    item = det("bad", 0, 40)
    good = encode_data([item])
    return [
        {"name": "truncated frame", "data": hx(good[:-1])},
        {"name": "lone length byte", "data": hx(good + b"\x00")},
        {"name": "empty frame", "data": hx(good + b"\x00\x00")},
        {"name": "frame above 1024 bytes", "data": hx(b"\x04\x01" + b"\x01" * 1025)},
        {"name": "length past the end", "data": hx(b"\x00\x05abc")},
    ]


def build_records_vectors() -> dict:
    counts = list(range(0, 18)) + [31, 32, 33, 100, 257]
    return {"lists": [make_list(n) for n in counts], "bad_data": bad_data()}


# --- one-step cases ----------------------------------------------------------------

DOMAIN = eip712.Domain(chain_id=DEVNET.chain_id, verifying_contract=bytes.fromhex("5fbdb2315678afecb367f032d93f642f64180aa3"))
RULES = Context(preset=DEVNET, domain_separator=eip712.compute_domain_separator(DOMAIN),
                recover=get_recover("coincurve"))
ONESTEP_PARAMS = (RULES.domain_separator, DEVNET.max_amount, DEVNET.max_expiry_ahead_ms, DEVNET.nonce_window)
"""The constructor parameters every one-step contract starts with."""
MARKETS = get_onestep_markets(RULES)
"""The market table every family contract is deployed with (onestep_market.vy)."""


def get_family_params() -> list:
    """[contract, tags, constructor extras after the market table] of each
    one-step family (prover.families.ONESTEP_FAMILIES) for RULES."""
    from prover.families import ONESTEP_FAMILIES
    return [[name, list(tags), [hx(x) if isinstance(x, bytes) else x for x in extras(RULES)]]
            for name, tags, extras in ONESTEP_FAMILIES]
KEYS = [keccak(SEED + b"key" + bytes([i])) for i in range(4)]
ADDRESSES = [address_of(k) for k in KEYS]
BLOCK_TIME = 1_767_000_000_000


def sign(record, key: bytes):
    """The record with a valid EIP-712 signature by `key`."""
    digest = eip712.compute_digest(RULES.domain_separator, eip712.get_primary_type(record), record)
    return msgspec.structs.replace(record, signature=sign_digest(digest, key))


def high_s(signature: bytes) -> bytes:
    """The same signature with s -> n - s and v flipped (valid on the curve, refused by the rules)."""
    s = int.from_bytes(signature[32:64], "big")
    return signature[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - signature[64]])


def make_state(accounts: dict[bytes, Account], *, block_number: int = 7, timestamp_ms: int = BLOCK_TIME - 1000,
               inbox_count: int = 3, withdrawal_count: int = 5, total_deposited: int = 10**15,
               order_count: int = 2) -> State:
    state = State()
    for address, account in accounts.items():
        state.set_account(address, account)
    state.set_globals(Globals(block_number=block_number, block_hash=keccak(b"head%d" % block_number),
                              timestamp_ms=timestamp_ms, insurance_fund=11, fee_pool=13,
                              inbox_count=inbox_count, inbox_hash=keccak(b"inbox%d" % inbox_count),
                              withdrawal_count=withdrawal_count, total_deposited=total_deposited,
                              total_withdrawn=10**9, order_count=order_count))
    state.commit(0)
    return state


def open_block_ctx(state: State, timestamp_ms: int = BLOCK_TIME) -> TraceContext:
    return TraceContext(block_open=1, block_number=state.globals.block_number + 1, timestamp_ms=timestamp_ms)


def make_case(name: str, state: State, item: bytes, ctx: TraceContext | None = None) -> dict:
    """Run one item in Python; the case holds the witness and the expected result."""
    runner = TraceRunner(state, RULES, ctx=open_block_ctx(state) if ctx is None else ctx)
    pre_root, pre_ctx = runner.state_root, runner.ctx
    result = runner.step(item)
    return {"name": name, "state_root": hx(pre_root), "ctx": ctx_json(pre_ctx), "item": hx(item),
            "openings": [opening_json(o) for o in result.witness.openings], "nonces": list(result.witness.nonces),
            "post_state_root": hx(runner.state_root), "post_ctx_hash": hx(runner.ctx.hash()), "ok": result.ok}


def ctx_json(ctx: TraceContext) -> list:
    return [ctx.block_open, ctx.block_number, ctx.timestamp_ms,
            [ctx.withdrawals.count, [hx(b) for b in ctx.withdrawals.branch]]]


def opening_json(o) -> list:
    """[present, value, proof] and, for a deletion, the deepest sibling's preimage last."""
    present, value, (bitmap, siblings, other_key, other_value_hash), sibling = o.as_arg()
    return [present, hx(value), [hex(bitmap), [hx(s) for s in siblings], hx(other_key), hx(other_value_hash)]] + (
        [hx(sibling)] if sibling else [])


def onestep_cases() -> list[dict]:
    a, b, c, d = ADDRESSES
    ka, kb = KEYS[0], KEYS[1]
    full = tuple(range(1000, 1200, 2))
    accounts = {a: Account(5 * 10**6, (3, 8, 9)), b: Account(7, ()), c: Account(10**6, full)}

    def state() -> State:
        return make_state(dict(accounts))

    exp = BLOCK_TIME + 60_000
    good_transfer = sign(Transfer(a, b, 10**6, 10, exp, b""), ka)
    w = sign(Withdraw(a, 2 * 10**6, 11, exp, b""), ka)
    cases = [
        ("transfer", good_transfer),
        ("transfer to a new account", sign(Transfer(a, d, 5, 12, exp, b""), ka)),
        ("transfer to self", sign(Transfer(a, a, 5, 12, exp, b""), ka)),
        ("transfer, nonce in the window gap", sign(Transfer(a, b, 5, 4, exp, b""), ka)),
        ("transfer, nonce used", sign(Transfer(a, b, 5, 8, exp, b""), ka)),
        ("transfer, full window, nonce below the smallest", sign(Transfer(c, b, 5, 999, exp, b""), KEYS[2])),
        ("transfer, full window, nonce in a gap", sign(Transfer(c, b, 5, 1051, exp, b""), KEYS[2])),
        ("transfer, full window, nonce above", sign(Transfer(c, b, 5, 5000, exp, b""), KEYS[2])),
        ("transfer, more than the collateral", sign(Transfer(a, b, 5 * 10**6 + 1, 12, exp, b""), ka)),
        ("transfer, zero amount", sign(Transfer(a, b, 0, 12, exp, b""), ka)),
        ("transfer, above max amount", sign(Transfer(a, b, 2**63, 12, exp, b""), ka)),
        ("transfer, expired", sign(Transfer(a, b, 5, 12, BLOCK_TIME - 1, b""), ka)),
        ("transfer, expiry at block time", sign(Transfer(a, b, 5, 12, BLOCK_TIME, b""), ka)),
        ("transfer, expiry too far", sign(Transfer(a, b, 5, 12, BLOCK_TIME + DEVNET.max_expiry_ahead_ms + 1, b""), ka)),
        ("transfer, signed by another key", sign(Transfer(a, b, 5, 12, exp, b""), kb)),
        ("transfer, high s", msgspec.structs.replace(good_transfer, signature=high_s(good_transfer.signature))),
        ("transfer, v = 0", msgspec.structs.replace(good_transfer, signature=good_transfer.signature[:64] + b"\x00")),
        ("transfer, r = 0", msgspec.structs.replace(good_transfer, signature=bytes(32) + good_transfer.signature[32:])),
        ("transfer from an empty account", sign(Transfer(d, a, 5, 12, exp, b""), KEYS[3])),
        ("withdraw", w),
        ("withdraw everything", sign(Withdraw(a, 5 * 10**6, 11, exp, b""), ka)),
        ("withdraw, too much", sign(Withdraw(a, 5 * 10**6 + 1, 11, exp, b""), ka)),
        ("withdraw, bad signature", msgspec.structs.replace(w, signature=w.signature[:10] + b"\x00" + w.signature[11:])),
        ("deposit", Deposit(3, a, 10**6)),
        ("deposit to a new account", Deposit(3, d, 1)),
        ("deposit, out of order", Deposit(4, a, 10**6)),
        ("deposit, zero amount", Deposit(3, a, 0)),
        ("deposit, above max amount", Deposit(3, a, 2**63)),
        ("deposit, the credited total would pass 64 bits", Deposit(3, a, 2**63 - 10**15)),
        ("deposit, the credited total reaches 2**63 - 1", Deposit(3, a, 2**63 - 1 - 10**15)),
        ("forced withdrawal", ForcedWithdrawal(3, a, 10**6)),
        ("forced withdrawal above the collateral", ForcedWithdrawal(3, b, 10**6)),
        ("forced withdrawal of an absent account", ForcedWithdrawal(3, d, 10**6)),
        ("forced withdrawal of zero", ForcedWithdrawal(3, a, 0)),
        ("forced withdrawal, out of order", ForcedWithdrawal(2, a, 10**6)),
    ]
    out = [make_case(name, state(), encode_item(record)) for name, record in cases]
    s = state()
    head = s.globals
    out += [
        make_case("block start", s, encode_item(BlockStart(head.block_number + 1, head.block_hash, BLOCK_TIME)), TraceContext()),
        make_case("block start, wrong number", state(), encode_item(BlockStart(head.block_number + 2, head.block_hash, BLOCK_TIME)), TraceContext()),
        make_case("block start, wrong parent", state(), encode_item(BlockStart(head.block_number + 1, keccak(b"x"), BLOCK_TIME)), TraceContext()),
        make_case("block start, time went back", state(), encode_item(BlockStart(head.block_number + 1, head.block_hash, head.timestamp_ms - 1)), TraceContext()),
        make_case("block end", state(), encode_item(BlockEnd(keccak(b"block"))), open_block_ctx(s)),
        make_case("block end, no open block", state(), encode_item(BlockEnd(keccak(b"block"))), TraceContext()),
        make_case("record outside a block", state(), encode_item(good_transfer), TraceContext()),
        make_case("noop", state(), encode_item(Noop(keccak(b"tx")))),
        make_case("truncated transfer", state(), encode_item(good_transfer)[:-1]),
        make_case("unknown item kind", state(), b"\x09" + encode_item(good_transfer)[1:]),
        make_case("unknown record tag", state(), b"\x02\x63" + bytes(20)),
    ]
    return out


# --- the perps kinds ------------------------------------------------------------------

BTC, ETH = 1, 2
BTC_PRICE = 60_000 * 10**6


def make_market(market_id: int, price: int, *, oracle_time_ms: int = BLOCK_TIME - 1000, funding_index: int = 0,
                funding_time_ms: int = 0, funding_dust: int = 0) -> Market:
    """A market with an applied oracle price and the mark equal to it."""
    return Market(market_id, oracle_price=price, oracle_time_ms=oracle_time_ms, funding_index=funding_index,
                  funding_time_ms=funding_time_ms, funding_dust=funding_dust, mark_price=price)


def make_order(record: PlaceOrder, *, filled: int = 0, cancelled: bool = False, seq: int = 1) -> Order:
    from sequencer.core.rules.orders import compute_order_params_hash
    return Order(compute_order_params_hash(record), record.size, filled, cancelled, record.market, record.is_buy,
                 record.price, record.leverage, record.time_in_force, record.reduce_only, record.expiry, seq)


def make_perps_state(accounts: dict[bytes, Account], markets: list[Market], positions: dict, orders: dict,
                     **kw) -> State:
    state = make_state(accounts, **kw)
    for market in markets:
        state.set_market(market)
    for (address, market_id), position in positions.items():
        state.set_position(address, market_id, position)
    for (address, nonce), order in orders.items():
        state.set_order(address, nonce, order)
    state.commit(0)
    return state


def perps_cases() -> list[dict]:
    a, b, c, d = ADDRESSES
    ka, kb = KEYS[0], KEYS[1]
    exp = BLOCK_TIME + 60_000
    lot = 10_000  # 0.0001 BTC
    long = Position(size=100 * lot, cost=100 * lot * BTC_PRICE // 10**8, margin=10**8, funding_snapshot=0)
    resting = PlaceOrder(a, BTC, True, BTC_PRICE, 10 * lot, 10, 0, False, 20, exp, b"")
    orders = {(a, 20): make_order(resting), (a, 21): make_order(resting, cancelled=True),
              (a, 22): make_order(resting, filled=10 * lot), (b, 20): make_order(resting)}

    def state(funding_index: int = 0, oracle_time_ms: int = BLOCK_TIME - 1000, dust: int = 7) -> State:
        markets = [make_market(BTC, BTC_PRICE, oracle_time_ms=oracle_time_ms, funding_index=funding_index,
                               funding_time_ms=BLOCK_TIME - 120_000, funding_dust=dust)]
        return make_perps_state({a: Account(5 * 10**8, (3, 8, 9)), b: Account(10**6, ())}, markets,
                                {(a, BTC): long}, orders)

    def adjust(amount: int, nonce: int = 12, market: int = BTC, key: bytes = ka, account: bytes = a):
        return sign(AdjustMargin(account, market, amount, nonce, exp, b""), key)

    def place(**kw):
        fields = dict(account=a, market=BTC, is_buy=True, price=BTC_PRICE, size=10 * lot, leverage=10,
                      time_in_force=0, reduce_only=False, nonce=30, expiry=exp, signature=b"")
        key = kw.pop("key", ka)
        fields.update(kw)
        return sign(PlaceOrder(**fields), key)

    def cancel(order_nonce: int, nonce: int = 31, key: bytes = ka, account: bytes = a):
        return sign(CancelOrder(account, order_nonce, nonce, exp, b""), key)

    minute = 60_000
    due = BLOCK_TIME // minute * minute
    cases = [
        ("adjust margin in", state(), adjust(10**6)),
        ("adjust margin out", state(), adjust(-10**6)),
        ("adjust margin out, funding settled", state(funding_index=3 * 10**9 + 5), adjust(-10**6)),
        ("adjust margin out, funding dust swept", state(funding_index=3 * 10**9 + 5, dust=10**14 - 1), adjust(-10**6)),
        ("adjust margin in, funding owed to the position", state(funding_index=-10**9 - 3), adjust(10**6)),
        ("adjust margin out below the initial margin", state(), adjust(-(10**8 - 10**6))),
        ("adjust margin out, stale mark", state(oracle_time_ms=BLOCK_TIME - 61_000), adjust(-10**6)),
        ("adjust margin in, more than the collateral", state(), adjust(5 * 10**8 + 1)),
        ("adjust margin, no position", state(), adjust(10**6, account=b, key=kb)),
        ("adjust margin, unknown market", state(), adjust(10**6, market=3)),
        ("adjust margin, zero", state(), adjust(0)),
        ("adjust margin, signed by another key", state(), adjust(10**6, key=kb)),
        ("adjust margin, nonce used", state(), adjust(10**6, nonce=8)),
        ("place order", state(), place()),
        ("place order, sell, reduce-only IOC", state(), place(is_buy=False, reduce_only=True, time_in_force=1)),
        ("place order, reduce-only resting", state(), place(reduce_only=True)),
        ("place order, off tick", state(), place(price=BTC_PRICE + 1)),
        ("place order, off step", state(), place(size=10 * lot + 1)),
        ("place order, leverage above the market's", state(), place(leverage=51)),
        ("place order, below the minimum notional", state(), place(size=lot, price=10**6)),
        ("place order, time in force 3", state(), place(time_in_force=3)),
        ("place order, unknown market", state(), place(market=3)),
        ("place order, duplicate", state(), place(nonce=20)),
        ("place order, stale nonce", state(), place(nonce=3)),
        ("place order, signed by another key", state(), place(key=kb)),
        ("place order, high s", state(), msgspec.structs.replace(place(), signature=high_s(place().signature))),
        ("cancel order", state(), cancel(20)),
        ("cancel order, already cancelled", state(), cancel(21)),
        ("cancel order, filled", state(), cancel(22)),
        ("cancel order, unknown", state(), cancel(23)),
        ("cancel order, someone else's", state(), cancel(20, account=b, key=ka)),
        ("cancel order, expired", state(), sign(CancelOrder(a, 20, 31, BLOCK_TIME - 1, b""), ka)),
        ("funding tick", state(), FundingTick(BTC, 50, due)),
        ("funding tick, negative rate", state(), FundingTick(BTC, -100, due)),
        ("funding tick, above the cap", state(), FundingTick(BTC, 101, due)),
        ("funding tick, not aligned", state(), FundingTick(BTC, 50, due - 1)),
        ("funding tick, not due", state(), FundingTick(BTC, 50, BLOCK_TIME - 120_000)),
        ("funding tick, in the future", state(), FundingTick(BTC, 50, due + minute)),
        ("funding tick, stale mark", state(oracle_time_ms=BLOCK_TIME - 61_000), FundingTick(BTC, 50, due)),
        ("funding tick, market with no price", state(), FundingTick(ETH, 50, due)),
        ("funding tick, unknown market", state(), FundingTick(3, 50, due)),
        ("funding tick, index past 64 bits", state(funding_index=2**63 - 10**9), FundingTick(BTC, 100, due)),
    ]
    return [make_case(name, s, encode_item(record)) for name, s, record in cases]


def make_trace_messages(extra_blocks: int = 0) -> list[bytes]:
    """Kafka messages of a small output: transfers, a withdrawal, deposits and
    forced withdrawals in order, refused records (a used nonce, a wrong signer,
    a negative amount, an out-of-order deposit, a record that is msgpack but
    no record); then `extra_blocks` blocks of one transfer each. Apply them to
    make_trace_genesis()."""
    a, b, c, d = ADDRESSES
    exp = BLOCK_TIME + 10**7
    blocks = [
        [sign(Transfer(a, b, 10**6, 1, exp, b""), KEYS[0]), Deposit(0, c, 5 * 10**6),
         sign(Withdraw(b, 3, 1, exp, b""), KEYS[1])],
        [sign(Transfer(a, d, 7, 1, exp, b""), KEYS[0]), sign(Transfer(a, d, 7, 2, exp, b""), KEYS[1]),
         Transfer(a, d, -7, 3, exp, b"\x00" * 65), ForcedWithdrawal(1, c, 10**6), ForcedWithdrawal(2, d, 10**6),
         Deposit(5, a, 1)],
        [sign(Withdraw(c, 4 * 10**6, 9, exp, b""), KEYS[2]), sign(Transfer(c, a, 1, 10, exp, b""), KEYS[2])],
    ]
    blocks += [[sign(Transfer(a, b, 1 + i, 100 + i, exp, b""), KEYS[0])] for i in range(extra_blocks)]
    messages, parent = [], b"\x00" * 32
    for number, records in enumerate(blocks, start=1):
        block = make_block(number, parent, BLOCK_TIME + number, records)
        if number == 2:
            block = msgspec.structs.replace(block, records=block.records + (msgspec.Raw(b"\x93\x01\x02\x03"),))
        message = encode_block(block)
        messages.append(message)
        parent = keccak(message)
    return messages


def make_trace_genesis() -> State:
    return compute_genesis_state([(ADDRESSES[0], 10 * 10**6), (ADDRESSES[1], 10**6)])


def oracle_cases() -> list[dict]:
    """OraclePrice (onestep_oracle.vy) under the devnet oracle set (2 of 3):
    the quorum, each signature flaw, the time and price bounds, the jump held,
    confirmed, replaced and past its window, the mark with a fresh or stale
    last trade, and a signature count past 15."""
    from sequencer.core.markets import DEVNET_ORACLE_KEYS
    from sequencer.core.records import OraclePrice
    k0, k1, k2 = DEVNET_ORACLE_KEYS
    price, t0 = BTC_PRICE, BLOCK_TIME - 30_000

    def signed(record, *keys):
        digest = eip712.compute_digest(RULES.domain_separator, "OraclePrice", record)
        return msgspec.structs.replace(record, signatures=tuple(sign_digest(digest, k) for k in keys))

    def state(**kw) -> State:
        fields = dict(oracle_price=price, oracle_time_ms=t0, mark_price=price, basis_ema=3 * 10**6,
                      last_trade_price=price + 200 * 10**6, last_trade_time_ms=BLOCK_TIME - 5_000,
                      funding_index=77, open_interest=10**9, funding_time_ms=BLOCK_TIME - 120_000, funding_dust=5)
        fields.update(kw)
        return make_perps_state({}, [Market(BTC, **fields)], {}, {})

    def at(p: int, t: int = BLOCK_TIME - 1000, market: int = BTC) -> OraclePrice:
        return OraclePrice(market, p, t, ())

    good = signed(at(price + 10**6), k0, k1)
    jump = price * 108 // 100
    pending = dict(pending_oracle_price=jump, pending_oracle_time_ms=t0 + 1000)
    cases = [
        ("oracle price", state(), good),
        ("oracle price, all three signers", state(), signed(at(price + 10**6), k2, k0, k1)),
        ("oracle price, a market with no leaf yet", state(), signed(at(3_000 * 10**6, market=ETH), k0, k2)),
        ("oracle price, one signature", state(), signed(at(price + 10**6), k1)),
        ("oracle price, no signature", state(), at(price + 10**6)),
        ("oracle price, a signer twice", state(), msgspec.structs.replace(good, signatures=good.signatures[:1] * 2)),
        ("oracle price, a stranger's signature", state(), signed(at(price + 10**6), k0, k1, KEYS[0])),
        ("oracle price, high s", state(), msgspec.structs.replace(
            good, signatures=(good.signatures[0], high_s(good.signatures[1])))),
        ("oracle price, v = 29", state(), msgspec.structs.replace(
            good, signatures=(good.signatures[0], good.signatures[1][:64] + b"\x1d"))),
        ("oracle price, time at the applied one", state(), signed(at(price, t0), k0, k1)),
        ("oracle price, time at the pending one", state(**pending), signed(at(price, t0 + 1000), k0, k1)),
        ("oracle price, after the block time", state(), signed(at(price, BLOCK_TIME + 1), k0, k1)),
        ("oracle price, zero", state(), signed(at(0), k0, k1)),
        ("oracle price, above max amount", state(), signed(at(2**63), k0, k1)),
        ("oracle price, unknown market", state(), signed(at(price, market=3), k0, k1)),
        ("oracle price, a jump held pending", state(), signed(at(jump), k0, k1)),
        ("oracle price, at the jump threshold", state(), signed(at(price * 105 // 100), k0, k1)),
        ("oracle price, confirming the pending jump", state(**pending), signed(at(jump + jump // 100), k0, k1)),
        ("oracle price, a second jump replacing the pending one", state(**pending),
         signed(at(jump + jump // 100 + 1), k0, k1)),
        ("oracle price, back near the applied price", state(**pending), signed(at(price + 1), k0, k1)),
        ("oracle price, a jump after the window", state(oracle_time_ms=BLOCK_TIME - 62_000), signed(at(jump), k0, k1)),
        ("oracle price, the last trade stale", state(last_trade_time_ms=BLOCK_TIME - 61_000),
         signed(at(price + 10**6), k0, k1)),
        ("oracle price, the basis past its band", state(basis_ema=-10**12, last_trade_price=10**6),
         signed(at(price + 10**6), k0, k1)),
    ]
    out = [make_case(name, s, encode_item(record)) for name, s, record in cases]
    fifteen = encode_item(signed(at(price + 10**6), *([k0, k1, k2] * 5)))
    out.append(make_case("oracle price, a count of 16 (a NOOP item)", state(), fifteen[:22] + b"\x10" + fifteen[23:]))
    out.append(make_case("oracle price, fifteen signatures repeating signers", state(), fifteen))
    return out


# --- the backstop vault kinds ----------------------------------------------------------

def make_vault_state(*, free: int = 10**9, positions: dict | None = None, holders: dict | None = None,
                     extra_total: int = 0, oracle_time_ms: int = BLOCK_TIME - 1000, orders: dict | None = None) -> State:
    """Two markets with fresh marks, the vault's account, positions (market ->
    Position) and holders (address -> (shares, unlock_ms)); the total is their
    sum plus extra_total."""
    from sequencer.core.rules.vault import VAULT_ADDRESS
    from sequencer.core.state import VaultShare
    a, b, c, d = ADDRESSES
    markets = [make_market(BTC, BTC_PRICE, oracle_time_ms=oracle_time_ms, funding_index=10**9 + 7),
               make_market(ETH, 3_000 * 10**6, funding_index=-(10**9) - 3)]
    accounts = {a: Account(5 * 10**8, (3, 8, 9)), b: Account(10**6, ()), VAULT_ADDRESS: Account(free, ())}
    held = {(VAULT_ADDRESS, m): p for m, p in (positions or {}).items()}
    state = make_perps_state(accounts, markets, held, orders or {})
    holders = holders if holders is not None else {a: (10**9, BLOCK_TIME - 1), b: (5 * 10**8, BLOCK_TIME + 1)}
    for address, (shares, unlock_ms) in holders.items():
        state.set_vault_share(address, VaultShare(shares, unlock_ms))
    total = sum(s for s, _ in holders.values()) + extra_total
    if total:
        state.set_vault_share(VAULT_ADDRESS, VaultShare(total))
    state.commit(0)
    return state


def vault_cases() -> list[dict]:
    from sequencer.core.records import VaultDeposit, VaultUnwind, VaultWithdraw
    from sequencer.core.rules.vault import VAULT_ADDRESS, compute_vault_unwind, get_unwind_nonce
    a, b, c, d = ADDRESSES
    ka, kb = KEYS[0], KEYS[1]
    exp = BLOCK_TIME + 60_000
    long_btc = Position(size=10**6, cost=600 * 10**6, margin=10**8, funding_snapshot=10**9)
    short_eth = Position(size=-(10**9), cost=-3_010 * 10**6, margin=5 * 10**8, funding_snapshot=-(10**9))
    flat_btc = Position(size=0, cost=0, margin=7 * 10**6, funding_snapshot=0)
    both = {BTC: long_btc, ETH: short_eth}

    def deposit(amount: int, min_shares: int = 0, nonce: int = 12, key: bytes = ka, account: bytes = a):
        return sign(VaultDeposit(account, amount, min_shares, nonce, exp, b""), key)

    def withdraw(shares: int, min_amount: int = 0, nonce: int = 12, key: bytes = ka, account: bytes = a):
        return sign(VaultWithdraw(account, shares, min_amount, nonce, exp, b""), key)

    def unwind(state: State, market: int) -> VaultUnwind:
        return compute_vault_unwind(state, market, BLOCK_TIME, RULES)

    placed = make_vault_state(positions=both)
    nonce = get_unwind_nonce(BTC, BLOCK_TIME, RULES)
    placed.set_order(VAULT_ADDRESS, nonce, Order(b"\x01" * 32, 10**5, market=BTC, leverage=1, time_in_force=1,
                                                 reduce_only=True, expiry=BLOCK_TIME, seq=1))
    placed.commit(0)
    due = unwind(make_vault_state(positions=both), BTC)
    cases = [
        ("vault deposit", make_vault_state(), deposit(10**8)),
        ("vault deposit, positions in two markets", make_vault_state(positions=both), deposit(10**8)),
        ("vault deposit, a flat position's leftover margin", make_vault_state(positions={BTC: flat_btc}), deposit(10**8)),
        ("vault deposit, the first (an empty vault)", make_vault_state(free=0, holders={}), deposit(10**8)),
        ("vault deposit, donation: no whole share", make_vault_state(free=10**15, holders={}, extra_total=1), deposit(10**7)),
        ("vault deposit, below the minimum", make_vault_state(), deposit(10**7 - 1)),
        ("vault deposit, min_shares not met", make_vault_state(), deposit(10**8, min_shares=2 * 10**8)),
        ("vault deposit, more than the collateral", make_vault_state(), deposit(5 * 10**8 + 1)),
        ("vault deposit, stale mark", make_vault_state(positions=both, oracle_time_ms=BLOCK_TIME - 61_000), deposit(10**8)),
        ("vault deposit, from the vault's address", make_vault_state(), deposit(10**8, account=VAULT_ADDRESS)),
        ("vault deposit, signed by another key", make_vault_state(), deposit(10**8, key=kb)),
        ("vault withdraw", make_vault_state(), withdraw(10**8)),
        ("vault withdraw, positions in two markets", make_vault_state(positions=both), withdraw(10**8)),
        ("vault withdraw, locked", make_vault_state(), withdraw(10**8, account=b, key=kb)),
        ("vault withdraw, more shares than held", make_vault_state(), withdraw(10**9 + 1)),
        ("vault withdraw, min_amount not met", make_vault_state(), withdraw(10**8, min_amount=10**9)),
        ("vault withdraw, more than the vault's free collateral", make_vault_state(free=10**6, positions=both),
         withdraw(10**8)),
        ("vault withdraw, no shares", make_vault_state(), withdraw(10**8, account=c, key=KEYS[2])),
        ("vault withdraw, the last shares (both share leaves deleted)",
         make_vault_state(holders={a: (10**9, BLOCK_TIME - 1)}), withdraw(10**9)),
        ("vault unwind, long", make_vault_state(positions=both), due),
        ("vault unwind, short", make_vault_state(positions=both), unwind(make_vault_state(positions=both), ETH)),
        ("vault unwind, twice in a minute", placed, due),
        ("vault unwind, another size", make_vault_state(positions=both),
         msgspec.structs.replace(due, size=due.size + 10_000)),
        ("vault unwind, another limit", make_vault_state(positions=both), msgspec.structs.replace(due, price=due.price - 10**6)),
        ("vault unwind, no position", make_vault_state(), VaultUnwind(BTC, 10**5, 59_400 * 10**6)),
        ("vault unwind, unknown market", make_vault_state(positions=both), msgspec.structs.replace(due, market=3)),
    ]
    return [make_case(name, s, encode_item(record)) for name, s, record in cases]


def deletion_cases() -> list[dict]:
    """AdjustMargin taking all of a flat position's leftover margin: the
    position's leaf is deleted (its written opening carries the deepest
    sibling's preimage), with each shape of that sibling: a leaf one level
    up, a node, a leaf moving up several levels (found by the number of other
    flat positions in the tree, docs/commitment.md "Deleting a leaf")."""
    a = ADDRESSES[0]
    markets = [make_market(BTC, BTC_PRICE), make_market(ETH, 3_000 * 10**6)]
    out = []
    for shape, others in (("a leaf one level up", 0), ("a node", 18), ("a leaf moving up", 66)):
        held = {(a, BTC): Position(0, 0, 7 * 10**6, 0)}
        for i in range(others):
            held[((i + 1).to_bytes(2, "big") * 10, BTC if i % 2 else ETH)] = Position(0, 0, 10**6 + i, 0)
        state = make_perps_state({a: Account(10**9, ())}, markets, held, {})
        record = sign(AdjustMargin(a, BTC, -7 * 10**6, 1, BLOCK_TIME + 1, b""), KEYS[0])
        out.append(make_case(f"adjust margin take all, the sibling {shape}", state, encode_item(record)))
    return out


def trade_cases() -> list[dict]:
    """Trade (onestep_trade.vy): a resting maker order of a (a buy at the
    BTC price) and the taker placed last, b's sell; valid fills opening,
    reducing, flipping and settling funding, and one broken point each."""
    from sequencer.core.records import Trade
    a, b, c, d = ADDRESSES
    lot, price = 10_000, BTC_PRICE
    exp = BLOCK_TIME + 60_000

    def order(buy: bool, size: int = 20 * lot, seq: int = 1, **kw) -> Order:
        fields = dict(filled=0, cancelled=False, market=BTC, is_buy=buy, price=price, leverage=10,
                      time_in_force=0 if seq == 1 else 1, reduce_only=False, expiry=exp, seq=seq)
        fields.update(kw)
        return Order(keccak(b"trade order %d" % seq), size, **fields)

    def book(maker: dict | None = None, taker: dict | None = None, positions: dict | None = None,
             funding_index: int = 0, oracle_time_ms: int = BLOCK_TIME - 1000, collateral: int = 5 * 10**8) -> State:
        held = positions or {}
        market = msgspec.structs.replace(
            make_market(BTC, price, oracle_time_ms=oracle_time_ms, funding_index=funding_index, funding_dust=7),
            open_interest=sum(max(p.size, 0) for p in held.values()) + 50 * lot, basis_ema=3 * 10**6,
            last_trade_price=price - 10**6, last_trade_time_ms=BLOCK_TIME - 20_000)
        orders = {(a, 20): order(True, **(maker or {})), (b, 30): order(False, **({"seq": 2} | (taker or {}))),
                  (c, 40): order(False, seq=2), (d, 30): order(False, seq=2)}
        return make_perps_state({a: Account(collateral, (3,)), b: Account(collateral, ()), c: Account(10**9, ())},
                                [market], held, orders)

    def trade(size: int = 10 * lot, at: int = price, **kw) -> Trade:
        fields = dict(market=BTC, maker=a, maker_nonce=20, taker=b, taker_nonce=30, price=at, size=size)
        fields.update(kw)
        return Trade(**fields)

    short = Position(-30 * lot, -30 * lot * price // 10**8, 10**8, 0)
    long5 = Position(5 * lot, 5 * lot * price // 10**8, 10**7, 0)
    short20 = Position(-20 * lot, -20 * lot * price // 10**8, 10**7, 0)
    cases = [
        ("trade, opening both sides", book(), trade()),
        ("trade, the whole maker order", book(), trade(size=20 * lot)),
        ("trade, the maker closes part of its short", book(positions={(a, BTC): short}), trade()),
        ("trade, funding settled on both sides", book(positions={(a, BTC): short, (b, BTC): long5},
                                                       funding_index=3 * 10**9 + 5), trade()),
        ("trade, the taker flips long to short", book(positions={(b, BTC): long5}), trade()),
        ("trade, the maker closes its short whole (its leaf deleted)", book(positions={(a, BTC): short20}),
         trade(size=20 * lot)),
        ("trade, below the maker's limit", book(maker={"price": price + 10 * 10**6}), trade()),
        ("trade, unknown maker order", book(), trade(maker_nonce=21)),
        ("trade, maker order cancelled", book(maker={"cancelled": True}), trade()),
        ("trade, maker order expired", book(maker={"expiry": BLOCK_TIME - 1}), trade()),
        ("trade, order of another market", book(maker={"market": ETH}), trade()),
        ("trade, overfill", book(), trade(size=21 * lot)),
        ("trade, self trade", book(), trade(taker=a, taker_nonce=20)),
        ("trade, same side", book(taker={"is_buy": True}), trade()),
        ("trade, taker not the order placed last", book(taker={"seq": 1}), trade()),
        ("trade, maker placed after the taker", book(maker={"seq": 3}), trade()),
        ("trade, maker immediate-or-cancel", book(maker={"time_in_force": 1}), trade()),
        ("trade, post-only taker", book(taker={"time_in_force": 2}), trade()),
        ("trade, price above the buy limit", book(), trade(at=price + 10**6)),
        ("trade, price below the sell limit", book(taker={"price": price + 10**6}), trade()),
        ("trade, off tick", book(), trade(at=price - 1)),
        ("trade, off step", book(), trade(size=10 * lot + 1)),
        ("trade, stale mark", book(oracle_time_ms=BLOCK_TIME - 61_000), trade()),
        ("trade, unknown market", book(), trade(market=3)),
        ("trade, reduce-only taker opening", book(taker={"reduce_only": True}), trade()),
        ("trade, reduce-only maker reducing", book(maker={"reduce_only": True}, positions={(a, BTC): short}), trade()),
        ("trade, collateral short of the margin", book(collateral=10**6), trade()),
        ("trade, the taker's collateral covers the margin and the fee exactly", book(collateral=6_030_000), trade()),
        ("trade, the taker's collateral one short of the margin and the fee", book(collateral=6_029_999), trade()),
        ("trade, beyond the maker's bankruptcy price", book(positions={(a, BTC): msgspec.structs.replace(
            short, cost=-30 * lot * (price - 3000 * 10**6) // 10**8, margin=10**6)}), trade()),
        ("trade, taker with no account", book(), trade(taker=d, taker_nonce=30)),
    ]
    return [make_case(name, s, encode_item(record)) for name, s, record in cases]


def liquidate_cases() -> list[dict]:
    """Liquidate, AuctionEnd and ForcedClose under the devnet table (book-first;
    rules v3): the refusals (more than 4 makers too), the ForcedClose served
    as a no-op, its order epoch written (a position leaf created when there
    was none), a flat position's margin released, an open one on a stale mark
    left as it was, an open one taken over whole by the fund (a liquidatable
    one with the liquidation fee, a healthy one without), a bankrupt one the
    fund (11 units) cannot pay for served as a no-op; an AuctionEnd of a
    position still liquidatable (its funding settled, its epoch written).
    The ladder and backstop policies' Liquidate is in
    tests/evm/test_onestep_liquidate.py, with its own market table."""
    from sequencer.core.records import AuctionEnd, ForcedClose, Liquidate
    from sequencer.core.state import Auction
    a, b, c, d = ADDRESSES
    fund = bytes(20)
    liquidatable = Position(10**7, 6_000 * 10**6, 70 * 10**6, 0)   # 0.1 BTC, margin 70 < maintenance 72 USDC
    healthy = Position(10**7, 6_000 * 10**6, 700 * 10**6, 0)
    running = Auction(10**6, 60_000 * 10**6, 59_000 * 10**6, BLOCK_TIME - 1000, BLOCK_TIME + 1000)
    owing = Position(10**7, 6_600 * 10**6, 5 * 10**6, -10**14)  # owes 10 USDC of funding, bankrupt (rules v3)

    def state(position: Position = liquidatable, oracle_time_ms: int = BLOCK_TIME - 1000, auction=None) -> State:
        s = make_perps_state({a: Account(10**9, ())}, [make_market(BTC, BTC_PRICE, oracle_time_ms=oracle_time_ms)],
                             {(a, BTC): position}, {})
        if auction is not None:
            s.set_auction(a, BTC, auction)
            s.commit(0)
        return s

    count = state().globals.inbox_count
    ended = msgspec.structs.replace(running, end_ms=BLOCK_TIME)
    return [
        make_case("liquidate a healthy position", state(healthy), encode_item(Liquidate(a, BTC, ()))),
        make_case("liquidate on a stale mark", state(oracle_time_ms=BLOCK_TIME - 10**6),
                  encode_item(Liquidate(a, BTC, ((b, 1), (c, 2))))),
        make_case("liquidate no position", state(), encode_item(Liquidate(b, BTC, ()))),
        make_case("liquidate the fund", state(), encode_item(Liquidate(fund, BTC, ()))),
        make_case("liquidate in an unlisted market", state(), encode_item(Liquidate(a, 9, ()))),
        make_case("forced close out of order", state(), encode_item(ForcedClose(count + 1, a, BTC))),
        make_case("forced close of an unlisted market", state(), encode_item(ForcedClose(count, a, 2**256 - 1))),
        make_case("forced close of the fund's account", state(), encode_item(ForcedClose(count, fund, BTC))),
        make_case("auction end with no auction", state(), encode_item(AuctionEnd(a, BTC))),
        make_case("auction end while it runs", state(auction=running), encode_item(AuctionEnd(a, BTC))),
        make_case("auction end on a stale mark", state(oracle_time_ms=BLOCK_TIME - 10**6, auction=ended),
                  encode_item(AuctionEnd(a, BTC))),
        make_case("auction end of a recovered position", state(healthy, auction=ended), encode_item(AuctionEnd(a, BTC))),
        make_case("liquidate naming five makers", state(),
                  encode_item(Liquidate(a, BTC, tuple((b, n) for n in range(5))))),
        make_case("liquidate naming eight makers", state(),
                  encode_item(Liquidate(a, BTC, tuple((c, n) for n in range(8))))),
        make_case("forced close with no position: the order epoch", state(), encode_item(ForcedClose(count, b, BTC))),
        make_case("forced close of a flat position: its margin released", state(Position(0, 0, 5 * 10**6, 0, 1)),
                  encode_item(ForcedClose(count, a, BTC))),
        make_case("forced close of a flat position with no account leaf",
                  make_perps_state({a: Account(10**9, ())}, [make_market(BTC, BTC_PRICE)],
                                   {(d, BTC): Position(0, 0, 5 * 10**6, 0)}, {}),
                  encode_item(ForcedClose(count, d, BTC))),
        make_case("forced close on a stale mark", state(oracle_time_ms=BLOCK_TIME - 10**6),
                  encode_item(ForcedClose(count, a, BTC))),
        make_case("forced close of a liquidatable position: the fund takes it over", state(),
                  encode_item(ForcedClose(count, a, BTC))),
        make_case("forced close of a healthy position: the fund takes it over, no fee", state(healthy),
                  encode_item(ForcedClose(count, a, BTC))),
        make_case("forced close the fund cannot pay for: served as a no-op",
                  state(Position(10**7, 6_600 * 10**6, 10 * 10**6, 0)), encode_item(ForcedClose(count, a, BTC))),
        make_case("auction end of a position still liquidatable: its lots kept", state(auction=ended),
                  encode_item(AuctionEnd(a, BTC))),
        make_case("auction end of a position owing funding past its margin: the deficit into its cost",
                  state(owing, auction=ended), encode_item(AuctionEnd(a, BTC))),
        make_case("forced close of a position owing funding past its margin: the fund takes it over",
                  state(Position(10**7, 5_940 * 10**6, 5 * 10**6, -10**14)), encode_item(ForcedClose(count, a, BTC))),
    ]


def auction_cases() -> list[dict]:
    """AuctionBid (onestep_auction.vy) and ModifyOrder (onestep_modify.vy)."""
    from sequencer.core.records import AuctionBid, ModifyOrder
    from sequencer.core.rules.auction import compute_auction_price
    from sequencer.core.rules.base import get_market_params
    from sequencer.core.rules.liquidation import compute_auction_prices
    from sequencer.core.state import Auction, Trigger
    a, b, c, d = ADDRESSES
    ka, kb, kc = KEYS[0], KEYS[1], KEYS[2]
    exp = BLOCK_TIME + 60_000
    lot = 10_000
    params = get_market_params(RULES, BTC)

    def bid_state(size: int = 100 * lot, margin: int = 2 * 10**6, ago: int = 30_000, funding_index: int = 0,
                  keeper: Position | None = None) -> tuple[State, int]:
        """a's position of `size` lots in auction (half of it for sale), b the
        keeper with collateral, c a keeper with none; returns (state, price now)."""
        cost = size * BTC_PRICE // 10**8
        position = Position(size, cost, margin, 0)
        market = make_market(BTC, BTC_PRICE, funding_index=funding_index, funding_dust=7)
        held = {(a, BTC): position} | ({(b, BTC): keeper} if keeper is not None else {})
        market = msgspec.structs.replace(market, open_interest=sum(max(p.size, 0) for p in held.values()))
        state = make_perps_state({a: Account(10**6, ()), b: Account(5 * 10**8, (3,)), c: Account(0, ())},
                                 [market], held, {})
        start, end = compute_auction_prices(position, BTC_PRICE, market, params)
        auction = Auction(abs(size) // 2, start, end, BLOCK_TIME - ago, BLOCK_TIME - ago + params.auction_duration_ms)
        state.set_auction(a, BTC, auction)
        state.commit(0)
        return state, compute_auction_price(auction, BLOCK_TIME, params)

    def bid(account=b, owner=a, size=20 * lot, price=None, leverage=5, nonce=12, key=kb, now=0, short=False):
        limit = price if price is not None else (max(1, now - 2 * params.tick_size) if short else now + 2 * params.tick_size)
        return sign(AuctionBid(account, owner, BTC, size, limit, leverage, nonce, exp, b""), key)

    now = bid_state()[1]
    short_now = bid_state(size=-100 * lot)[1]
    funded_now = bid_state(funding_index=3 * 10**9 + 5)[1]
    keeper_short = Position(-30 * lot, -30 * lot * BTC_PRICE // 10**8, 10**7, 0)
    closing_now = bid_state(keeper=keeper_short)[1]
    cases = [
        ("auction bid", {}, bid(now=now)),
        ("auction bid, a short bought back", {"size": -100 * lot}, bid(now=short_now, short=True)),
        ("auction bid, funding settled on both sides", {"funding_index": 3 * 10**9 + 5}, bid(now=funded_now)),
        ("auction bid, the keeper reduces its short", {"keeper": keeper_short}, bid(now=closing_now)),
        ("auction bid, any limit", {}, bid(price=2**256 - 1)),
        ("auction bid, the last lots (the auction leaf deleted)", {}, bid(size=50 * lot, now=now)),
        ("auction bid, the price decayed past the limit", {}, bid(price=now - params.tick_size)),
        ("auction bid, more than is left", {}, bid(size=51 * lot, now=now)),
        ("auction bid, keeper without collateral", {}, bid(account=c, key=kc, now=now)),
        ("auction bid, the auction is over", {"ago": 60_000}, bid(now=now)),
        ("auction bid, no auction", {}, bid(owner=d, now=now)),
        ("auction bid, the owner bidding on itself", {}, bid(account=a, key=ka, now=now)),
        ("auction bid, leverage above the market's", {}, bid(leverage=51, now=now)),
        ("auction bid, off step", {}, bid(size=20 * lot + 1, now=now)),
        ("auction bid, signed by another key", {}, bid(key=ka, now=now)),
        ("auction bid, nonce used", {}, bid(nonce=3, now=now)),
    ]
    out = [make_case(name, bid_state(**kw)[0], encode_item(record)) for name, kw, record in cases]

    resting = PlaceOrder(a, BTC, True, BTC_PRICE, 10 * lot, 10, 0, False, 20, exp, b"")
    orders = {(a, 20): make_order(resting), (a, 21): make_order(resting, cancelled=True),
              (a, 22): make_order(resting, filled=10 * lot),
              (a, 23): make_order(msgspec.structs.replace(resting, time_in_force=1, nonce=23)),
              (a, 24): make_order(msgspec.structs.replace(resting, expiry=BLOCK_TIME - 1, nonce=24)),
              (a, 25): make_order(msgspec.structs.replace(resting, time_in_force=2, is_buy=False, nonce=25)),
              (b, 20): make_order(resting)}

    def book(positions: dict | None = None) -> State:
        state = make_perps_state({a: Account(5 * 10**8, (3, 8, 9)), b: Account(10**6, ())},
                                 [make_market(BTC, BTC_PRICE)], positions or {}, orders)
        state.set_trigger(a, 40, Trigger(bytes(32), BTC, True, BTC_PRICE, BTC_PRICE, lot, 10, 2, False, 0))
        state.commit(0)
        return state

    def modify(order_nonce=20, price=BTC_PRICE - 10**6, size=20 * lot, nonce=30, account=a, key=ka):
        return sign(ModifyOrder(account, order_nonce, price, size, nonce, exp, b""), key)

    mods = [
        ("modify order", modify()),
        ("modify order, post-only sell", modify(order_nonce=25, price=BTC_PRICE + 10**6)),
        ("modify order, cancelled", modify(order_nonce=21)),
        ("modify order, filled", modify(order_nonce=22)),
        ("modify order, immediate-or-cancel", modify(order_nonce=23)),
        ("modify order, expired", modify(order_nonce=24)),
        ("modify order, someone else's", modify(order_nonce=21, account=b, key=kb)),
        ("modify order, off tick", modify(price=BTC_PRICE + 1)),
        ("modify order, off step", modify(size=20 * lot + 1)),
        ("modify order, below the minimum notional", modify(price=10**6, size=lot)),
        ("modify order, the nonce of an order", modify(nonce=22)),
        ("modify order, the nonce of a trigger", modify(nonce=40)),
        ("modify order, signed by another key", modify(key=kb)),
    ]
    # rules v4: a's order 20 (seq 1) and her BTC order epoch (a liquidation or the dead-man's switch)
    held = Position(10 * lot, 10 * lot * BTC_PRICE // 10**8, 10**7, 0)
    epochs = [
        ("modify order, dead by its owner's order epoch (at its seq)", {(a, BTC): Position(order_epoch=1)}),
        ("modify order, dead by its owner's order epoch (above its seq)", {(a, BTC): Position(order_epoch=7)}),
        ("modify order, dead by the epoch of a held position", {(a, BTC): msgspec.structs.replace(held, order_epoch=1)}),
        ("modify order, its owner's order epoch below its seq", {(a, BTC): msgspec.structs.replace(held, order_epoch=0)}),
        ("modify order, another market's epoch", {(a, ETH): Position(order_epoch=7)}),
    ]
    return (out + [make_case(name, book(), encode_item(record)) for name, record in mods]
            + [make_case(name, book(positions), encode_item(modify())) for name, positions in epochs])


# --- the backstop vault kinds ----------------------------------------------------------


def trigger_cases() -> list[dict]:
    """The trigger kinds (onestep_triggers.vy): PlaceTrigger at each term's
    edge and the cap, ScheduleCancel's lead and daily limit, TriggerFire
    before and after the cross and on a stale mark, ScheduledCancelAll due,
    not due and pending-free, of a market maker (rules v4: full window, 120
    orders, the cap of pending triggers) and with order count 0, CancelOrder
    of a pending, fired or someone else's trigger (the last pending one
    deleting the schedule leaf)."""
    from sequencer.core.records import PlaceTrigger, ScheduleCancel, ScheduledCancelAll, TriggerFire
    from sequencer.core.rules.triggers import DAY_MS, STOP_LOSS, TAKE_PROFIT
    from sequencer.core.state import TRIGGER_CANCELLED, TRIGGER_FIRED, OrderSchedule, Trigger
    a, b = ADDRESSES[0], ADDRESSES[1]
    ka, kb = KEYS[0], KEYS[1]
    exp, lot, today = BLOCK_TIME + 60_000, 100_000, BLOCK_TIME // DAY_MS
    stop = BTC_PRICE - 1000 * 10**6

    def trigger(nonce: int = 30, account: bytes = a, key: bytes = ka, **kw) -> PlaceTrigger:
        fields = dict(account=account, market=BTC, is_buy=False, trigger_price=stop, price=stop - 100 * 10**6,
                      size=lot, leverage=10, tpsl=STOP_LOSS, reduce_only=True, nonce=nonce, expiry=exp, signature=b"")
        fields.update(kw)
        return sign(PlaceTrigger(**fields), key)

    def leaf(record: PlaceTrigger, status: int = 0) -> Trigger:
        return Trigger(eip712.compute_struct_hash("PlaceTrigger", record), record.market, record.is_buy,
                       record.trigger_price, record.price, record.size, record.leverage, record.tpsl,
                       record.reduce_only, BLOCK_TIME - 5000, status)

    def state(mark: int = BTC_PRICE, oracle_time_ms: int = BLOCK_TIME - 1000, schedule: OrderSchedule | None = None,
              pending: int = 1, kept: tuple[int, ...] = (19, 20, 21, 22, 23)) -> State:
        market = msgspec.structs.replace(make_market(BTC, BTC_PRICE, oracle_time_ms=oracle_time_ms), mark_price=mark)
        resting = PlaceOrder(a, BTC, True, BTC_PRICE, lot, 10, 0, False, 20, exp, b"")
        s = make_perps_state({a: Account(10**9, kept), b: Account(10**6, (5, 6))}, [market], {},
                             {(a, 20): make_order(resting), (a, 21): make_order(resting, cancelled=True)})
        fired = leaf(trigger(22), TRIGGER_FIRED)
        s.set_trigger(a, 22, fired)
        s.set_order(a, 22, Order(fired.params_hash, fired.size, 0, False, BTC, False, fired.price, 10, 1, True,
                                 BLOCK_TIME - 4000, 3))
        for nonce in range(23, 23 + pending):
            s.set_trigger(a, nonce, leaf(trigger(nonce)))
        s.set_trigger(a, 19, leaf(trigger(19), TRIGGER_CANCELLED))
        s.set_trigger(b, 6, leaf(trigger(6, b, kb)))
        s.set_order_schedule(a, schedule or OrderSchedule(0, pending, 0, 0))
        s.set_order_schedule(b, OrderSchedule(0, 1, 0, 0))
        s.commit(0)
        return s

    def cancel(order_nonce: int, nonce: int = 31, account: bytes = a, key: bytes = ka):
        return sign(CancelOrder(account, order_nonce, nonce, exp, b""), key)

    def schedule(at: int, nonce: int = 31, key: bytes = ka):
        return sign(ScheduleCancel(a, at, nonce, exp, b""), key)

    def maker_state(order_count: int = 130, orders: int = 120) -> State:
        """Rules v4's cancel-all of a market maker: a full nonce window, orders
        across both markets, a long in BTC (its epoch written), none in ETH
        (an epoch-only leaf), the cap of pending triggers (and a fired one)."""
        s = state(schedule=OrderSchedule(BLOCK_TIME, DEVNET.max_open_triggers, today, 1),
                  pending=DEVNET.max_open_triggers, kept=tuple(range(1000, 1000 + DEVNET.nonce_window)))
        for k in range(orders):
            market, price = (BTC, BTC_PRICE) if k % 2 else (ETH, 3_000 * 10**6)
            s.set_order(a, 200 + k, make_order(PlaceOrder(a, market, k % 4 < 2, price, 10**6, 10, 0, False, 200 + k,
                                                          exp, b""), seq=1 + k))
        s.set_position(a, BTC, Position(10 * lot, 10 * lot * BTC_PRICE // 10**8, 10**8, 0))
        s.set_globals(msgspec.structs.replace(s.globals, order_count=order_count))
        s.commit(0)
        return s

    lead = DEVNET.schedule_cancel_min_delay_ms
    due = OrderSchedule(BLOCK_TIME, 1, today, 2)
    crossed = dict(mark=stop)
    duplicate = state()  # an order under a nonce the account never used: no rule makes one, the check stays
    duplicate.set_order(a, 40, make_order(PlaceOrder(a, BTC, True, BTC_PRICE, lot, 10, 0, False, 40, exp, b"")))
    duplicate.commit(0)
    cases = [
        ("place trigger", state(), trigger()),
        ("place trigger, buy take-profit", state(), trigger(is_buy=True, tpsl=TAKE_PROFIT, price=stop + 10**6,
                                                            reduce_only=False)),
        ("place trigger, limit inside the trigger", state(), trigger(price=stop + 10**6)),
        ("place trigger, tpsl 3", state(), trigger(tpsl=3)),
        ("place trigger, trigger price off tick", state(), trigger(trigger_price=stop + 1)),
        ("place trigger, below the minimum notional", state(), trigger(reduce_only=False, size=10_000,
                                                                       trigger_price=10**6, price=10**6)),
        ("place trigger, duplicate of an order", duplicate, trigger(nonce=40)),
        ("place trigger, the cap reached", state(pending=DEVNET.max_open_triggers,
                                                kept=tuple(range(19, 23 + DEVNET.max_open_triggers))),
         trigger(nonce=100)),
        ("place trigger, signed by another key", state(), trigger(key=kb)),
        ("schedule cancel", state(), schedule(BLOCK_TIME + lead)),
        ("schedule cancel, too soon", state(), schedule(BLOCK_TIME + lead - 1)),
        ("schedule cancel, cleared", state(schedule=OrderSchedule(BLOCK_TIME + lead, 1, 0, 0)), schedule(0)),
        ("schedule cancel, ten ran today", state(schedule=OrderSchedule(0, 1, today, 10)), schedule(BLOCK_TIME + lead)),
        ("schedule cancel, ten ran yesterday", state(schedule=OrderSchedule(0, 1, today - 1, 10)),
         schedule(BLOCK_TIME + lead)),
        ("trigger fire", state(**crossed), TriggerFire(a, 23)),
        ("trigger fire, not crossed", state(), TriggerFire(a, 23)),
        ("trigger fire, stale mark", state(oracle_time_ms=BLOCK_TIME - 61_000, **crossed), TriggerFire(a, 23)),
        ("trigger fire, already fired", state(**crossed), TriggerFire(a, 22)),
        ("trigger fire, unknown", state(**crossed), TriggerFire(a, 99)),
        ("trigger fire, the last pending one (schedule deleted)", state(**crossed), TriggerFire(b, 6)),
        ("scheduled cancel all", state(schedule=due), ScheduledCancelAll(a)),
        ("scheduled cancel all, not due", state(schedule=OrderSchedule(BLOCK_TIME + 1, 1, 0, 0)),
         ScheduledCancelAll(a)),
        ("scheduled cancel all, none scheduled", state(), ScheduledCancelAll(a)),
        ("scheduled cancel all, a market maker: full nonce window, 120 orders, 20 pending triggers",
         maker_state(), ScheduledCancelAll(a)),
        ("scheduled cancel all, no order placed yet (order count 0)", maker_state(order_count=0, orders=0),
         ScheduledCancelAll(a)),
        ("cancel order of a trigger", state(pending=2), cancel(23)),
        ("cancel order of the last pending trigger (schedule deleted)", state(), cancel(6, 7, b, kb)),
        ("cancel order of a fired trigger's order", state(), cancel(22)),
        ("cancel order of someone else's trigger", state(), cancel(6)),
        ("cancel order, trigger already cancelled", state(), cancel(19)),
    ]
    return [make_case(name, s, encode_item(record)) for name, s, record in cases]


def book_cases() -> list[dict]:
    """A Liquidate in the book under the devnet table (book-first; rules v3,
    onestep_book.vy): a's long of 0.1 BTC at 60,000 with margin 70 USDC
    (maintenance 72, bankruptcy price 59,300) against resting bids; the
    makers filled, passed over, refused; the order epoch written; no makers
    (the ladder stops), a bankrupt position in auction (its auction ends)."""
    from sequencer.core.records import Liquidate
    from sequencer.core.state import Auction
    a, b, c, d = ADDRESSES
    lot = 10_000
    position = Position(1000 * lot, 6_000 * 10**6, 70 * 10**6, 0)
    exp = BLOCK_TIME + 60_000

    def bid(size: int, price: int, seq: int, *, leverage: int = 10, market: int = BTC, buy: bool = True) -> Order:
        return make_order(PlaceOrder(b, market, buy, price * 10**6, size * lot, leverage, 0, False, 1, exp, b""),
                          seq=seq)

    def state(orders: dict, *, poor: tuple = (), epochs: dict | None = None, auction=None,
              owner: Position = position) -> State:
        accounts = {a: Account(10**9, ())} | {m: Account(10 if m in poor else 10**10, ()) for m in (b, c, d)}
        held = {(a, BTC): owner} | {(m, BTC): Position(0, 0, 1, 0, e) for m, e in (epochs or {}).items()}
        s = make_perps_state(accounts, [make_market(BTC, BTC_PRICE, funding_index=3)], held, orders,
                             order_count=20)
        if auction is not None:
            s.set_auction(a, BTC, auction)
            s.commit(0)
        return s

    two = {(b, 1): bid(600, 59_900, 3), (c, 2): bid(1000, 59_800, 4)}
    four = {(b, 1): bid(100, 59_900, 3), (c, 2): bid(100, 59_800, 4), (d, 3): bid(100, 59_800, 5),
            (b, 4): bid(100, 59_700, 6)}
    cases = [
        ("book: two makers take the whole position", state(two), Liquidate(a, BTC, ((b, 1), (c, 2)))),
        ("book: a maker with no collateral passed over", state(two, poor=(b,)), Liquidate(a, BTC, ((b, 1), (c, 2)))),
        ("book: four makers (one owner twice) take part, the rest stays", state(four),
         Liquidate(a, BTC, ((b, 1), (c, 2), (d, 3), (b, 4)))),
        ("book: makers out of order", state(two), Liquidate(a, BTC, ((c, 2), (b, 1)))),
        ("book: a maker cancelled by its owner's epoch", state(two, epochs={c: 4}),
         Liquidate(a, BTC, ((b, 1), (c, 2)))),
        ("book: the owner as a maker", state({(a, 1): bid(600, 59_900, 3)}), Liquidate(a, BTC, ((a, 1),))),
        ("book: a maker beyond the bankruptcy price", state({(b, 1): bid(600, 59_200, 3)}),
         Liquidate(a, BTC, ((b, 1),))),
        ("book: a maker on the wrong side", state({(b, 1): bid(600, 59_900, 3, buy=False)}),
         Liquidate(a, BTC, ((b, 1),))),
        ("book: five makers", state(four), Liquidate(a, BTC, ((b, 1), (c, 2), (d, 3), (b, 4), (b, 5)))),
        ("book: a solvent position in auction", state(two, auction=Auction(lot, BTC_PRICE, 59_300 * 10**6,
                                                                           BLOCK_TIME - 1000, BLOCK_TIME + 10**4)),
         Liquidate(a, BTC, ((b, 1),))),
        ("book: no makers, the ladder stops (rules v3)", state(two), Liquidate(a, BTC, ())),
        ("book: no makers, funding owed past the margin: the deficit into the cost (rules v3)", state(two, owner=Position(
            1000 * lot, 6_100 * 10**6, 5 * 10**6, 3 - 10**14)), Liquidate(a, BTC, ())),
        ("book: makers take a position owing funding past its margin (rules v3)", state(two, owner=Position(
            1000 * lot, 5_940 * 10**6, 10 * 10**6, 3 - 2 * 10**14)), Liquidate(a, BTC, ((b, 1), (c, 2)))),
        ("book: a bankrupt position in auction, its auction ends (rules v3)",
         state(two, auction=Auction(lot, BTC_PRICE, 59_300 * 10**6, BLOCK_TIME - 1000, BLOCK_TIME + 10**4),
               owner=Position(1000 * lot, 6_100 * 10**6, 5 * 10**6, 0)),
         Liquidate(a, BTC, ((b, 1),))),
    ]
    return [make_case(name, s, encode_item(record)) for name, s, record in cases]



def ladder_cases() -> list[dict]:
    """Deleverage (rules v3, onestep_ladder.vy): a's long of 0.1 BTC at
    60,000 (margin 70 USDC: maintenance 72) against named shorts: closed at
    the mark against one, three, six counterparties (each one closed whole:
    its leaf deleted) and the fund's own position, a partial step of 1 BTC,
    bad debt the fund pays; the fund short: auto-deleveraged whole, the caps
    cutting, the fund's position taking no part; the fund able to pay the
    shortfall but its own short named first losing at the mark (undone,
    auto-deleveraged); a counterparty owing funding past its margin (its
    deficit absorbed); the insurance fund's own short unwound at the mark,
    its long rounded in its favour owing funding, and its loss past the
    insurance fund auto-deleveraged; the refusals."""
    from sequencer.core.records import Deleverage
    from sequencer.core.state import Auction
    a = ADDRESSES[0]
    users = [keccak(SEED + b"ladder user %d" % i)[:20] for i in range(6)]
    b, c, d = users[:3]
    fund = bytes(20)
    lot = 10_000

    def short(lots: int, *, entry: int = 60_000, margin: int = 10**9, snapshot: int = 0) -> Position:
        return Position(-lots * lot, -lots * lot * entry * 10**6 // 10**8, margin, snapshot)

    def long(lots: int, *, entry: int = 60_000, margin: int = 10**9) -> Position:
        return Position(lots * lot, lots * lot * entry * 10**6 // 10**8, margin, 0)

    def state(counters: dict, *, size: int = 1000, margin: int = 70 * 10**6, cost: int = 6_000 * 10**6,
              insurance: int = 10**12, auction: bool = False, price: int = BTC_PRICE) -> State:
        accounts = {a: Account(10**9, ())} | {u: Account(10**6, (1, 2)) for u in users}
        held = {(a, BTC): Position(size * lot, cost, margin, 0)} | {(u, BTC): p for u, p in counters.items()}
        market = msgspec.structs.replace(make_market(BTC, price, funding_index=3), open_interest=10**14)
        s = make_perps_state(accounts, [market], held, {}, order_count=20)
        s.set_globals(msgspec.structs.replace(s.globals, insurance_fund=insurance))
        if auction:
            s.set_auction(a, BTC, Auction(size * lot, BTC_PRICE, 59_300 * 10**6, BLOCK_TIME - 1000, BLOCK_TIME + 10**4))
        s.commit(0)
        return s

    three = {b: short(400), c: short(400), d: short(400)}
    bankrupt = dict(margin=0, cost=6_100 * 10**6)
    fund_short = Position(-500 * lot, -3_000 * 10**6, 0, 0)
    cases = [
        ("deleverage: one user takes the position at the mark", state({b: short(2000)}), Deleverage(a, BTC, (b,))),
        ("deleverage: three users at the mark", state(three), Deleverage(a, BTC, (b, c, d))),
        ("deleverage: six users at the mark, each closed whole",
         state({u: short(200) for u in users}, size=1200, cost=7_200 * 10**6, margin=84 * 10**6),
         Deleverage(a, BTC, tuple(users))),
        ("deleverage: the fund's own position, then a user", state({fund: fund_short, b: short(2000)}),
         Deleverage(a, BTC, (fund, b))),
        ("deleverage: a partial step", state({b: short(20_000)}, size=10_000, cost=60_000 * 10**6,
                                             margin=700 * 10**6), Deleverage(a, BTC, (b,))),
        ("deleverage: bad debt the fund pays", state(three, **bankrupt), Deleverage(a, BTC, (b, c, d))),
        ("deleverage: the fund short, auto-deleveraged whole", state(three, insurance=10, **bankrupt),
         Deleverage(a, BTC, (b, c, d))),
        ("deleverage: the fund short, the caps leave part",
         state({b: short(300, entry=60_500, margin=3 * 10**6)}, insurance=10, **bankrupt), Deleverage(a, BTC, (b,))),
        ("deleverage: the fund short, its own position takes no part",
         state({fund: fund_short, b: short(2000)}, insurance=10, **bankrupt), Deleverage(a, BTC, (fund, b))),
        ("deleverage: the fund short, only its own position named", state({fund: fund_short}, insurance=10, **bankrupt),
         Deleverage(a, BTC, (fund,))),
        ("deleverage: a healthy position", state(three, margin=700 * 10**6), Deleverage(a, BTC, (b,))),
        ("deleverage: in auction", state(three, auction=True), Deleverage(a, BTC, (b,))),
        ("deleverage: a counterparty on the same side", state({b: Position(400 * lot, 2_400 * 10**6, 10**9, 0)}),
         Deleverage(a, BTC, (b,))),
        ("deleverage: a counterparty with no equity", state({b: short(400, entry=55_000, margin=20 * 10**6)}),
         Deleverage(a, BTC, (b,))),
        ("deleverage: a counterparty named twice", state(three), Deleverage(a, BTC, (b, c, b))),
        ("deleverage: the fund can pay the shortfall, its own short named first loses: auto-deleveraged",
         state({fund: Position(-500 * lot, -2_500 * 10**6, 0, 0), b: short(2000)}, insurance=200 * 10**6, **bankrupt),
         Deleverage(a, BTC, (fund, b))),
        ("deleverage: a counterparty owing funding past its margin (absorbed)",
         state({b: short(400, entry=65_000, margin=10**6, snapshot=125 * 10**13), c: short(400), d: short(400)}),
         Deleverage(a, BTC, (b, c, d))),
        ("deleverage: the fund's own short unwound at the mark",
         state({fund: Position(-500 * lot, -3_100 * 10**6, 0, 0), b: long(300), c: long(300)}),
         Deleverage(fund, BTC, (b, c))),
        ("deleverage: the fund's own long unwound at the mark (in its favour, owing funding)",
         state({fund: Position(500 * lot, 2_900 * 10**6, 0, -10**14), b: short(300)}, price=BTC_PRICE + 333,
               insurance=10**6), Deleverage(fund, BTC, (b,))),
        ("deleverage: the fund's own short at a loss past the insurance fund, auto-deleveraged",
         state({fund: Position(-500 * lot, -2_500 * 10**6, 0, 0), b: long(300), c: long(600)}, insurance=10),
         Deleverage(fund, BTC, (b, c))),
        ("deleverage: the fund named for its own unwind", state({fund: fund_short}), Deleverage(fund, BTC, (a, fund))),
    ]
    out = [make_case(name, s, encode_item(record)) for name, s, record in cases]
    seven = bytes((2, 24)) + a + BTC.to_bytes(4, "big") + bytes([7]) + b"".join(users) + b
    out.append(make_case("deleverage: seven counterparties (a NOOP)", state(three), seven))
    return out

# --- the vault step of a Liquidate, under a table with book+vault markets -----------------

VBTC, VETH = 3, 4


def get_vault_step_rules() -> Context:
    """RULES with the devnet markets plus book+vault twins of BTC and ETH (ids 3 and 4)."""
    from sequencer.core.markets import DEVNET_MARKETS, LIQUIDATION_BOOK_VAULT
    twins = {VBTC: msgspec.structs.replace(DEVNET_MARKETS[1], id=VBTC, symbol="BTC2-USD",
                                           liquidation_policy=LIQUIDATION_BOOK_VAULT),
             VETH: msgspec.structs.replace(DEVNET_MARKETS[2], id=VETH, symbol="ETH2-USD",
                                           liquidation_policy=LIQUIDATION_BOOK_VAULT)}
    return msgspec.structs.replace(RULES, markets={**DEVNET_MARKETS, **twins})


def make_vault_step_state(*, vault: dict | None = None, free: int = 10**10, shares: int = 10**9,
                          margin: int = 70 * 10**6, cost: int = 6_000 * 10**6, insurance: int = 10**9,
                          stale: tuple = (), in_auction: bool = False) -> State:
    """A's 0.1 BTC long at 60,000 in the book+vault BTC (margin 70 USDC,
    maintenance 72); the vault with ``free`` collateral, ``shares`` held by B
    and its positions ``vault`` (market -> Position); the markets in
    ``stale`` stale."""
    from sequencer.core.rules.vault import VAULT_ADDRESS
    from sequencer.core.state import Auction, VaultShare
    a, b = ADDRESSES[0], ADDRESSES[1]
    prices = {BTC: BTC_PRICE, ETH: 3_000 * 10**6, VBTC: BTC_PRICE, VETH: 3_000 * 10**6}
    table = [msgspec.structs.replace(make_market(m, price, oracle_time_ms=BLOCK_TIME - (10**7 if m in stale else 1000)),
                                     open_interest=10**12) for m, price in prices.items()]
    held = {(a, VBTC): Position(10**7, cost, margin, 0)} | {(VAULT_ADDRESS, m): p for m, p in (vault or {}).items()}
    state = make_perps_state({a: Account(10**9, ()), VAULT_ADDRESS: Account(free, ())}, table, held, {},
                             order_count=20)
    if shares:
        state.set_vault_share(b, VaultShare(shares, 0))
        state.set_vault_share(VAULT_ADDRESS, VaultShare(shares))
    state.set_globals(msgspec.structs.replace(state.globals, insurance_fund=insurance))
    if in_auction:
        state.set_auction(a, VBTC, Auction(10**6, BTC_PRICE, 59_000 * 10**6, BLOCK_TIME - 1000, BLOCK_TIME + 1000))
    state.commit(0)
    return state


def vault_step_states() -> list[tuple[str, State]]:
    """(name, pre-state) of each vault step case: A's long liquidated (a
    Liquidate naming no makers in the book+vault BTC), one a branch of the
    step (onestep_vault_step.vy), rules v4's funding deficit of the vault
    among them."""
    short = Position(-5 * 10**6, -3_000 * 10**6, 600 * 10**6, 0)
    bankrupt = dict(margin=0, cost=6_100 * 10**6)
    cases = [
        ("vault step: the vault takes the whole position", make_vault_step_state()),
        ("vault step: the vault closes its short first, then opens", make_vault_step_state(vault={VBTC: short})),
        ("vault step: the budget takes part", make_vault_step_state(free=300 * 10**6)),
        ("vault step: the vault owing funding past its margin (rules v4: into its cost)",
         make_vault_step_state(vault={VBTC: Position(5 * 10**6, 200 * 10**6, 10**6, -5 * 10**16)})),
        ("vault step: positions in three markets", make_vault_step_state(vault={
            BTC: Position(-10**6, -600 * 10**6, 100 * 10**6, 0), ETH: Position(10**9, 3_000 * 10**6, 500 * 10**6, 0),
            VETH: Position(0, 0, 5 * 10**6, 0)})),
        ("vault step: a stale mark of the vault's", make_vault_step_state(
            vault={ETH: Position(10**9, 3_000 * 10**6, 500 * 10**6, 0)}, stale=(ETH,))),
        ("vault step: no shares", make_vault_step_state(shares=0)),
        ("vault step: bankrupt, the fund pays its bad debt", make_vault_step_state(**bankrupt)),
        ("vault step: bankrupt, the fund cannot: undone", make_vault_step_state(insurance=0, **bankrupt)),
        ("vault step: bankrupt in auction, its auction ends", make_vault_step_state(in_auction=True, **bankrupt)),
        ("vault step: a healthy position (refused)", make_vault_step_state(margin=500 * 10**6)),
    ]
    return cases


def vault_step_cases(rules: Context) -> list[dict]:
    from sequencer.core.records import Liquidate
    a = ADDRESSES[0]
    out = []
    for name, state in vault_step_states():
        runner = TraceRunner(state, rules, ctx=open_block_ctx(state))
        pre_root, pre_ctx = runner.state_root, runner.ctx
        result = runner.step(encode_item(Liquidate(a, VBTC, ())))
        out.append({"name": name, "state_root": hx(pre_root), "ctx": ctx_json(pre_ctx),
                    "item": hx(encode_item(Liquidate(a, VBTC, ()))),
                    "openings": [opening_json(o) for o in result.witness.openings],
                    "nonces": list(result.witness.nonces), "post_state_root": hx(runner.state_root),
                    "post_ctx_hash": hx(runner.ctx.hash()), "ok": result.ok})
    return out


def vault_step_table() -> dict:
    """A second market table (book+vault markets, which the devnet table has
    none of) with its families' constructor extras and its cases."""
    from prover.families import ONESTEP_FAMILIES
    rules = get_vault_step_rules()
    return {"name": "book+vault", "markets": get_onestep_markets(rules),
            "families": [[name, list(tags), [hx(x) if isinstance(x, bytes) else x for x in extras(rules)]]
                         for name, tags, extras in ONESTEP_FAMILIES],
            "cases": vault_step_cases(rules)}


def build_onestep_vectors() -> dict:
    return {"params": [hx(ONESTEP_PARAMS[0])] + list(ONESTEP_PARAMS[1:]), "markets": MARKETS,
            "families": get_family_params(), "cases": onestep_cases() + liquidate_cases() + perps_cases() + deletion_cases() + oracle_cases() + vault_cases()
            + trade_cases() + auction_cases() + trigger_cases()
            + book_cases()
            + ladder_cases(),
            "tables": [vault_step_table()]}


def render(obj: dict) -> str:
    return json.dumps(obj, indent=1, sort_keys=True) + "\n"


def targets() -> dict[Path, str]:
    return {RECORDS_PATH: render(build_records_vectors()), ONESTEP_PATH: render(build_onestep_vectors())}


def main(argv: list[str]) -> int:
    stale = []
    for path, text in targets().items():
        if "--check" in argv:
            if not path.exists() or path.read_text() != text:
                stale.append(path)
        else:
            path.write_text(text)
    for path in stale:
        print(f"{path} is stale: run python -m prover.fraud_vectors", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
