"""The two failure channels of the state transition (py-evm's): a record that
breaks a rule (RuleError) or does not decode becomes a failed receipt and the
block goes on; any other exception is a bug or a broken machine, so it reverts
the whole block and propagates (the process stops) instead of becoming a
receipt that another replica would not write.

A bug is planted with a test-local rule table: ``transition.RULE_TABLES`` is
monkeypatched to a copy of the tables whose RULES_V1 has one rule replaced."""
from __future__ import annotations

from types import MappingProxyType

import msgspec
import pytest

from perps_support import ADDR, BTC, BTC_PARAMS, CTX, ONE_BTC, Sim, sign_oracle, usd
from sequencer.core import transition
from sequencer.core.encoding import encode_block, make_block
from sequencer.core.records import OraclePrice, PlaceOrder, Withdraw
from sequencer.core.rules.accounts import process_withdraw
from sequencer.core.rules.base import RuleError
from sequencer.core.presets import SCHEMA_VERSION
from sequencer.core.rules.table import RULE_TABLES, RULES_V1, get_rules
from sequencer.core.transition import apply_block_bytes, apply_record

replace = msgspec.structs.replace


def plant(monkeypatch, kind: type, rule) -> None:
    """The current schema version's table with ``kind`` handled by ``rule``."""
    table = MappingProxyType({**get_rules(SCHEMA_VERSION), kind: rule})
    monkeypatch.setattr(transition, "RULE_TABLES", MappingProxyType({SCHEMA_VERSION: table}))


def withdraw_then_fail(exc: Exception):
    def rule(state, record, timestamp_ms, ctx):
        process_withdraw(state, record, timestamp_ms, ctx)  # writes the account and the withdrawal first
        raise exc
    return rule


def block_of(sim: Sim, records: list) -> bytes:
    g = sim.state.globals
    return encode_block(make_block(g.block_number + 1, g.block_hash, sim.now, records))


def funded() -> tuple[Sim, bytes]:
    """alice and bob funded; a block: alice -> bob, bob withdraws, bob -> alice."""
    sim = Sim(alice=usd(100), bob=usd(100))
    records = [sim.transfer_record("alice", "bob", usd(10)), sim.withdraw_record("bob", usd(5)),
               sim.transfer_record("bob", "alice", usd(1))]
    return sim, block_of(sim, records)


def test_a_plain_exception_from_a_rule_propagates_and_reverts_the_whole_block(monkeypatch):
    sim, message = funded()
    before = sim.state.to_tables()
    plant(monkeypatch, Withdraw, withdraw_then_fail(ZeroDivisionError("a bug in the rule")))
    with pytest.raises(ZeroDivisionError, match="a bug in the rule"):
        apply_block_bytes(sim.state, message, CTX)
    # Nothing of the block stays: not the transfer before it, not the withdrawal's own writes.
    assert sim.state.to_tables() == before
    assert sim.state.globals.block_number == 0 and sim.state.withdrawals == []
    # Without the bug the same message applies in full on the same state.
    monkeypatch.undo()
    result = apply_block_bytes(sim.state, message, CTX)
    assert result.applied and [r.ok for r in result.receipts] == [True, True, True]
    assert (sim.free("alice"), sim.free("bob")) == (usd(91), usd(104))
    assert sim.state.globals.block_number == 1 and len(sim.state.withdrawals) == 1


def test_a_plain_exception_from_apply_record_propagates_and_reverts_the_record(monkeypatch):
    sim = Sim(bob=usd(100))
    before = sim.state.to_tables()
    plant(monkeypatch, Withdraw, withdraw_then_fail(MemoryError()))
    with pytest.raises(MemoryError):
        apply_record(sim.state, sim.withdraw_record("bob", usd(5)), sim.now, CTX)
    assert sim.state.to_tables() == before


def test_a_rule_error_is_still_a_failed_receipt_and_the_block_goes_on(monkeypatch):
    sim, message = funded()
    plant(monkeypatch, Withdraw, withdraw_then_fail(RuleError("planted_refusal", "refused after its writes")))
    result = apply_block_bytes(sim.state, message, CTX)
    assert result.applied and [r.ok for r in result.receipts] == [True, False, True]
    assert result.receipts[1].error == "planted_refusal: refused after its writes"
    # The refused withdrawal left nothing; the transfers on either side of it applied.
    assert (sim.free("alice"), sim.free("bob")) == (usd(91), usd(109))
    assert sim.state.withdrawals == [] and sim.state.globals.total_withdrawn == 0
    assert sim.state.globals.block_number == 1


def test_a_broken_signature_backend_stops_instead_of_refusing_the_tx():
    """A recover function that fails for its own reasons (not SignatureError)
    says nothing about the tx: it must not become a ``bad_signature`` receipt."""
    sim, message = funded()
    before = sim.state.to_tables()

    def broken_recover(digest: bytes, signature: bytes) -> bytes:
        raise OSError("libsecp256k1 went away")

    with pytest.raises(OSError, match="went away"):
        apply_block_bytes(sim.state, message, replace(CTX, recover=broken_recover))
    assert sim.state.to_tables() == before


def test_an_unknown_schema_version_stops_before_any_record():
    sim, message = funded()
    before = sim.state.to_tables()
    unknown = max(RULE_TABLES) + 1
    with pytest.raises(ValueError, match=f"no rules for log schema version {unknown}"):
        apply_block_bytes(sim.state, message, replace(CTX, schema_version=unknown))
    assert sim.state.to_tables() == before


def test_a_bug_under_the_exchange_propagates_with_state_and_books_unchanged(monkeypatch):
    """The sequencer's matching applies through the same rules: a bug while
    matching a crossing order reverts the order and its trades and rebuilds the books."""
    sim = Sim(alice=usd(100_000), bob=usd(100_000))
    sim.set_price(usd(60_000))
    sim.place("alice", False, usd(60_000), ONE_BTC)
    before, book = sim.state.to_tables(), sim.exchange.book(BTC)

    def place_then_fail(state, record, timestamp_ms, ctx):
        RULES_V1[PlaceOrder](state, record, timestamp_ms, ctx)
        raise AssertionError("a bug in the rule")

    plant(monkeypatch, PlaceOrder, place_then_fail)
    with pytest.raises(AssertionError, match="a bug in the rule"):
        sim.place("bob", True, usd(60_000), ONE_BTC)
    assert sim.state.to_tables() == before and sim.exchange.book(BTC) == book
    monkeypatch.undo()
    out = sim.place("bob", True, usd(60_000), ONE_BTC)
    assert [type(r).__name__ for r in out] == ["PlaceOrder", "Trade"] and sim.size("bob") == ONE_BTC


def test_an_oracle_price_outside_its_eip712_types_is_a_rule_error():
    """A market id no uint32 holds (configurable, never signable): the digest
    cannot be built, which is a refusal of the record, not a crash."""
    huge = 2**32
    ctx = replace(CTX, markets={huge: replace(BTC_PARAMS, id=huge)})
    sim = Sim(ctx=ctx)
    signed = sign_oracle(BTC, usd(60_000), sim.now)
    record = OraclePrice(huge, usd(60_000), sim.now, signed.signatures)
    error = apply_record(sim.state, record, sim.now, ctx)
    assert error is not None and error.code == "invalid_field" and "uint32" in error.message, error
    assert sim.state.markets == {}


def test_undecodable_records_are_still_failed_receipts():
    sim = Sim(alice=usd(100))
    good = sim.transfer_record("alice", "bob", usd(1))
    g = sim.state.globals
    block = make_block(1, g.block_hash, sim.now, [good])
    not_records = [msgspec.msgpack.encode("not a record"), msgspec.msgpack.encode([99, 1, 2])]  # unknown tag 99
    block = replace(block, records=(msgspec.Raw(not_records[0]), block.records[0], msgspec.Raw(not_records[1])))
    result = apply_block_bytes(sim.state, encode_block(block), CTX)
    assert result.applied and [r.ok for r in result.receipts] == [False, True, False]
    assert all(r.error.startswith("undecodable_record") for r in (result.receipts[0], result.receipts[2]))
    assert sim.free("bob") == usd(1) and ADDR["bob"] in sim.state.accounts
