"""Arguments of the bridge's claimWithdrawal and escape, built from the Python
state and trees, plus the escape amount the contract will compute (pure code).

Encodings the contract checks (docs/l1-bridge.md):
- withdrawal bytes = abi.encode(uint256 index, address account, uint256 amount,
  uint256 l2_block); its keccak is the withdrawal's identity on L1 (claimed once)
  and the leaf of the checkpoint's withdrawals tree (prover/output.py).
- escape: the account leaf, then for every market registered in the bridge
  (in registration order) an inclusion proof of the position plus an inclusion
  proof of the market leaf, or an exclusion proof of the position.  Because the
  contract demands an entry per registered market, it has seen every position
  the account can hold.
"""
from __future__ import annotations

from typing import Any, Iterable, NamedTuple, Sequence

from eth_abi import encode as abi_encode
from eth_utils import to_checksum_address

from prover.codec import Proof, WithdrawalProof
from prover.hashing import keccak
from prover.keys import get_account_key, get_market_key, get_position_key, get_vault_share_key
from prover.tree import SparseMerkleTree
from sequencer.core.rules.margin import compute_funding_payment
from sequencer.core.rules.vault import VAULT_ADDRESS
from sequencer.core.state import Market, Position, State, Withdrawal, is_empty_position
from sequencer.executor.output import OutputFields


class MarketScale(NamedTuple):
    """A market as the bridge registers it (constructor market_ids, size_scales, funding_scales)."""
    id: int
    size_scale: int
    funding_scale: int = 1

    @classmethod
    def from_params(cls, params: Any) -> "MarketScale":
        """From sequencer.core.markets.MarketParams: sizes in lots of 10**-base_decimals,
        funding index in quote units * 1e6 per whole base unit (sequencer.core.rules.margin)."""
        scale = 10 ** params.base_decimals
        return cls(params.id, scale, scale * 1_000_000)


# --- withdrawals ---------------------------------------------------------------

def encode_withdrawal(w: Withdrawal) -> bytes:
    return abi_encode(["uint256", "address", "uint256", "uint256"],
                      [w.index, to_checksum_address(w.account), w.amount, w.block])


def withdrawal_arg(w: Withdrawal) -> tuple:
    return (w.index, to_checksum_address(w.account), w.amount, w.block)


def claim_args(output_index: int, output: OutputFields, w: Withdrawal, proof: WithdrawalProof) -> tuple:
    """Arguments of claimWithdrawal(output_index, output, withdrawal, leaf_index, siblings)."""
    if proof.withdrawal_hash != keccak(encode_withdrawal(w)):
        raise ValueError("the proof is for another withdrawal")
    return (output_index, output.as_arg(), withdrawal_arg(w), proof.index, list(proof.siblings))


# --- escape --------------------------------------------------------------------

def compute_position_equity(p: Position, m: Market, size_scale: int, funding_scale: int = 1) -> int:
    """margin + floor(size*price/size_scale) - cost - ceil(size*(F_market - F_snap)/funding_scale):
    the bridge's escape arithmetic (rounded for the system), at the committed
    mark (the market leaf's word 6).  With size_scale = MarketParams.scale and
    funding_scale = scale * PPM it equals sequencer.core.rules.margin.compute_equity
    at the mark."""
    value = p.size * m.mark_price // size_scale
    funding = compute_funding_payment(p.size, m.funding_index - p.funding_snapshot, funding_scale)
    return p.margin + value - p.cost - funding


def compute_escape_amount(state: State, address: bytes, markets: Sequence[MarketScale]) -> int:
    """What escape() owes `address` at this state: free collateral plus
    max(0, equity) of each position in the registered markets."""
    account = state.accounts.get(address)
    if account is None:
        raise ValueError("no such account")
    owed = account.collateral
    for ms in markets:
        p = state.positions.get((address, ms.id))
        if is_empty_position(p):
            continue
        owed += max(0, compute_position_equity(p, state.markets[ms.id], ms.size_scale, ms.funding_scale))
    return owed


def smt_proof_arg(proof: Proof) -> tuple:
    """bridge struct SmtProof (bitmap, siblings, other_key, other_value_hash)."""
    return (proof.bitmap, list(proof.siblings), proof.other_key or b"\x00" * 32,
            proof.other_value_hash or b"\x00" * 32)


EMPTY_PROOF = (0, [], b"\x00" * 32, b"\x00" * 32)


def escape_args(tree: SparseMerkleTree, address: bytes, output: OutputFields,
                markets: Iterable[MarketScale | int]) -> tuple:
    """Arguments of escape(account, output, account_value, account_proof, positions)
    for the state committed by `tree` (tree.root must be output.state_root).
    Leaf values are passed as the committed bytes, so this needs the tree only."""
    if tree.root != output.state_root:
        raise ValueError("the tree is not the output's state")
    aproof = tree.prove(get_account_key(address))
    if aproof.value is None:
        raise ValueError("no such account in this state")
    entries = []
    for ms in markets:
        market_id = ms if isinstance(ms, int) else ms.id
        pproof = tree.prove(get_position_key(address, market_id))
        if pproof.value is None:
            entries.append((False, b"", smt_proof_arg(pproof), b"", EMPTY_PROOF))
            continue
        mproof = tree.prove(get_market_key(market_id))
        if mproof.value is None:
            raise ValueError(f"market {market_id} is not in the state")
        entries.append((True, pproof.value, smt_proof_arg(pproof), mproof.value, smt_proof_arg(mproof)))
    return (to_checksum_address(address), output.as_arg(), aproof.value, smt_proof_arg(aproof), entries)


# --- the backstop vault's escape (bridge.vy registerVaultEscape) ---------------------

def compute_vault_escape_amount(state: State, address: bytes, markets: Sequence[MarketScale]) -> int:
    """What registerVaultEscape adds to `address`'s escape at this state: the
    vault's own escape amount (compute_escape_amount of VAULT_ADDRESS) times
    the account's shares over the total, rounded down; 0 without shares."""
    entry, total = state.vault_shares.get(address), state.vault_shares.get(VAULT_ADDRESS)
    if address == VAULT_ADDRESS or entry is None or total is None or not total.shares:
        return 0
    return compute_escape_amount(state, VAULT_ADDRESS, markets) * entry.shares // total.shares


def vault_escape_args(tree: SparseMerkleTree, address: bytes, output: OutputFields) -> tuple:
    """Arguments of registerVaultEscape(account, output, share_value, share_proof,
    total_value, total_proof) for the state committed by `tree`."""
    if tree.root != output.state_root:
        raise ValueError("the tree is not the output's state")
    share, total = tree.prove(get_vault_share_key(address)), tree.prove(get_vault_share_key(VAULT_ADDRESS))
    if share.value is None or total.value is None:
        raise ValueError("no vault shares for this account in this state")
    return (to_checksum_address(address), output.as_arg(), share.value, smt_proof_arg(share), total.value,
            smt_proof_arg(total))


def decode_account_leaf(value: bytes) -> tuple[int, bytes]:
    return int.from_bytes(value[:32], "big"), value[32:64]


__all__ = [
    "OutputFields", "MarketScale", "encode_withdrawal", "withdrawal_arg", "claim_args",
    "compute_position_equity", "compute_escape_amount", "escape_args", "smt_proof_arg",
]
