"""What a checkpoint commits on L1: the output root, and the withdrawals tree
whose root it carries (docs/commitment.md).

* ``output_root = keccak(abi.encode(version, state_root, withdrawals_root,
  last_block_hash, inbox_count, inbox_hash, data_hash))``
* the withdrawals tree: an indexed binary Merkle tree over the checkpoint's
  withdrawals, in order (below).

Pure code, like the state tree (prover/tree.py); the Vyper side is
l1_bridge/contracts/smt.vy (``output_root``, ``verify_withdrawal``).
"""

from __future__ import annotations

from typing import Sequence

from prover.codec import UINT256_MAX, ProofError, WithdrawalProof
from prover.hashing import EMPTY, LEAF_PREFIX, keccak, node_hash

OUTPUT_VERSION = 0


def _word(x: int | bytes, name: str) -> bytes:
    if isinstance(x, int):
        if not 0 <= x <= UINT256_MAX:
            raise ValueError(f"{name} must be a uint256")
        return x.to_bytes(32, "big")
    if isinstance(x, (bytes, bytearray)) and len(x) == 32:
        return bytes(x)
    raise ValueError(f"{name} must be 32 bytes")


def compute_output_root(
    version: int,
    state_root: bytes,
    withdrawals_root: bytes,
    last_block_hash: bytes,
    inbox_count: int,
    inbox_hash: bytes,
    data_hash: bytes,
) -> bytes:
    """keccak(abi.encode(uint256 version, bytes32 state_root,
    bytes32 withdrawals_root, bytes32 last_block_hash, uint256 inbox_count,
    bytes32 inbox_hash, bytes32 data_hash)): 7 words, 224 bytes."""
    return keccak(
        b"".join(
            (
                _word(version, "version"),
                _word(state_root, "state_root"),
                _word(withdrawals_root, "withdrawals_root"),
                _word(last_block_hash, "last_block_hash"),
                _word(inbox_count, "inbox_count"),
                _word(inbox_hash, "inbox_hash"),
                _word(data_hash, "data_hash"),
            )
        )
    )


# --------------------------------------------------------------------------
# withdrawals tree: indexed binary Merkle tree
#   withdrawal_hash = keccak(withdrawal bytes)        (its identity on L1)
#   leaf_i          = keccak(0x00 || withdrawal_hash_i)
#   node            = keccak(0x01 || left || right)
#   n leaves padded with EMPTY (zero) leaves to 2**depth,
#   depth = ceil(log2(n)) (0 for n == 1); root of no withdrawals = EMPTY.
#   The proof of leaf i: index i and `depth` siblings, bottom first; bit k of
#   i says whether the running hash is the right (1) or left (0) child.
# --------------------------------------------------------------------------

MAX_WITHDRAWAL_DEPTH = 32


def withdrawal_hash(withdrawal: bytes) -> bytes:
    return keccak(withdrawal)


def withdrawal_leaf(whash: bytes) -> bytes:
    return keccak(LEAF_PREFIX + whash)


def _withdrawal_levels(withdrawals: Sequence[bytes]) -> list[list[bytes]]:
    level = [withdrawal_leaf(withdrawal_hash(w)) for w in withdrawals]
    if not level:
        return [[EMPTY]]
    depth = (len(level) - 1).bit_length()
    if depth > MAX_WITHDRAWAL_DEPTH:
        raise ValueError("too many withdrawals in one checkpoint")
    level += [EMPTY] * ((1 << depth) - len(level))
    levels = [level]
    while len(level) > 1:
        level = [node_hash(level[i], level[i + 1]) for i in range(0, len(level), 2)]
        levels.append(level)
    return levels


def compute_withdrawals_root(withdrawals: Sequence[bytes]) -> bytes:
    """Root over the encoded withdrawals, in order (index = position)."""
    return _withdrawal_levels(withdrawals)[-1][0]


def _prove_leaf(levels: list[list[bytes]], withdrawal: bytes, index: int) -> WithdrawalProof:
    siblings = tuple(level[(index >> height) ^ 1] for height, level in enumerate(levels[:-1]))
    return WithdrawalProof(withdrawal_hash(withdrawal), index, siblings)


def withdrawal_proofs(withdrawals: Sequence[bytes]) -> tuple[bytes, list[WithdrawalProof]]:
    """(root, proof for each withdrawal) in one pass."""
    levels = _withdrawal_levels(withdrawals)
    return levels[-1][0], [_prove_leaf(levels, w, i) for i, w in enumerate(withdrawals)]


def prove_withdrawal(withdrawals: Sequence[bytes], index: int) -> WithdrawalProof:
    if not 0 <= index < len(withdrawals):
        raise IndexError("withdrawal index out of range")
    return _prove_leaf(_withdrawal_levels(withdrawals), withdrawals[index], index)


def compute_withdrawals_root_from_proof(proof: WithdrawalProof) -> bytes:
    wh, index, sibs = proof.withdrawal_hash, proof.index, proof.siblings
    if type(wh) is not bytes or len(wh) != 32:
        raise ProofError("withdrawal_hash must be 32 bytes")
    if len(sibs) > MAX_WITHDRAWAL_DEPTH or not 0 <= index < (1 << len(sibs)):
        raise ProofError("index out of range for the proof depth")
    h = withdrawal_leaf(wh)
    for s in sibs:
        if type(s) is not bytes or len(s) != 32:
            raise ProofError("siblings must be 32 bytes")
        h = node_hash(s, h) if index & 1 else node_hash(h, s)
        index >>= 1
    return h


def verify_withdrawal_proof(root: bytes, proof: WithdrawalProof) -> bool:
    """True iff the withdrawal is leaf ``proof.index`` under ``root``
    (never for the empty root)."""
    if type(root) is not bytes or len(root) != 32 or root == EMPTY:
        return False
    try:
        return compute_withdrawals_root_from_proof(proof) == root
    except (ProofError, TypeError, AttributeError):
        return False
