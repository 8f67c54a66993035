"""The backstop vault in pre/op/post form: deposits and withdrawals at the
equity per share, the lock-up, liquidity, the first-depositor donation attack,
the takeover from the liquidation ladder within its limits, the unwind into
the book, the committed share leaves, conservation with the vault, and a
Hypothesis property: a share's value never falls on a deposit or a withdrawal."""
from __future__ import annotations

from fractions import Fraction

import msgspec
import pytest
from hypothesis import given, settings, strategies as st

from perps_support import ADDR, BTC, BTC_PARAMS, CTX, ETH, ETH_PARAMS, KEYS, ONE_BTC, Sim, sign, sign_oracle, usd
from prover.keys import get_vault_share_key
from prover.records import ITEM_RECORD, PENDING_TAGS, compute_block_items, decode_item
from prover.trace import build_tree
from sequencer.core.commitment import compute_dirty_leaves, encode_vault_share_leaf
from sequencer.core.invariants import compute_balance_violations, compute_conservation, compute_negative_balances
from sequencer.core.markets import DEVNET_MARKETS
from sequencer.core.matching import Exchange
from sequencer.core.encoding import encode_block, encode_record
from sequencer.core.records import Block, Trade, VaultDeposit, VaultUnwind, VaultWithdraw
from sequencer.core.rules.base import RuleError, require_fresh_price
from sequencer.core.rules.margin import compute_equity_scaled, is_liquidatable
from sequencer.core.rules.positions import INSURANCE_ADDRESS, settle_funding
from sequencer.core.rules.liquidation import get_liquidation_rules
from sequencer.core.rules.vault import (VAULT_ADDRESS, compute_vault_equity, compute_vault_unwind,
                                        get_total_shares, get_unwind_nonce, process_vault_takeover)
from sequencer.core.state import State, VaultShare
from sequencer.core.transition import apply_block_bytes, apply_record
from sequencer.node.assembler import BlockAssembler, CheckedRecord
from sequencer.core.vault_book import admit_vault_unwind

PRICE = usd(60_000)
LOCKUP = CTX.preset.vault_lockup_ms


# --- helpers ------------------------------------------------------------------------------

def deposit_record(sim: Sim, name: str, amount: int, min_shares: int = 0) -> VaultDeposit:
    return sign(VaultDeposit(ADDR[name], amount, min_shares, sim.next_nonce(name), sim.now + 60_000, b""),
                KEYS[name])


def withdraw_record(sim: Sim, name: str, shares: int, min_amount: int = 0) -> VaultWithdraw:
    return sign(VaultWithdraw(ADDR[name], shares, min_amount, sim.next_nonce(name), sim.now + 60_000, b""),
                KEYS[name])


def refused(sim: Sim, record) -> str:
    """Submit a record that must be refused; the state must not change.  Returns the code."""
    before = sim.state.to_tables()
    with pytest.raises(RuleError) as info:
        sim.submit(record)
    assert sim.state.to_tables() == before
    return info.value.code


def shares(sim: Sim, name: str) -> VaultShare | None:
    return sim.state.vault_shares.get(ADDR[name])


def vault_free(sim: Sim) -> int:
    account = sim.state.accounts.get(VAULT_ADDRESS)
    return account.collateral if account else 0


def share_value(state: State, ctx=CTX, timestamp_ms: int | None = None) -> Fraction:
    """(E + 1) / (T + 1): what one share redeems for, exactly."""
    equity = compute_vault_equity(state, ctx, state.globals.timestamp_ms if timestamp_ms is None else timestamp_ms)
    return (equity + 1) / (get_total_shares(state) + 1)


def check_invariants(sim: Sim) -> None:
    assert compute_conservation(sim.state, DEVNET_MARKETS).discrepancy == 0
    assert compute_balance_violations(sim.state) == []
    assert compute_negative_balances(sim.state) == []
    total = sum(s.shares for a, s in sim.state.vault_shares.items() if a != VAULT_ADDRESS)
    assert get_total_shares(sim.state) == total


def funded_sim() -> Sim:
    sim = Sim(fund=usd(100_000), alice=usd(20_000), bob=usd(1_000_000), carol=usd(1_000_000),
              dave=usd(1_000_000), erin=usd(100_000))
    sim.set_price(PRICE)
    sim.set_price(3_000 * 10**6, market=ETH)
    return sim


def long_alice(sim: Sim, size: int = ONE_BTC) -> None:
    """alice: 10x long ``size`` BTC at 60,000, bob short."""
    sim.place("bob", False, PRICE, size)
    sim.place("alice", True, PRICE, size, leverage=10)


def move_price(sim: Sim, price: int, market: int = BTC) -> int:
    """Apply an oracle price without the Exchange's liquidations (twice, so a
    jump held for confirmation is confirmed); returns the mark."""
    for _ in range(2):
        sim.now += 1
        assert sim.apply(sign_oracle(market, price, sim.now)) is None
    return mark_of(sim, market)


def mark_of(sim: Sim, market: int = BTC) -> int:
    return require_fresh_price(sim.state.markets[market], DEVNET_MARKETS[market], sim.now)


def take_over(sim: Sim, name: str = "alice", market: int = BTC) -> tuple[int, int]:
    """Run the vault's takeover on ``name``'s position as the ladder does
    (funding settled first); returns (lots taken, lots asked)."""
    params = DEVNET_MARKETS[market]
    position = sim.position(name, market)
    position = settle_funding(sim.state, ADDR[name], market, position, params)
    sim.state.set_position(ADDR[name], market, position)
    mark = mark_of(sim, market)
    qty = abs(position.size)
    return process_vault_takeover(sim.state, sim.ctx, ADDR[name], position, qty, mark, params,
                                  absorb_deficit=get_liquidation_rules(sim.ctx).absorb_vault_deficit), qty


# --- deposit --------------------------------------------------------------------------------

def test_first_deposit_mints_one_share_per_quote_unit_and_locks_them():
    sim = funded_sim()
    before = sim.free("carol")
    sim.submit(deposit_record(sim, "carol", usd(100_000)))
    assert sim.free("carol") == before - usd(100_000)
    assert vault_free(sim) == usd(100_000)
    assert shares(sim, "carol") == VaultShare(usd(100_000), sim.now + LOCKUP)
    assert get_total_shares(sim.state) == usd(100_000)
    check_invariants(sim)


def test_second_deposit_gets_shares_at_the_equity_per_share_rounded_down():
    sim = funded_sim()
    sim.submit(deposit_record(sim, "carol", usd(100_000)))
    sim.submit(sim.transfer_record("dave", "carol", 1))  # nothing to do with the vault
    # The vault earns 3 units (a donation stands in for a fee): E = 100,000.000003, T = 100,000,000,000.
    sim.state.set_account(VAULT_ADDRESS, msgspec.structs.replace(sim.state.accounts[VAULT_ADDRESS],
                                                                 collateral=usd(100_000) + 3))
    sim.state.set_globals(msgspec.structs.replace(sim.state.globals,
                                                  total_deposited=sim.state.globals.total_deposited + 3))
    value_before = share_value(sim.state, timestamp_ms=sim.now)
    sim.submit(deposit_record(sim, "dave", usd(50_000)))
    expected = usd(50_000) * (usd(100_000) + 1) // (usd(100_000) + 3 + 1)
    assert shares(sim, "dave").shares == expected < usd(50_000)
    assert share_value(sim.state, timestamp_ms=sim.now) >= value_before
    check_invariants(sim)


@pytest.mark.parametrize("amount, code", [(usd(10) - 1, "vault_deposit_too_small"), (0, "invalid_amount"),
                                          (usd(2_000_000), "insufficient_collateral")])
def test_bad_deposits_are_refused_and_change_nothing(amount, code):
    sim = funded_sim()
    assert refused(sim, deposit_record(sim, "carol", amount)) == code


def test_deposit_with_min_shares_above_what_it_buys_is_refused():
    sim = funded_sim()
    assert refused(sim, deposit_record(sim, "carol", usd(100), min_shares=usd(100) + 1)) == "vault_slippage"
    sim.submit(deposit_record(sim, "carol", usd(100), min_shares=usd(100)))
    assert shares(sim, "carol").shares == usd(100)


def test_deposit_on_a_stale_mark_of_a_vault_position_is_refused():
    sim = funded_sim()
    sim.submit(deposit_record(sim, "carol", usd(100_000)))
    long_alice(sim)
    move_price(sim, usd(54_000))
    sim.state.set_position(ADDR["alice"], BTC, sim.position("alice"))
    assert take_over(sim)[0] > 0
    sim.now += BTC_PARAMS.oracle_max_age_ms + 1
    assert refused(sim, deposit_record(sim, "dave", usd(1_000))) == "stale_oracle_price"


# --- withdraw -------------------------------------------------------------------------------

def test_withdraw_is_refused_during_the_lockup_and_pays_exactly_after_it():
    sim = funded_sim()
    sim.submit(deposit_record(sim, "carol", usd(1_000)))
    sim.now += LOCKUP - 1
    assert refused(sim, withdraw_record(sim, "carol", usd(400))) == "vault_locked"
    sim.now += 1
    before = sim.free("carol")
    sim.submit(withdraw_record(sim, "carol", usd(400)))
    assert sim.free("carol") == before + usd(400)
    assert shares(sim, "carol").shares == usd(600) and get_total_shares(sim.state) == usd(600)
    sim.submit(withdraw_record(sim, "carol", usd(600)))
    assert shares(sim, "carol") is None and get_total_shares(sim.state) == 0
    assert vault_free(sim) == 0
    check_invariants(sim)


def test_a_new_deposit_restarts_the_lockup_of_all_the_shares():
    sim = funded_sim()
    sim.submit(deposit_record(sim, "carol", usd(1_000)))
    sim.now += LOCKUP - 10
    sim.submit(deposit_record(sim, "carol", usd(10)))
    sim.now += 10
    assert refused(sim, withdraw_record(sim, "carol", usd(1_000))) == "vault_locked"


def test_withdraw_more_shares_than_held_or_with_min_amount_too_high_is_refused():
    sim = funded_sim()
    sim.submit(deposit_record(sim, "carol", usd(1_000)))
    sim.now += LOCKUP
    assert refused(sim, withdraw_record(sim, "carol", usd(1_000) + 1)) == "insufficient_shares"
    assert refused(sim, withdraw_record(sim, "dave", 1)) == "insufficient_shares"
    assert refused(sim, withdraw_record(sim, "carol", usd(10), min_amount=usd(10) + 1)) == "vault_slippage"


def test_withdraw_more_than_the_vaults_free_collateral_is_refused_until_it_unwinds():
    sim = funded_sim()
    sim.submit(deposit_record(sim, "carol", usd(100_000)))
    long_alice(sim)
    move_price(sim, usd(54_000))   # alice liquidatable; the vault takes her long with its own margin
    taken, _ = take_over(sim)
    assert taken > 0
    margin = sim.position("alice", BTC) and sim.state.positions[(VAULT_ADDRESS, BTC)].margin
    assert margin > 0 and vault_free(sim) < usd(100_000)
    sim.now += LOCKUP
    move_price(sim, usd(54_000))
    all_shares = shares(sim, "carol").shares
    assert refused(sim, withdraw_record(sim, "carol", all_shares)) == "vault_illiquid"
    # What the free collateral can pay is paid, at the equity per share.
    part = all_shares * vault_free(sim) // usd(110_000)
    value_before = share_value(sim.state, timestamp_ms=sim.now)
    sim.submit(withdraw_record(sim, "carol", part))
    assert share_value(sim.state, timestamp_ms=sim.now) >= value_before
    check_invariants(sim)


# --- attacker views -------------------------------------------------------------------------

def test_first_depositor_donation_attack_costs_the_attacker_more_than_it_takes():
    """erin deposits the minimum, donates 100,000 USDC to the vault's address
    to inflate the share price, then dave deposits: dave still gets his
    money's worth less at most one share's value, and erin loses money."""
    sim = funded_sim()
    erin_before = sim.free("erin")
    sim.submit(deposit_record(sim, "erin", usd(10)))
    sim.submit(sim.transfer_record("erin", "alice", 1))
    donation = usd(99_000)
    sim.state.set_account(ADDR["erin"], msgspec.structs.replace(sim.state.accounts[ADDR["erin"]],
                                                                collateral=sim.free("erin") - donation))
    sim.state.set_account(VAULT_ADDRESS, msgspec.structs.replace(sim.state.accounts[VAULT_ADDRESS],
                                                                 collateral=vault_free(sim) + donation))
    deposit = usd(1_000)
    sim.submit(deposit_record(sim, "dave", deposit))
    minted = shares(sim, "dave").shares
    assert minted > 0
    one_share = share_value(sim.state, timestamp_ms=sim.now)
    dave_value = minted * one_share
    assert deposit - dave_value <= one_share             # dave loses at most one share's worth ...
    assert deposit - dave_value < Fraction(deposit, 1000)  # ... which the minimum deposit keeps under 0.1%
    sim.now += LOCKUP
    sim.submit(withdraw_record(sim, "erin", shares(sim, "erin").shares))
    assert sim.free("erin") + 1 < erin_before             # the attack lost money (1: the transfer)
    check_invariants(sim)


def test_deposit_right_before_a_known_liquidation_profit_cannot_leave_with_it():
    """dave sees a liquidation coming (the vault will earn its fee), deposits
    just before it and tries to withdraw just after: the lock-up holds him;
    after it he gets his share of what the vault is worth then, no more."""
    sim = funded_sim()
    sim.submit(deposit_record(sim, "carol", usd(100_000)))
    long_alice(sim)
    sim.submit(deposit_record(sim, "dave", usd(100_000)))
    move_price(sim, usd(54_000))
    assert take_over(sim)[0] > 0
    sim.now += 1
    assert refused(sim, withdraw_record(sim, "dave", shares(sim, "dave").shares)) == "vault_locked"


def test_a_depositor_cannot_redeem_for_more_than_its_share_of_equity():
    sim = funded_sim()
    sim.submit(deposit_record(sim, "carol", usd(1_000)))
    sim.submit(deposit_record(sim, "dave", usd(3_000)))
    sim.now += LOCKUP
    sim.set_price(PRICE)
    sim.submit(withdraw_record(sim, "dave", shares(sim, "dave").shares))
    sim.submit(withdraw_record(sim, "carol", shares(sim, "carol").shares))
    assert vault_free(sim) >= 0 and sim.free("dave") <= usd(1_000_000) and sim.free("carol") <= usd(1_000_000)
    check_invariants(sim)


# --- takeover -------------------------------------------------------------------------------

def test_takeover_moves_the_position_to_the_vault_at_the_mark_with_its_own_margin_and_fee():
    sim = funded_sim()
    sim.submit(deposit_record(sim, "carol", usd(100_000)))
    long_alice(sim, size=ONE_BTC // 2)
    mark = move_price(sim, usd(54_500))
    position = sim.position("alice")
    assert is_liquidatable(position, mark, sim.state.markets[BTC], BTC_PARAMS)
    oi = sim.state.markets[BTC].open_interest
    fund = sim.state.globals.insurance_fund
    taken, qty = take_over(sim)
    assert taken == qty == ONE_BTC // 2
    notional = taken * mark // ONE_BTC                       # about 27,250 USDC, the long receives the floor
    vault = sim.state.positions[(VAULT_ADDRESS, BTC)]
    assert (vault.size, vault.cost) == (taken, notional)
    assert vault.margin == -(-notional // CTX.preset.vault_max_leverage)
    fee = -(-notional * BTC_PARAMS.liquidation_fee_ppm // 1_000_000)
    assert vault_free(sim) == usd(100_000) - vault.margin + fee
    alice = sim.position("alice")
    assert alice.size == 0 and alice.margin == position.margin + (-position.cost + notional) - fee
    assert sim.state.markets[BTC].open_interest == oi and sim.state.globals.insurance_fund == fund
    check_invariants(sim)


def test_takeover_stops_at_the_vaults_limits_and_leaves_the_rest():
    sim = funded_sim()
    sim.submit(deposit_record(sim, "carol", usd(20_000)))
    long_alice(sim, size=ONE_BTC)
    mark = move_price(sim, usd(54_000))
    taken, qty = take_over(sim)
    equity = usd(20_000)
    vault = sim.state.positions[(VAULT_ADDRESS, BTC)]
    assert 0 < taken < qty and taken % BTC_PARAMS.step_size == 0
    assert vault.margin * 1_000_000 <= equity * CTX.preset.vault_max_market_share_ppm
    # one step more would have broken the limit
    step_margin = -(-((taken + BTC_PARAMS.step_size) * mark // ONE_BTC) // CTX.preset.vault_max_leverage)
    assert step_margin * 1_000_000 > equity * CTX.preset.vault_max_market_share_ppm
    assert sim.size("alice") == qty - taken
    check_invariants(sim)


def test_takeover_takes_nothing_and_writes_nothing_when_it_must_not():
    sim = funded_sim()
    long_alice(sim)
    move_price(sim, usd(54_000))
    before = sim.state.to_tables()
    assert take_over(sim)[0] == 0                       # no shares: no vault
    sim.submit(deposit_record(sim, "carol", usd(100_000)))
    position = sim.position("alice")
    for address in (VAULT_ADDRESS, INSURANCE_ADDRESS):
        assert process_vault_takeover(sim.state, CTX, address, position, ONE_BTC, mark_of(sim), BTC_PARAMS,
                                      absorb_deficit=True) == 0
    # a vault position in ETH whose mark is stale: the vault cannot be valued, it takes nothing
    sim.place("dave", False, 3_000 * 10**6, 10**9, market=ETH)
    sim.place("erin", True, 3_000 * 10**6, 10**9, market=ETH, leverage=50)
    move_price(sim, 2_960 * 10**6, market=ETH)
    assert take_over(sim, "erin", ETH)[0] > 0
    tables = sim.state.to_tables()
    sim.state.set_globals(msgspec.structs.replace(sim.state.globals,
                                                  timestamp_ms=sim.now + ETH_PARAMS.oracle_max_age_ms + 1))
    assert take_over(sim)[0] == 0
    assert sim.state.positions[(ADDR["alice"], BTC)] == tables["positions"][
        [k for k, _ in tables["positions"]].index((ADDR["alice"], BTC))][1]
    assert before["positions"] != tables["positions"]


def test_takeover_of_a_bankrupt_slice_has_the_fund_pay_the_bad_debt():
    sim = funded_sim()
    sim.submit(deposit_record(sim, "carol", usd(500_000)))
    long_alice(sim, size=ONE_BTC // 2)
    mark = move_price(sim, usd(53_000))                  # beyond alice's bankruptcy price (54,000)
    assert mark < usd(54_000)
    fund = sim.state.globals.insurance_fund
    taken, qty = take_over(sim)
    assert taken == qty
    notional = taken * mark // ONE_BTC
    assert sim.state.globals.insurance_fund == fund - (usd(30_000) - notional - usd(3_000))
    assert sim.position("alice").margin == 0
    check_invariants(sim)


# --- unwind ---------------------------------------------------------------------------------

def vault_with_long(sim: Sim) -> None:
    sim.submit(deposit_record(sim, "carol", usd(100_000)))
    long_alice(sim, size=ONE_BTC // 2)
    move_price(sim, usd(54_500))
    assert take_over(sim)[0] == ONE_BTC // 2


def unwind(sim: Sim, record: VaultUnwind) -> list[Trade]:
    """What the assembler does: apply the unwind, then match its order."""
    out = admit_vault_unwind(sim.exchange, sim.state, record, sim.now, sim.ctx)
    sim.log.extend((sim.now, r) for r in out)
    return [r for r in out if isinstance(r, Trade)]


def test_unwind_sells_a_bounded_part_of_the_vaults_position_into_the_book():
    sim = funded_sim()
    vault_with_long(sim)
    sim.place("dave", True, usd(54_400), ONE_BTC)            # a bid within 1% of the mark
    before = State.from_tables(sim.state.to_tables())
    record = compute_vault_unwind(sim.state, BTC, sim.now, CTX)
    assert record == VaultUnwind(BTC, ONE_BTC // 20, mark_of(sim) * 99 // 100 // 10**6 * 10**6)
    trades = unwind(sim, record)
    assert [(t.maker, t.taker, t.price, t.size) for t in trades] == [
        (ADDR["dave"], VAULT_ADDRESS, usd(54_400), ONE_BTC // 20)]
    for r in [record, *trades]:                                # a replica replays the same records
        assert apply_record(before, r, sim.now, CTX) is None
    assert before.to_tables() == sim.state.to_tables()
    assert sim.state.positions[(VAULT_ADDRESS, BTC)].size == ONE_BTC // 2 - ONE_BTC // 20
    assert compute_vault_unwind(sim.state, BTC, sim.now, CTX) is None      # once per interval
    sim.now += CTX.preset.vault_unwind_interval_ms
    move_price(sim, usd(54_500))
    assert compute_vault_unwind(sim.state, BTC, sim.now, CTX) is not None
    check_invariants(sim)


def test_unwind_never_sells_below_its_limit():
    sim = funded_sim()
    vault_with_long(sim)
    sim.place("dave", True, usd(53_000), ONE_BTC)              # bid 2.8% under the mark
    record = compute_vault_unwind(sim.state, BTC, sim.now, CTX)
    assert unwind(sim, record) == []
    assert sim.state.positions[(VAULT_ADDRESS, BTC)].size == ONE_BTC // 2


@pytest.mark.parametrize("change, code", [({"size": ONE_BTC // 2}, "invalid_unwind"),
                                          ({"price": usd(40_000)}, "invalid_unwind"),
                                          ({"market": ETH}, "unwind_not_due")])
def test_an_unwind_other_than_the_one_due_is_refused(change, code):
    sim = funded_sim()
    vault_with_long(sim)
    record = msgspec.structs.replace(compute_vault_unwind(sim.state, BTC, sim.now, CTX), **change)
    assert sim.apply(record).code == code


def test_a_second_unwind_in_the_same_interval_is_refused():
    sim = funded_sim()
    vault_with_long(sim)
    record = compute_vault_unwind(sim.state, BTC, sim.now, CTX)
    assert sim.apply(record) is None
    assert (VAULT_ADDRESS, get_unwind_nonce(BTC, sim.now, CTX)) in sim.state.orders
    assert sim.apply(record).code == "unwind_not_due"


# --- commitment -----------------------------------------------------------------------------

def test_share_leaves_are_committed_and_the_root_matches_a_full_rebuild():
    sim = funded_sim()
    compute_dirty_leaves(sim.state)
    sim.submit(deposit_record(sim, "carol", usd(1_000)))
    changes = compute_dirty_leaves(sim.state)
    assert changes[get_vault_share_key(ADDR["carol"])] == encode_vault_share_leaf(shares(sim, "carol"))
    assert changes[get_vault_share_key(VAULT_ADDRESS)] == encode_vault_share_leaf(VaultShare(usd(1_000)))
    sim.now += LOCKUP
    sim.submit(withdraw_record(sim, "carol", usd(1_000)))
    changes = compute_dirty_leaves(sim.state)
    assert changes[get_vault_share_key(ADDR["carol"])] is None       # emptied: the leaf is deleted
    assert changes[get_vault_share_key(VAULT_ADDRESS)] is None
    state = sim.replay()
    sim.submit(deposit_record(sim, "dave", usd(1_000)))
    rebuilt = build_tree(State.from_tables(sim.state.to_tables()))
    assert rebuilt.get(get_vault_share_key(ADDR["dave"])) == encode_vault_share_leaf(shares(sim, "dave"))
    assert state.vault_shares == {}


# --- property: a share's value never falls on a deposit or withdrawal --------------------

@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["deposit", "withdraw", "gain", "loss"]),
                          st.sampled_from(["carol", "dave", "erin"]),
                          st.integers(min_value=1, max_value=10**12)), min_size=1, max_size=25))
def test_share_value_never_falls_on_a_deposit_or_withdrawal(ops):
    sim = funded_sim()
    for op, name, amount in ops:
        sim.now += LOCKUP
        sim.set_price(PRICE)
        value_before = share_value(sim.state, timestamp_ms=sim.now)
        if op in ("gain", "loss"):
            # the vault's equity moves as a position's PnL would: change its free collateral directly
            free = vault_free(sim)
            delta = amount % (free + 1) if op == "loss" else amount
            delta = -delta if op == "loss" else delta
            sim.state.set_account(VAULT_ADDRESS, msgspec.structs.replace(
                sim.state.accounts.get(VAULT_ADDRESS) or sim.state.accounts[ADDR["carol"]].__class__(),
                collateral=free + delta))
            continue
        if op == "deposit":
            record = deposit_record(sim, name, max(CTX.preset.vault_min_deposit, amount % (sim.free(name) + 1)))
        else:
            held = shares(sim, name).shares if shares(sim, name) else 0
            record = withdraw_record(sim, name, 1 + amount % max(1, held))
        try:
            sim.submit(record)
        except RuleError:
            continue
        assert share_value(sim.state, timestamp_ms=sim.now) >= value_before


def test_the_block_assembler_starts_a_block_with_the_due_unwind_and_a_follower_replays_it():
    sim = funded_sim()
    vault_with_long(sim)
    sim.place("dave", True, usd(54_400), ONE_BTC)
    follower = State.from_tables(sim.state.to_tables())
    assembler = BlockAssembler(sim.state, sim.ctx, max_records=4096, exchange=sim.exchange)
    assembly = assembler.assemble([CheckedRecord.of(sim.transfer_record("bob", "dave", 1))], sim.now + 1)
    records = assembly.result.records
    at = [type(r) for r in records].index(VaultUnwind)            # after the block's funding ticks
    assert isinstance(records[at + 1], Trade) and records[at + 1].taker == VAULT_ADDRESS
    assembler.commit(assembly)
    result = apply_block_bytes(follower, assembly.message, CTX)
    assert result.applied and all(receipt.ok for receipt in result.receipts)
    assert follower.to_tables() == sim.state.to_tables()
    assert sim.state.positions[(VAULT_ADDRESS, BTC)].size == ONE_BTC // 2 - ONE_BTC // 20


# --- through the liquidation ladder (policy book+vault) --------------------------------------

def vault_policy_sim() -> Sim:
    """funded_sim with BTC-USD under the book+vault liquidation policy (skipped
    where the executor has no such policy)."""
    markets_module = pytest.importorskip("sequencer.core.markets")
    policy = getattr(markets_module, "LIQUIDATION_BOOK_VAULT", None)
    if policy is None:
        pytest.skip("no book+vault liquidation policy in this executor")
    markets = dict(DEVNET_MARKETS)
    markets[BTC] = msgspec.structs.replace(BTC_PARAMS, liquidation_policy=policy)
    sim = Sim(fund=usd(100_000), ctx=msgspec.structs.replace(CTX, markets=markets), alice=usd(20_000),
              bob=usd(1_000_000), carol=usd(1_000_000), dave=usd(1_000_000))
    sim.exchange = Exchange(markets)
    sim.set_price(PRICE)
    return sim


def test_a_liquidation_the_book_cannot_take_goes_to_the_vault_with_its_fee():
    sim = vault_policy_sim()
    sim.submit(deposit_record(sim, "carol", usd(100_000)))
    long_alice(sim, size=ONE_BTC // 2)                       # nobody bids: the book takes nothing
    fund = sim.state.globals.insurance_fund
    out = sim.set_price(usd(54_500))
    out += sim.set_price(usd(54_500))                        # a held jump is confirmed by the next price
    assert any(type(r).__name__ == "Liquidate" and r.account == ADDR["alice"] for r in out)
    market = sim.state.markets[BTC]
    assert not is_liquidatable(sim.position("alice"), mark_of(sim), market, BTC_PARAMS)   # restored
    vault = sim.state.positions[(VAULT_ADDRESS, BTC)]
    assert vault.size == ONE_BTC // 2 - sim.size("alice") > 0 and vault.margin > 0     # it took every lot closed
    assert vault_free(sim) > usd(100_000) - vault.margin       # it earned the liquidation fee
    assert sim.state.globals.insurance_fund == fund
    check_invariants(sim)
    assert sim.replay().to_tables() == sim.state.to_tables()


# --- fraud proofs: the vault's kinds are one-step kinds (onestep_vault.vy) ----------------

@pytest.mark.parametrize("record", [VaultDeposit(bytes(range(1, 21)), usd(10), 0, 1, 2, bytes(65)),
                                    VaultWithdraw(bytes(range(1, 21)), usd(10), 0, 1, 2, bytes(65)),
                                    VaultUnwind(BTC, 5_000_000, usd(54_000))],
                         ids=lambda r: type(r).__name__)
def test_the_vault_records_are_packed_items_of_the_one_step(record):
    raw = encode_record(record)
    item = compute_block_items(encode_block(Block(1, b"\x00" * 32, 1_700_000_000_000, (msgspec.Raw(raw),))))[1]
    assert item[:2] == bytes((ITEM_RECORD, record.__struct_config__.tag)) and item[2:] != raw
    assert record.__struct_config__.tag not in PENDING_TAGS
    assert decode_item(item) == record


def test_a_deposit_cannot_take_collateral_reserved_by_resting_orders():
    sim = funded_sim()
    sim.place("alice", True, usd(59_000), ONE_BTC, leverage=5)   # rests: reserves 11,800 + the maker fee
    reserved = sim.exchange.reserved[ADDR["alice"]]
    free = sim.free("alice")
    assert refused(sim, deposit_record(sim, "alice", free - reserved + 1)) == "collateral_reserved"
    sim.submit(deposit_record(sim, "alice", free - reserved))
    assert sim.free("alice") == reserved
