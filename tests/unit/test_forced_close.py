"""ForcedClose (the bridge's forceClose, inbox kind 3) in pre/op/post form
(rules v3: the insurance fund takes the whole position over at the mark, and
the engine unwinds it at once in a Deleverage naming the fund): a
healthy position without a fee and its margin freed, a liquidatable one with
the liquidation fee, a bankrupt one with the fund paying the bad debt, the served no-ops, the inbox order, the books after it, and the inbox
encoding the bridge hashes."""
from __future__ import annotations

import msgspec

from perps_support import ADDR, BTC, BTC_PARAMS, ETH, ONE_BTC, Sim, sign_oracle, usd
from sequencer.core.hashing import keccak
from sequencer.core.inbox import (EMPTY_INBOX_HASH, KIND_FORCED_CLOSE, compute_inbox_hash, compute_next_inbox_hash,
                                  decode_inbox_entry, encode_inbox_record, encode_inbox_record_lenient)
from sequencer.core.invariants import compute_balance_violations, compute_conservation, compute_negative_balances
from sequencer.core.markets import DEVNET_MARKETS
from sequencer.core.matching import Exchange
from sequencer.core.records import Deleverage, ForcedClose, ForcedWithdrawal
from sequencer.core.rules.margin import compute_fee, is_liquidatable
from sequencer.core.rules.positions import INSURANCE_ADDRESS
from sequencer.core.rules.table import RULES_V1, RULES_V2
from sequencer.core.state import Position, is_order_open
from l1_bridge.watcher import event_to_record

PRICE = usd(60_000)
ETH_PRICE = 3_000 * 10**6
ALICE = ADDR["alice"]
BOB = ADDR["bob"]


def check_invariants(sim: Sim) -> None:
    assert compute_conservation(sim.state, DEVNET_MARKETS).discrepancy == 0
    assert compute_balance_violations(sim.state) == []
    assert compute_negative_balances(sim.state) == []


def check_books_equal_a_rebuild(sim: Sim) -> None:
    rebuilt = Exchange(DEVNET_MARKETS)
    rebuilt.rebuild(sim.state)
    assert rebuilt.dump() == sim.exchange.dump()
    assert rebuilt.reserved == sim.exchange.reserved


def long_alice() -> Sim:
    """alice: 10x long 1 BTC at 60,000 (bob short, 10x), a 5x ETH long (carol
    short) and a resting BTC bid at 50,000."""
    sim = Sim(fund=usd(100_000), alice=usd(20_000), bob=usd(1_000_000), carol=usd(1_000_000), dave=usd(1_000_000))
    sim.set_price(PRICE)
    sim.set_price(ETH_PRICE, market=ETH)
    sim.place("bob", False, PRICE, ONE_BTC)
    sim.place("alice", True, PRICE, ONE_BTC, leverage=10)
    sim.place("carol", False, ETH_PRICE, 10**9, market=ETH)
    sim.place("alice", True, ETH_PRICE, 10**9, market=ETH, leverage=5)
    sim.place("alice", True, usd(50_000), ONE_BTC // 10, leverage=10)
    return sim


def served_only(before: dict, after: dict) -> bool:
    """Everything but the inbox counters is as it was."""
    keep = lambda tables: {k: v for k, v in tables.items() if k != "globals"}  # noqa: E731
    return keep(before) == keep(after)


def test_forced_close_is_a_v1_rule_and_v2_cancels_by_the_order_epoch():
    assert RULES_V1[ForcedClose].__name__ == "process_forced_close"
    assert RULES_V2[ForcedClose].__name__ == "process_forced_close_v2"


def test_healthy_long_taken_over_by_the_fund_at_the_mark_margin_freed_conservation_exact():
    sim = long_alice()
    sim.set_price(usd(61_000))
    assert not is_liquidatable(sim.position("alice"), usd(61_000), sim.state.markets[BTC], BTC_PARAMS)
    alice_free, bob_free, fund = sim.free("alice"), sim.free("bob"), sim.state.globals.insurance_fund
    eth_before = sim.position("alice", ETH)
    bid = next(key for key in sim.exchange.orders if key[0] == ALICE)
    assert sim.exchange.reserved[ALICE] > 0
    record = ForcedClose(0, ALICE, BTC)

    # rules v3: the insurance fund takes the long over at the mark, and the
    # engine hands it back at once against the short side (bob)
    assert sim.submit(record) == [record, Deleverage(INSURANCE_ADDRESS, BTC, (BOB,))]

    alice = sim.position("alice")
    assert (alice.size, alice.cost, alice.margin) == (0, 0, 0)
    # margin 6,000 + profit 1,000 at the mark: free collateral, no fee on a healthy close
    assert sim.free("alice") == alice_free + usd(6_000) + usd(1_000)
    # bob's short closed at the mark against the fund: margin 6,000 less his loss of 1,000
    assert sim.size("bob") == 0 and sim.free("bob") == bob_free + usd(6_000) - usd(1_000)
    assert sim.state.globals.insurance_fund == fund                 # the fund took and gave back at 61,000
    assert sim.state.positions[(INSURANCE_ADDRESS, BTC)].size == 0
    assert sim.state.markets[BTC].open_interest == 0
    assert sim.position("alice", ETH) == eth_before               # isolation: the ETH position untouched
    assert not is_order_open(sim.state, *bid) and bid not in sim.exchange.orders   # by the order epoch
    assert ALICE not in sim.exchange.reserved
    check_books_equal_a_rebuild(sim)
    g = sim.state.globals
    assert g.inbox_count == 1
    assert g.inbox_hash == keccak(EMPTY_INBOX_HASH + bytes([3]) + (0).to_bytes(8, "big") + ALICE
                                  + BTC.to_bytes(32, "big"))
    check_invariants(sim)
    assert sim.replay().to_tables() == sim.state.to_tables()
    # a later ForcedWithdrawal takes it all
    freed = sim.free("alice")
    assert sim.submit(ForcedWithdrawal(1, ALICE, 10**15))
    assert sim.free("alice") == 0 and sim.state.withdrawals[-1].amount == freed
    check_invariants(sim)


def test_liquidatable_position_taken_over_whole_by_the_fund_with_the_liquidation_fee():
    sim = long_alice()
    sim.now += 1
    assert sim.apply_price(usd(54_600)) is None   # applied directly: no liquidation scan
    assert is_liquidatable(sim.position("alice"), usd(54_600), sim.state.markets[BTC], BTC_PARAMS)
    alice_free, bob_free, fund = sim.free("alice"), sim.free("bob"), sim.state.globals.insurance_fund

    record = ForcedClose(0, ALICE, BTC)
    assert sim.submit(record) == [record, Deleverage(INSURANCE_ADDRESS, BTC, (BOB,))]

    fee = compute_fee(usd(54_600), BTC_PARAMS.liquidation_fee_ppm)
    assert 0 < fee < usd(600)
    assert (sim.size("alice"), sim.position("alice").margin) == (0, 0)   # whole, not a partial step
    assert sim.free("alice") == alice_free + usd(6_000) - usd(5_400) - fee
    assert sim.state.globals.insurance_fund == fund + fee
    # rules v3: the fund took the long at 54,600 and gave it back to bob's short at 54,600
    assert sim.size("bob") == 0 and sim.free("bob") == bob_free + usd(6_000) + usd(5_400)
    assert sim.state.positions[(INSURANCE_ADDRESS, BTC)].size == 0
    check_books_equal_a_rebuild(sim)
    check_invariants(sim)
    assert sim.replay().to_tables() == sim.state.to_tables()


def test_bankrupt_position_fund_pays_the_bad_debt_nothing_freed():
    sim = long_alice()
    sim.now += 1
    assert sim.apply_price(usd(50_000)) is None   # equity 6,000 - 10,000 < 0
    alice_free, bob_free, fund = sim.free("alice"), sim.free("bob"), sim.state.globals.insurance_fund

    snapshot = sim.state.snapshot()
    assert sim.apply(ForcedClose(0, ALICE, BTC)) is None          # the rule alone: the fund takes it at the mark
    assert sim.state.positions[(INSURANCE_ADDRESS, BTC)] == Position(size=ONE_BTC, cost=usd(50_000),
                                                                     funding_snapshot=0)
    sim.state.revert(snapshot)
    sim.log.pop()

    sim.submit(ForcedClose(0, ALICE, BTC))                        # the engine: and unwinds it against bob

    assert (sim.size("alice"), sim.position("alice").margin) == (0, 0)
    assert sim.free("alice") == alice_free
    assert sim.state.globals.insurance_fund == fund - usd(4_000)
    assert sim.size("bob") == 0 and sim.free("bob") == bob_free + usd(6_000) + usd(10_000)
    assert sim.state.positions[(INSURANCE_ADDRESS, BTC)].size == 0
    check_invariants(sim)
    assert sim.replay().to_tables() == sim.state.to_tables()


def test_unknown_market_unknown_account_and_the_fund_are_served_no_ops():
    sim = long_alice()
    requests = [ForcedClose(0, ALICE, 99), ForcedClose(1, b"\x07" * 20, ETH),
                ForcedClose(2, INSURANCE_ADDRESS, BTC), ForcedClose(3, b"\x01\x02", BTC)]
    before = sim.state.to_tables()
    for record in requests:
        assert sim.submit(record) == [record]
    tables = sim.state.to_tables()
    stranger = dict(tables["positions"]).pop((b"\x07" * 20, ETH))
    assert stranger == Position(order_epoch=sim.state.globals.order_count)   # rules v2: its orders cancelled
    tables["positions"] = [item for item in tables["positions"] if item[0] != (b"\x07" * 20, ETH)]
    assert served_only(before, tables)
    assert sim.state.globals.inbox_count == len(requests)
    # the malformed account still extends the chain (written as given), so no bridge chain can match it
    expected = compute_next_inbox_hash(compute_inbox_hash(requests[:3]), encode_inbox_record_lenient(requests[3]))
    assert sim.state.globals.inbox_hash == expected
    check_books_equal_a_rebuild(sim)


def test_stale_mark_leaves_the_position_and_serves_the_request():
    sim = long_alice()
    sim.now += BTC_PARAMS.oracle_max_age_ms + 10
    before = sim.state.to_tables()
    sim.submit(ForcedClose(0, ALICE, BTC))
    assert served_only(before, sim.state.to_tables())            # orders kept too: the close reverted whole
    assert sim.size("alice") == ONE_BTC and sim.state.globals.inbox_count == 1
    check_books_equal_a_rebuild(sim)


def test_wrong_inbox_index_fails_and_changes_nothing():
    sim = long_alice()
    before = sim.state.to_tables()
    for index in (1, 5, -1):
        error = sim.apply(ForcedClose(index, ALICE, BTC))
        assert error is not None and error.code == "inbox_out_of_order"
    assert sim.state.to_tables() == before
    assert sim.apply(ForcedClose(0, ALICE, BTC)) is None
    assert sim.apply(ForcedClose(0, ALICE, BTC)).code == "inbox_out_of_order"   # once each


def test_an_attacker_cannot_close_someone_elses_position():
    """The bridge writes msg.sender as the entry's account and the watcher
    copies the event's account: mallory's forceClose names mallory."""
    sim = long_alice()
    mallory = ADDR["erin"]
    event = {"kind": "close", "account": "0x" + mallory.hex(), "inbox_index": 0, "amount": BTC}
    record = event_to_record(event)
    assert record == ForcedClose(0, mallory, BTC)
    alice_position = sim.position("alice")
    sim.submit(record)
    assert sim.position("alice") == alice_position and sim.size("bob") == -ONE_BTC


def test_inbox_entry_of_a_forced_close():
    record = ForcedClose(9, ALICE, 2)
    entry = encode_inbox_record(record)
    assert entry == bytes([KIND_FORCED_CLOSE]) + (9).to_bytes(8, "big") + ALICE + (2).to_bytes(32, "big")
    assert decode_inbox_entry(entry) == record
    assert msgspec.structs.astuple(record) == (9, ALICE, 2)


def test_under_rules_v2_a_healthy_forced_close_went_against_the_ranked_opposite_positions():
    """Pinned to schema 2 (its logs replay so): the close at the mark took
    bob's short, the fund held nothing.  Rules v3 hand it to the fund (above)."""
    from perps_support import CTX
    sim = Sim(fund=usd(100_000), ctx=msgspec.structs.replace(CTX, schema_version=2), alice=usd(20_000),
              bob=usd(1_000_000))
    sim.set_price(PRICE)
    sim.place("bob", False, PRICE, ONE_BTC)
    sim.place("alice", True, PRICE, ONE_BTC, leverage=10)
    sim.set_price(usd(61_000))
    alice_free, bob_free, fund = sim.free("alice"), sim.free("bob"), sim.state.globals.insurance_fund
    sim.submit(ForcedClose(0, ALICE, BTC))
    assert sim.size("alice") == 0 and sim.free("alice") == alice_free + usd(6_000) + usd(1_000)
    assert sim.size("bob") == 0 and sim.free("bob") == bob_free + usd(6_000) - usd(1_000)
    assert sim.state.globals.insurance_fund == fund and (INSURANCE_ADDRESS, BTC) not in sim.state.positions
    check_invariants(sim)
    assert sim.replay().to_tables() == sim.state.to_tables()
