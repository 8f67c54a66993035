"""The backstop vault's escape on py-evm (bridge.vy registerVaultEscape and its
Python twin l1_bridge.proofs.compute_vault_escape_amount / vault_escape_args):
after a freeze the vault's own escape (its collateral plus its positions'
equities, registered like any account's) is shared among its shareholders by
their committed share leaves, each part joining the shareholder's own escape;
the vault's address is never paid; forged, borrowed or repeated share proofs
are refused.  The L2 states are built with the real vault rule, state,
commitment and tree code (bridge_env.L2)."""
from __future__ import annotations

import msgspec
import pytest
from eth_utils import to_checksum_address
from web3.logs import DISCARD

from bridge_env import (L2, MARKET_SCALES, TEST_PRESET, UNIT, Env, Reverted, addr, bridge_session,  # noqa: F401
                        claim_escape, end_escape_window, env, register_escape)
from l1_bridge.proofs import compute_escape_amount, compute_vault_escape_amount, escape_args, vault_escape_args
from prover.keys import get_vault_share_key
from sequencer.core.records import VaultDeposit
from sequencer.core.rules.vault import VAULT_ADDRESS, process_vault_deposit
from sequencer.core.state import Market, Position, State
from bridge_env import L2_CONTEXT

pytestmark = pytest.mark.evm

CHALLENGE = TEST_PRESET.challenge_period
GRACE = TEST_PRESET.forced_grace
BTC = 10**8
VAULT = to_checksum_address(VAULT_ADDRESS)
NO_SIGNATURES = msgspec.structs.replace(L2_CONTEXT, verify_signatures=False)


def market(price: int, time_ms: int, open_interest: int) -> Market:
    """A market leaf priced at ``price`` (the mark too, where the leaf has one)."""
    extra = {"mark_price": price} if "mark_price" in Market.__struct_fields__ else {}
    return Market(1, oracle_price=price, oracle_time_ms=time_ms, open_interest=open_interest, **extra)


def vault_deposit(l2: L2, who: str, amount: int, nonce: int) -> None:
    """The real VaultDeposit rule (signatures off: the L2 model has no keys)."""
    process_vault_deposit(l2.state, VaultDeposit(addr(who), amount, 0, nonce, 10_000, b""), 1, NO_SIGNATURES)
    l2.state.commit(0)


def vault_setup(env: Env, price: int = 61_000):
    """a and b put 3,000 and 1,000 USDC into the vault; the vault holds a long
    of 0.1 BTC at 60,000 with 1,200 margin (c is short); the price is then
    ``price`` in the last final output; c freezes the bridge."""
    a, b, c = env.users[:3]
    l2 = L2()
    for who, amount in ((a, 6_000), (b, 4_000), (c, 10_000)):
        env.deposit(who, amount * UNIT)
    l2.sync_inbox(env)
    l2.set_market(market(60_000 * UNIT, 1, 0))
    vault_deposit(l2, a, 3_000 * UNIT, 1)
    vault_deposit(l2, b, 1_000 * UNIT, 1)
    l2.open_position(VAULT_ADDRESS, 1, Position(size=BTC // 10, cost=6_000 * UNIT, margin=1_200 * UNIT))
    l2.open_position(addr(c), 1, Position(size=-BTC // 10, cost=-6_000 * UNIT, margin=2_000 * UNIT))
    l2.set_market(market(price * UNIT, 2, BTC // 10))
    cp = l2.checkpoint()
    env.propose(cp)
    env.travel(CHALLENGE)
    idx = env.force_withdraw(c, UNIT)
    env.travel(GRACE)
    env.send(env.bridge.functions.freeze(idx), env.users[-1])
    return l2, cp


def register_vault_share(env: Env, cp, who: str, sender: str | None = None, args: tuple | None = None) -> int:
    args = args or vault_escape_args(cp.tree, addr(who), cp.fields)
    r = env.send(env.bridge.functions.registerVaultEscape(*args), sender or who)
    return env.bridge.events.VaultShareRegistered().process_receipt(r, errors=DISCARD)[0]["args"]["owed"]


def owed(env: Env, who: str) -> int:
    return env.bridge.functions.escape_owed(who).call()


def test_shareholders_escape_their_part_of_the_vaults_equity(env: Env) -> None:
    a, b, c = env.users[:3]
    l2, cp = vault_setup(env)
    state = State.from_tables(cp.state_tables)
    # the vault: 2,800 free + the long's equity 1,200 + 6,100 - 6,000 = 4,100; a holds 3/4, b 1/4
    assert compute_escape_amount(state, VAULT_ADDRESS, MARKET_SCALES) == 4_100 * UNIT
    parts = {who: compute_vault_escape_amount(state, addr(who), MARKET_SCALES) for who in (a, b, c)}
    assert parts == {a: 3_075 * UNIT, b: 1_025 * UNIT, c: 0}
    before = {who: env.balance(who) for who in (a, b, c)}
    for who in (VAULT, a, b, c):
        register_escape(env, cp, who, sender=env.users[5])
    assert owed(env, VAULT) == 4_100 * UNIT
    for who in (a, b):
        assert register_vault_share(env, cp, who, sender=env.users[5]) == parts[who]   # Vyper = Python
        assert owed(env, who) == 3_000 * UNIT + parts[who]
    end_escape_window(env)
    paid = {who: claim_escape(env, who, env.users[5]) for who in (a, b, c)}
    # the pool is every deposit (20,000): each is paid what it is owed
    assert paid == {a: 6_075 * UNIT, b: 4_025 * UNIT, c: 9_900 * UNIT}
    assert {who: env.balance(who) - before[who] for who in (a, b, c)} == paid
    assert env.balance(env.d.bridge) == 0
    with pytest.raises(Reverted):                      # the vault's own escape went to its shareholders
        env.send(env.bridge.functions.claimEscape(VAULT), env.users[5])


def test_a_losing_vault_shares_its_loss_and_its_negative_position_counts_zero(env: Env) -> None:
    a, b, c = env.users[:3]
    l2, cp = vault_setup(env, price=40_000)           # the long's equity 1,200 + 4,000 - 6,000 < 0
    state = State.from_tables(cp.state_tables)
    assert compute_escape_amount(state, VAULT_ADDRESS, MARKET_SCALES) == 2_800 * UNIT
    for who in (VAULT, a, b, c):
        register_escape(env, cp, who, sender=env.users[5])
    assert register_vault_share(env, cp, a) == 2_100 * UNIT
    assert register_vault_share(env, cp, b) == 700 * UNIT


def test_a_share_escape_needs_the_vault_and_the_account_registered_and_counts_once(env: Env) -> None:
    a, b, c = env.users[:3]
    l2, cp = vault_setup(env)
    with pytest.raises(Reverted):                      # the vault's own escape first
        register_vault_share(env, cp, a)
    register_escape(env, cp, VAULT, sender=env.users[5])
    with pytest.raises(Reverted):                      # the account's own escape first
        register_vault_share(env, cp, a)
    register_escape(env, cp, a)
    register_vault_share(env, cp, a)
    with pytest.raises(Reverted):                      # once
        register_vault_share(env, cp, a, sender=env.users[5])
    assert owed(env, a) == 3_000 * UNIT + 3_075 * UNIT
    end_escape_window(env)
    register_escape_late = vault_escape_args(cp.tree, addr(b), cp.fields)
    with pytest.raises(Reverted):                      # the window is over
        env.send(env.bridge.functions.registerVaultEscape(*register_escape_late), b)


def test_forged_and_borrowed_share_proofs_are_refused(env: Env) -> None:
    a, b, c = env.users[:3]
    l2, cp = vault_setup(env)
    for who in (VAULT, a, b, c):
        register_escape(env, cp, who, sender=env.users[5])
    good = vault_escape_args(cp.tree, addr(b), cp.fields)
    _, output, share_value, share_proof, total_value, total_proof = good
    more_shares = (10**15).to_bytes(32, "big") + share_value[32:]
    fewer_total = (1).to_bytes(32, "big") + total_value[32:]
    a_shares = vault_escape_args(cp.tree, addr(a), cp.fields)
    attempts = {
        "inflated shares": (b, output, more_shares, share_proof, total_value, total_proof),
        "deflated total": (b, output, share_value, share_proof, fewer_total, total_proof),
        "a's leaf for b": (b, output, a_shares[2], a_shares[3], total_value, total_proof),
        "the total as b's shares": (b, output, total_value, total_proof, total_value, total_proof),
        "the vault as a holder": (VAULT, output, total_value, total_proof, total_value, total_proof),
        "c without shares": (c, output, share_value, share_proof, total_value, total_proof),
    }
    for name, args in attempts.items():
        with pytest.raises(Reverted):
            env.send(env.bridge.functions.registerVaultEscape(*args), env.users[5])
        assert owed(env, b) == 3_000 * UNIT, name
    assert register_vault_share(env, cp, b, args=good) == 1_025 * UNIT


def test_no_share_escape_before_a_freeze(env: Env) -> None:
    a = env.users[0]
    l2 = L2()
    env.deposit(a, 1_000 * UNIT)
    l2.sync_inbox(env)
    vault_deposit(l2, a, 500 * UNIT, 1)
    cp = l2.checkpoint()
    env.propose(cp)
    env.travel(CHALLENGE)
    assert cp.tree.get(get_vault_share_key(addr(a))) is not None
    with pytest.raises(Reverted):
        register_vault_share(env, cp, a)
    with pytest.raises(Reverted):
        env.send(env.bridge.functions.registerEscape(*escape_args(cp.tree, VAULT_ADDRESS, cp.fields, MARKET_SCALES)), a)
