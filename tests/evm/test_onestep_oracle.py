"""The differential test of the OraclePrice one-step (onestep.vy handing tag 32
to onestep_oracle.vy): Hypothesis generates markets (absent, with an applied
price or none, a pending jump or none, any basis EMA, a last trade fresh or
stale) and OraclePrice records, quorum-signed by construction or adversarial
(a short quorum, a repeated signer, a non-signer, high-s, v not 27/28, r or s
zero, random bytes, prices at the jump and confirmation edges, 0 and past the
maximum, times not after the applied or pending one, after the block, at the
jump window's edge, unknown markets, and raw item bytes with any signature
count), runs the Python rules (prover.trace over sequencer.core) and the
contracts on py-evm from the same pre-state, and requires the same post-state
root and receipt outcome.  Two oracle sets: the devnet's (2 of 3) and one of
15 signers (8 of 15), the largest a record's item holds."""
from __future__ import annotations

import msgspec
import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st

from l1_bridge.deploy import deploy_onestep, load_artifact
from onestep_support import get_examples, run_both
from prover import fraud_vectors as fv
from prover.plan_oracle import MAX_ORACLE_SIGNERS, get_onestep_oracle_args
from prover.records import MAX_ITEM_SIZE, Noop, compute_record_item, decode_item, encode_item
from prover.trace import TraceRunner
from sequencer.core.transition import apply_record
from sequencer.core.encoding import encode_record
from sequencer.core.hashing import keccak
from sequencer.core.markets import DEVNET_ORACLE_KEYS
from sequencer.core.presets import DEVNET
from sequencer.core.records import OraclePrice
from sequencer.core.rules.base import get_market_params
from sequencer.core import eip712
from sequencer.core.signing import address_of, sign_digest
from sequencer.core.state import Market, State

pytestmark = pytest.mark.evm

MAX = DEVNET.max_amount
PPM = 10**6
U64 = 2**64 - 1
WIDE_KEYS = tuple(keccak(b"isoroll test oracle %d" % i) for i in range(MAX_ORACLE_SIGNERS))
WIDE_RULES = msgspec.structs.replace(fv.RULES, oracle_signers=tuple(address_of(k) for k in WIDE_KEYS),
                                     oracle_quorum=8)
"""A 15-signer oracle set (8 of 15): every signature slot of an item can be a distinct signer."""
OUTSIDERS = tuple(fv.KEYS)
PRICES = {fv.BTC: 60_000 * 10**6, fv.ETH: 3_000 * 10**6}


@pytest.fixture(scope="module")
def contracts(w3, onestep_contract):
    """{oracle set name: onestep.vy} for the devnet set and the 15-signer set."""
    wide, _ = deploy_onestep(w3, WIDE_RULES)
    return {"devnet": onestep_contract, "wide": w3.eth.contract(address=wide, abi=load_artifact("onestep")[0])}


SETS = {"devnet": (fv.RULES, DEVNET_ORACLE_KEYS, 2), "wide": (WIDE_RULES, WIDE_KEYS, 8)}


def sign_price(record: OraclePrice, key: bytes) -> bytes:
    """`key`'s EIP-712 OraclePrice signature of the record's market, price and time."""
    return sign_digest(eip712.compute_digest(fv.RULES.domain_separator, "OraclePrice", record), key)


# --- states -------------------------------------------------------------------------

@st.composite
def oracle_markets(draw, market_id: int):
    """A market as the rules leave it: an applied price (or none), maybe a
    pending jump after it, a basis EMA anywhere around the band, a last trade
    fresh or stale, funding fields untouched by the rule."""
    p = get_market_params(fv.RULES, market_id)
    base = PRICES[market_id]
    applied = draw(st.sampled_from([0, base, base, draw(st.integers(1, 10**12))]))
    now = fv.BLOCK_TIME
    oracle_time = now - draw(st.sampled_from([1, 1000, p.oracle_jump_window_ms, p.oracle_jump_window_ms + 1, 10**6]))
    if not applied:
        oracle_time = draw(st.sampled_from([0, oracle_time]))
    pending, pending_time = 0, 0
    if applied and draw(st.booleans()):
        pending = max(1, applied + draw(st.sampled_from([1, -1])) * applied * draw(st.integers(50_001, 400_000)) // PPM)
        pending_time = draw(st.integers(oracle_time + 1, now))
    band = (applied or base) * p.mark_basis_band_ppm // PPM
    ema = draw(st.one_of(st.integers(-2 * band, 2 * band), st.sampled_from([0, band, -band, band + 1, -band - 1])))
    trade = draw(st.sampled_from([0, base, applied + 7, max(applied - band * 3, 1)]))
    trade_time = now - draw(st.sampled_from([0, 5_000, p.mark_trade_max_age_ms, p.mark_trade_max_age_ms + 1, 10**6]))
    return Market(market_id, oracle_price=applied, oracle_time_ms=oracle_time,
                  funding_index=draw(st.integers(-10**12, 10**12)), open_interest=draw(st.integers(0, 10**12)),
                  funding_time_ms=now - 120_000, funding_dust=draw(st.integers(0, 10**9)),
                  mark_price=draw(st.sampled_from([0, applied, applied + 1])), basis_ema=ema,
                  last_trade_price=trade, last_trade_time_ms=trade_time if trade else 0,
                  pending_oracle_price=pending, pending_oracle_time_ms=pending_time)


@st.composite
def oracle_states(draw):
    listed = [draw(oracle_markets(m)) for m in (fv.BTC, fv.ETH) if draw(st.integers(0, 4))]
    return fv.make_perps_state({}, listed, {}, {})


# --- records ------------------------------------------------------------------------

def price_for(draw, market: Market | None, market_id: int, valid: bool) -> int:
    """A price at an edge of the rule: the jump threshold from the applied
    price (+-1), the confirmation band of the pending one (+-1), the range."""
    if market is None or market.oracle_price == 0:
        base = PRICES.get(market_id, 10**9)
        return draw(st.integers(1, 10**12)) if valid else draw(st.sampled_from([0, 1, MAX, MAX + 1, U64, base]))
    p = get_market_params(fv.RULES, market_id)
    applied, pending = market.oracle_price, market.pending_oracle_price
    jump = applied * p.oracle_jump_ppm // PPM
    edges = [applied, applied + jump, applied + jump + 1, applied - jump, applied - jump - 1, applied * 2,
             max(applied // 2, 1)]
    if pending:
        band = pending * p.oracle_confirm_band_ppm // PPM
        edges += [pending, pending + band, pending + band + 1, pending - band, pending - band - 1]
    if not valid:
        edges += [0, MAX, MAX + 1, U64]
    return max(draw(st.sampled_from(edges)), 1 if valid else 0)


def time_for(draw, market: Market | None, market_id: int, valid: bool) -> int:
    """A time at an edge: just after the applied or pending one, at the block
    time, at and past the jump window of the applied price; invalid: not
    after the latest, after the block."""
    latest = max(market.oracle_time_ms, market.pending_oracle_time_ms) if market else 0
    now = fv.BLOCK_TIME
    window = (get_market_params(fv.RULES, market_id) or get_market_params(fv.RULES, fv.BTC)).oracle_jump_window_ms
    window_edge = market.oracle_time_ms + window if market else now
    choices = [latest + 1, now, window_edge, window_edge + 1]
    if not valid:
        choices += [latest, max(latest - 1, 0), now + 1, U64, 0]
    at = draw(st.sampled_from(choices))
    return min(at, now) if valid else at


def signatures(draw, record: OraclePrice, keys: tuple[bytes, ...], quorum: int, valid: bool) -> tuple[bytes, ...]:
    """Distinct signers, at least the quorum of them, when valid; else any of
    a short quorum, a repeated signer, an outsider, a malformed signature."""
    order = draw(st.permutations(range(len(keys))))
    count = draw(st.integers(quorum, len(keys))) if valid else draw(st.integers(0, len(keys)))
    sigs = [sign_price(record, keys[i]) for i in order[:count]]
    if valid:
        return tuple(sigs)
    flaw = draw(st.sampled_from(["none", "short", "repeat", "outsider", "high_s", "v", "r0", "s0", "random",
                                 "other_price"]))
    if flaw == "short":
        sigs = sigs[:max(quorum - 1, 0)]
    elif flaw == "repeat" and sigs:
        sigs.insert(draw(st.integers(0, len(sigs))), sigs[draw(st.integers(0, len(sigs) - 1))])
    elif flaw == "outsider":
        sigs.insert(draw(st.integers(0, len(sigs))), sign_price(record, draw(st.sampled_from(OUTSIDERS))))
    elif flaw == "other_price":  # a signer's signature over another price
        other = msgspec.structs.replace(record, price=record.price + 1)
        sigs.insert(draw(st.integers(0, len(sigs))), sign_price(other, keys[order[-1]]))
    elif sigs and flaw in ("high_s", "v", "r0", "s0", "random"):
        i = draw(st.integers(0, len(sigs) - 1))
        s = sigs[i]
        sigs[i] = {"high_s": lambda: fv.high_s(s),
                   "v": lambda: s[:64] + bytes([draw(st.sampled_from([0, 1, 26, 29, 255]))]),
                   "r0": lambda: bytes(32) + s[32:],
                   "s0": lambda: s[:32] + bytes(32) + s[64:],
                   "random": lambda: draw(st.binary(min_size=65, max_size=65))}[flaw]()
    return tuple(sigs[:MAX_ORACLE_SIGNERS])


@st.composite
def oracle_cases(draw):
    set_name = draw(st.sampled_from(["devnet", "devnet", "wide"]))
    rules, keys, quorum = SETS[set_name]
    state = draw(oracle_states())
    if draw(st.sampled_from(["record"] * 7 + ["raw"])) == "raw":  # a tag-32 item's bytes: the count may disagree
        count = draw(st.integers(0, 20))
        body = draw(st.binary(min_size=20, max_size=20)) + bytes([count])
        size = 65 * min(count, 16) + draw(st.sampled_from([0, 0, 1, -1]))
        item = (bytes((2, 32)) + body + draw(st.binary(min_size=max(size, 0), max_size=max(size, 0))))[:MAX_ITEM_SIZE]
    else:  # valid by construction, or one part at an edge
        flaw = draw(st.sampled_from(["none", "none", "none", "market", "price", "time", "signatures", "signatures"]))
        listed = sorted(state.markets) + [fv.BTC, fv.ETH]
        market_id = draw(st.sampled_from([fv.BTC, 3, 0, 2**32 - 1] if flaw == "market" else listed))
        market = state.markets.get(market_id)
        record = OraclePrice(market_id, price_for(draw, market, market_id, flaw != "price"),
                             time_for(draw, market, market_id, flaw != "time"), ())
        record = msgspec.structs.replace(record, signatures=signatures(draw, record, keys, quorum, flaw != "signatures"))
        item = encode_item(record)
    ctx = fv.open_block_ctx(state, draw(st.sampled_from([fv.BLOCK_TIME, fv.BLOCK_TIME, fv.BLOCK_TIME + 30_000])))
    if draw(st.sampled_from(["open"] * 19 + ["closed"])) == "closed":
        ctx = msgspec.structs.replace(ctx, block_open=0)
    return set_name, rules, state, ctx, item


def refusal(rules, state, ctx, item) -> str:
    """The rule's error code for the item (the Python side's reason), for the statistics."""
    record = decode_item(item)
    if isinstance(record, Noop):
        return "NOOP item"
    if not ctx.block_open:
        return "no open block"
    error = apply_record(State.from_tables(state.to_tables()), record, ctx.timestamp_ms, rules)
    return error.code if error is not None else "applied"


@settings(max_examples=get_examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=oracle_cases())
def test_python_and_vyper_agree_on_oracle_price(contracts, case):
    set_name, rules, state, ctx, item = case
    before = dict(state.markets)
    reason = refusal(rules, state, ctx, item)
    runner, pre_root, result, (root, ok, post_ctx) = run_both(contracts[set_name], state, ctx, item, rules)
    assert (root, ok) == (runner.state_root, result.ok)
    assert contracts[set_name].functions.ctx_hash(post_ctx).call() == runner.ctx.hash()
    if not ok:
        assert root == pre_root  # a failed record changes nothing
        event(f"refused: {reason}")
        return
    record = decode_item(item)
    after = runner.state.markets[record.market]
    was_pending = before.get(record.market, Market(0)).pending_oracle_price
    event("held pending" + (" (replacing one)" if was_pending else "") if after.pending_oracle_price
          else "applied" + (", confirming a jump" if was_pending and after.oracle_price == record.price
                            and was_pending != 0 else ""))


# --- the jump rule, step by step ------------------------------------------------------

def quorum_signed(record: OraclePrice, keys=DEVNET_ORACLE_KEYS, count: int = 2) -> OraclePrice:
    return msgspec.structs.replace(record, signatures=tuple(sign_price(record, k) for k in keys[:count]))


def step_both(onestep, state: State, record: OraclePrice, rules=fv.RULES, ts: int = fv.BLOCK_TIME):
    """One OraclePrice through both sides; the state after it (Python's) and the outcome."""
    runner, pre_root, result, (root, ok, _) = run_both(onestep, state, fv.open_block_ctx(state, ts),
                                                       encode_item(record), rules)
    assert (root, ok) == (runner.state_root, result.ok)
    return runner.state, ok


def test_a_jump_is_held_then_confirmed_or_replaced(onestep_contract):
    """A print 10% away within the window is held pending (oracle and mark
    unchanged); the next within 1% of it applies it and recomputes the mark;
    another jump instead replaces the pending price; after the window a jump
    applies at once (the applied price is stale)."""
    price, t0 = PRICES[fv.BTC], fv.BLOCK_TIME - 50_000
    market = Market(fv.BTC, oracle_price=price, oracle_time_ms=t0, mark_price=price, basis_ema=7 * 10**6,
                    last_trade_price=2 * price, last_trade_time_ms=fv.BLOCK_TIME - 1000)
    state = fv.make_perps_state({}, [market], {}, {})
    jump = price * 110 // 100
    held, ok = step_both(onestep_contract, state, quorum_signed(OraclePrice(fv.BTC, jump, t0 + 1000, ())))
    m = held.markets[fv.BTC]
    assert ok and (m.oracle_price, m.oracle_time_ms, m.mark_price) == (price, t0, price)
    assert (m.pending_oracle_price, m.pending_oracle_time_ms) == (jump, t0 + 1000)
    confirm = jump + jump // 100  # at the band's edge
    confirmed, ok = step_both(onestep_contract, fv.make_perps_state({}, [m], {}, {}),
                              quorum_signed(OraclePrice(fv.BTC, confirm, t0 + 2000, ())))
    c = confirmed.markets[fv.BTC]
    assert ok and (c.oracle_price, c.oracle_time_ms, c.pending_oracle_price, c.pending_oracle_time_ms) == \
        (confirm, t0 + 2000, 0, 0)
    assert c.mark_price == confirm + 7 * 10**6  # median(oracle, oracle + the EMA, the last trade far above)
    replaced, ok = step_both(onestep_contract, fv.make_perps_state({}, [m], {}, {}),
                             quorum_signed(OraclePrice(fv.BTC, confirm + 1, t0 + 2000, ())))
    r = replaced.markets[fv.BTC]
    assert ok and (r.oracle_price, r.pending_oracle_price) == (price, confirm + 1)
    stale = msgspec.structs.replace(market, oracle_time_ms=fv.BLOCK_TIME - 62_000)
    applied, ok = step_both(onestep_contract, fv.make_perps_state({}, [stale], {}, {}),
                            quorum_signed(OraclePrice(fv.BTC, jump, fv.BLOCK_TIME - 1000, ())))
    assert ok and applied.markets[fv.BTC].oracle_price == jump


def test_signature_flaws_are_refused_on_both_sides(onestep_contract):
    """One signer short, a signer twice, a stranger added to a quorum, a
    high-s twin, v not 27/28, another price's signature: each refused alike
    (no change), the quorum itself applied."""
    state = fv.make_perps_state({}, [fv.make_market(fv.BTC, PRICES[fv.BTC])], {}, {})
    record = OraclePrice(fv.BTC, PRICES[fv.BTC] + 10**6, fv.BLOCK_TIME - 500, ())
    a, b = (sign_price(record, k) for k in DEVNET_ORACLE_KEYS[:2])
    other = sign_price(msgspec.structs.replace(record, price=record.price + 1), DEVNET_ORACLE_KEYS[2])
    flawed = {"short": (a,), "repeated": (a, a), "stranger": (a, b, sign_price(record, fv.KEYS[0])),
              "high s": (a, fv.high_s(b)), "v = 29": (a, b[:64] + b"\x1d"), "v = 0": (a, b[:64] + b"\x00"),
              "another price": (a, other), "none": ()}
    for name, sigs in flawed.items():
        _, ok = step_both(onestep_contract, state, msgspec.structs.replace(record, signatures=sigs))
        assert not ok, name
    _, ok = step_both(onestep_contract, state, msgspec.structs.replace(record, signatures=(b, a)))
    assert ok


def test_more_than_fifteen_signatures_is_a_noop_the_rule_refuses(contracts):
    """16 signatures do not fit the item (a NOOP): with at most 15 signers the
    rule refuses such a record whatever its signatures, so the NOOP is right;
    a tag-32 item with a count byte of 16 is a NOOP on L1 too."""
    state = fv.make_perps_state({}, [fv.make_market(fv.BTC, PRICES[fv.BTC])], {}, {})
    record = OraclePrice(fv.BTC, PRICES[fv.BTC], fv.BLOCK_TIME - 500, ())
    sigs = tuple(sign_price(record, k) for k in WIDE_KEYS)
    for extra in (sigs[0], sign_price(record, fv.KEYS[0])):
        sixteen = msgspec.structs.replace(record, signatures=sigs + (extra,))
        assert isinstance(decode_item(compute_record_item(encode_record(sixteen))), Noop)
        assert apply_record(State.from_tables(state.to_tables()), sixteen, fv.BLOCK_TIME, WIDE_RULES) is not None
    fifteen = encode_item(msgspec.structs.replace(record, signatures=sigs))
    _, ok = step_both(contracts["wide"], state, msgspec.structs.replace(record, signatures=sigs), rules=WIDE_RULES)
    assert ok and len(fifteen) == 23 + 15 * 65
    raw = fifteen[:22] + bytes([16]) + fifteen[23:]
    runner, pre_root, result, (root, ok, _) = run_both(contracts["wide"], state, fv.open_block_ctx(state), raw,
                                                       WIDE_RULES)
    assert not ok and not result.ok and root == pre_root == runner.state_root


def test_a_forged_market_leaf_reverts(onestep_contract):
    """A witness that lies about the market (an older oracle time to let a
    stale print through, the leaf called absent, no opening) does not verify."""
    state = fv.make_perps_state({}, [fv.make_market(fv.BTC, PRICES[fv.BTC])], {}, {})
    ctx = fv.open_block_ctx(state)
    record = quorum_signed(OraclePrice(fv.BTC, PRICES[fv.BTC], fv.BLOCK_TIME - 2000, ()))  # before the applied time
    item = encode_item(record)
    runner = TraceRunner(state, fv.RULES, ctx=ctx)
    pre_root = runner.state_root
    result = runner.step(item)
    assert not result.ok
    honest, = [o.as_arg() for o in result.witness.openings]
    value = honest[1]
    older = (True, value[:32] + (fv.BLOCK_TIME - 5000).to_bytes(32, "big") + value[64:]) + tuple(honest[2:])
    absent = (False, b"") + tuple(honest[2:])
    apply = onestep_contract.functions.apply
    for forged in (older, absent):
        with pytest.raises(Exception, match="bad opening"):
            apply(pre_root, ctx.as_arg(), item, [forged], []).call()
    with pytest.raises(Exception, match="missing opening"):
        apply(pre_root, ctx.as_arg(), item, [], []).call()
    assert apply(pre_root, ctx.as_arg(), item, [honest], []).call()[2] is False


def test_an_empty_oracle_set_accepts_no_price(w3):
    """The production preset ships no signers (quorum 1 of none): deployed so,
    the one-step refuses every price, as the rule does."""
    from sequencer.core.presets import PRESETS
    rules = msgspec.structs.replace(fv.RULES, preset=PRESETS["mainnet"])
    assert get_onestep_oracle_args(rules) == ([], 1)
    address, _ = deploy_onestep(w3, rules)
    onestep = w3.eth.contract(address=address, abi=load_artifact("onestep")[0])
    state = fv.make_perps_state({}, [fv.make_market(fv.BTC, PRICES[fv.BTC])], {}, {})
    _, ok = step_both(onestep, state, quorum_signed(OraclePrice(fv.BTC, PRICES[fv.BTC], fv.BLOCK_TIME - 500, ())),
                      rules=rules)
    assert not ok


def test_the_oracle_set_is_bounded_and_checked_at_deployment(deploy):
    """More than 15 signers cannot be deployed (the Python side says why, the
    constructor's array bound refuses it); a repeated or zero signer reverts."""
    keys = WIDE_KEYS + (keccak(b"one more"),)
    too_many = msgspec.structs.replace(fv.RULES, oracle_signers=tuple(address_of(k) for k in keys), oracle_quorum=9)
    with pytest.raises(ValueError, match="at most 15"):
        get_onestep_oracle_args(too_many)
    signers, _ = get_onestep_oracle_args(WIDE_RULES)
    base = (*fv.ONESTEP_PARAMS, fv.MARKETS)
    for bad in ([signers[0], signers[0]], [signers[0], "0x" + "00" * 20], signers + [signers[0]]):
        with pytest.raises(Exception):
            deploy("onestep_oracle", *base, bad, 1)
    contract = deploy("onestep_oracle", *base, signers, 8)
    assert [contract.functions.oracle_signers(i).call() for i in range(15)] == signers
    assert contract.functions.ORACLE_QUORUM().call() == 8


def test_a_context_that_skips_signatures_cannot_agree(onestep_contract):
    """The one-step always verifies the quorum; a rule context with
    verify_signatures off applies an unsigned price the contract refuses:
    traces for the one-step must be run with verification on (prover.plan_oracle)."""
    state = fv.make_perps_state({}, [fv.make_market(fv.BTC, PRICES[fv.BTC])], {}, {})
    unsigned = OraclePrice(fv.BTC, PRICES[fv.BTC] + 10**6, fv.BLOCK_TIME - 500, ())
    trusting = msgspec.structs.replace(fv.RULES, verify_signatures=False)
    runner, pre_root, result, (root, ok, _) = run_both(onestep_contract, state, fv.open_block_ctx(state),
                                                       encode_item(unsigned), trusting)
    assert result.ok and not ok and root == pre_root != runner.state_root
