"""The decisions of l1_bridge.dispute's players (``get_move``), over a real
trace (three blocks of transfers, withdrawals, deposits, forced withdrawals
and refused records: 18 items) and every phase of a game: what the proposer,
an honest challenger, a wrong challenger and a bystander do, who may step,
timeouts, moot games, data loading; and ``describe_game`` as `isoroll l1
disputes` prints it.  The games themselves are played on anvil in
tests/e2e/test_dispute_anvil.py and on py-evm in tests/evm/test_dispute_game.py."""
from __future__ import annotations

import pytest

from l1_bridge.dispute import (ACTIVE, CHALLENGER_TURN, CHALLENGER_WON, LOADING, PLAYING, PROPOSER_TURN, REVEALING,
                               GameView, LocalTrace, Move, OutputTrace, describe_game, format_eth,
                               get_loaded_chunks, get_move)
from prover import fraud_vectors as fv
from prover.hashing import keccak
from prover.records import compute_data_hash
from prover.records import compute_block_items, encode_data
from prover.trace import TraceRunner

ITEMS = [item for message in fv.make_trace_messages() for item in compute_block_items(message)]
PROPOSER, HONEST, LIAR, BYSTANDER = (f"0x{i:040x}" for i in (1, 2, 3, 4))
ZERO = b"\x00" * 32


@pytest.fixture(scope="module")
def honest() -> OutputTrace:
    trace = LocalTrace(TraceRunner(fv.make_trace_genesis(), fv.RULES), ITEMS)
    return OutputTrace([encode_data(ITEMS[:7]), encode_data(ITEMS[7:])], trace)


def lying(known: OutputTrace, wrong_from: int) -> OutputTrace:
    trace = LocalTrace.__new__(LocalTrace)
    trace.__dict__.update(known.trace.__dict__)
    trace.claims = known.trace.claims[:wrong_from] + [keccak(b"lie" + c) for c in known.trace.claims[wrong_from:]]
    return OutputTrace(known.chunks, trace)


def game(known: OutputTrace, lo: int, hi: int, turn: int, *, phase: int = PLAYING, mid_claim: bytes = ZERO,
         claim_hi: bytes | None = None, challenger: str = HONEST, **kw) -> GameView:
    claims = known.trace.claims
    return GameView(output=1, challenger=challenger, lo=lo, hi=hi, claim_lo=claims[lo],
                    claim_hi=claims[hi] if claim_hi is None else claim_hi, mid_claim=mid_claim, turn=turn,
                    depth=2, status=ACTIVE, count=len(ITEMS), phase=phase,
                    withdrawals_root=known.trace.end.ctx.withdrawals.root(), **kw)


TIME = (100, 100)


def test_the_proposer_bisects_with_its_own_claims_and_the_challenger_judges_them(honest):
    n = len(ITEMS)
    wrong_end = keccak(b"wrong end")
    g = game(honest, 0, n, PROPOSER_TURN, claim_hi=wrong_end)
    assert get_move(g, PROPOSER, PROPOSER, honest, TIME) == Move("bisect", claim=honest.trace.claims[n // 2])
    assert get_move(g, PROPOSER, HONEST, honest, TIME) is None  # not its turn
    g = game(honest, 0, n, CHALLENGER_TURN, mid_claim=honest.trace.claims[n // 2], claim_hi=wrong_end)
    assert get_move(g, PROPOSER, HONEST, honest, TIME) == Move("choose", agree=True)
    g.mid_claim = keccak(b"a lie at the midpoint")
    assert get_move(g, PROPOSER, HONEST, honest, TIME) == Move("choose", agree=False)
    assert get_move(g, PROPOSER, BYSTANDER, honest, TIME) is None  # only the game's challenger chooses


def test_who_steps_at_the_last_item(honest):
    liar = lying(honest, 9)
    g = game(honest, 8, 9, CHALLENGER_TURN, claim_hi=liar.trace.claims[9])
    assert get_move(g, PROPOSER, HONEST, honest, TIME) == Move("step")  # the honest challenger proves it
    assert get_move(g, PROPOSER, PROPOSER, liar, TIME) == Move("step")  # a lying proposer's own claim: it may try
    assert get_move(g, PROPOSER, PROPOSER, honest, TIME) is None  # the honest proposer does not defend a lie
    g = game(honest, 8, 9, CHALLENGER_TURN, challenger=LIAR)
    assert get_move(g, PROPOSER, PROPOSER, honest, TIME) == Move("step")  # it wins without waiting for the liar
    g.claim_lo = keccak(b"not agreed")
    assert get_move(g, PROPOSER, PROPOSER, honest, TIME) is None  # never steps from a position it disputes


def test_timeouts_and_moot_games(honest):
    g = game(honest, 0, len(ITEMS), PROPOSER_TURN)
    assert get_move(g, PROPOSER, HONEST, honest, (0, 50)) == Move("timeout")  # the proposer ran out
    assert get_move(g, PROPOSER, PROPOSER, honest, (0, 50)) == Move("bisect", claim=honest.trace.claims[9])
    g = game(honest, 0, len(ITEMS), CHALLENGER_TURN, mid_claim=honest.trace.claims[9], challenger=LIAR)
    assert get_move(g, PROPOSER, PROPOSER, None, (50, 0)) == Move("timeout")  # a silent challenger, no trace needed
    assert get_move(g, PROPOSER, BYSTANDER, honest, (50, 0)) is None
    assert get_move(g, PROPOSER, PROPOSER, honest, TIME, moot=True) == Move("moot")
    g.status = CHALLENGER_WON
    assert get_move(g, PROPOSER, PROPOSER, honest, (0, 0), moot=True) is None  # over: nothing to do


def test_loading_and_revealing(honest):
    g = game(honest, 0, 0, CHALLENGER_TURN, phase=LOADING, data_acc=compute_data_hash(honest.chunks[:1]))
    assert get_move(g, PROPOSER, HONEST, honest, TIME) == Move("load", chunk=1)
    assert get_move(g, PROPOSER, PROPOSER, honest, TIME) is None
    g.data_acc = keccak(b"someone else's chunks")
    assert get_move(g, PROPOSER, HONEST, honest, TIME) is None  # not our data: load nothing
    g = game(honest, 0, len(ITEMS), PROPOSER_TURN, phase=REVEALING)
    assert get_move(g, PROPOSER, PROPOSER, honest, TIME) == Move("reveal")
    g.withdrawals_root = keccak(b"another withdrawals root")
    assert get_move(g, PROPOSER, PROPOSER, honest, TIME) is None  # its trace cannot end there


def test_an_item_with_no_one_step_yet_is_replayed_but_never_stepped(monkeypatch):
    """An item the one-step cannot re-execute (a pending tag; a pending branch
    is the same to the players): the trace's claims go on through it (the L1
    replay's transition), and no side steps a game whose last item it is: a
    clock decides such a game.  Every kind has a one-step now; the oracle
    price stands in for one without (its tag made pending)."""
    from sequencer.core.encoding import encode_block, encode_record, make_block
    from sequencer.core.records import OraclePrice
    from prover import records
    import msgspec
    monkeypatch.setattr(records, "PENDING_TAGS", records.PENDING_TAGS | {32})
    messages = fv.make_trace_messages()
    parent = keccak(messages[-1])
    price = OraclePrice(1, 60_000 * 10**6, fv.BLOCK_TIME + 4, (b"\x00" * 65,))
    block = make_block(4, parent, fv.BLOCK_TIME + 4, [])
    block = msgspec.structs.replace(block, records=(msgspec.Raw(encode_record(price)),))
    items = ITEMS + compute_block_items(encode_block(block))
    trace = LocalTrace(TraceRunner(fv.make_trace_genesis(), fv.RULES), items)
    at = len(ITEMS) + 1
    assert trace.pending == {at} and len(trace.claims) == len(items) + 1
    known = OutputTrace([encode_data(items)], trace)
    g = game(known, at, at + 1, CHALLENGER_TURN)
    assert get_move(g, PROPOSER, HONEST, known, TIME) is None
    assert get_move(g, PROPOSER, PROPOSER, known, TIME) is None
    g = game(known, at + 1, at + 2, CHALLENGER_TURN)  # the block's end, after it, steps as usual
    assert get_move(g, PROPOSER, HONEST, known, TIME) == Move("step")
    assert trace.step_args(at + 1)[2] == items[at + 1]


def test_loaded_chunks_follow_the_data_chain():
    chunks = [b"a" * 10, b"b" * 20, b"c"]
    acc = ZERO
    assert get_loaded_chunks(acc, chunks) == 0
    for k, chunk in enumerate(chunks, 1):
        acc = keccak(acc + keccak(chunk))  # records.vy chain_data
        assert get_loaded_chunks(acc, chunks) == k
    assert get_loaded_chunks(keccak(b"x"), chunks) is None


def test_describe_game_for_people(honest):
    g = game(honest, 4, 9, CHALLENGER_TURN, mid_claim=honest.trace.claims[6], proposer_paid=3 * 10**15,
             challenger_paid=10**17 + 10**15)
    d = describe_game(g, (3600, 59), 7, PROPOSER)
    assert (d["game"], d["output"], d["state"], d["to_move"]) == (7, 1, "active", "challenger: choose")
    assert (d["proposer_clock_s"], d["challenger_clock_s"], d["lo"], d["hi"]) == (3600, 59, 4, 9)
    assert d["mid_claim"] == "0x" + honest.trace.claims[6].hex()
    assert format_eth(d["challenger_bonds_wei"]) == "0.101 ETH" and format_eth(d["proposer_bonds_wei"]) == "0.003 ETH"
    g.phase = LOADING
    assert describe_game(g, (0, 0), 7, PROPOSER)["to_move"] == "challenger: load the output's data"
    g.status = CHALLENGER_WON
    d = describe_game(g, (0, 0), 7, PROPOSER)
    assert d["to_move"] is None and d["state"] == "challenger won"
