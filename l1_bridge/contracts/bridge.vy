#pragma version ~=0.4.3
#pragma optimize codesize
"""
@title isoroll L1 bridge
@notice Holds the collateral of the isoroll rollup and anchors its state.
    - Inbox (Arbitrum delayed inbox): deposit(), forceWithdraw() and
      forceClose() append to a hash chain,
      inbox_hash' = keccak256(inbox_hash || entry) with
      entry = kind (1) || inbox_index (8) || account (20) || amount (32)
      (a forced close carries the market id in the amount field).
      The hash after every count is kept (inboxHashAt(count)), and so are the
      deposits and forced requests before every count (for the reserves).
    - Outputs (OP Stack L2OutputOracle): the bonded proposer posts
      propose(output fields, withdrawals total, batch data as calldata); the
      contract recomputes output_root = keccak256(abi.encode(version,
      state_root, withdrawals_root, last_block_hash, inbox_count, inbox_hash,
      data_hash)), checks the inbox pair against the chain and data_hash
      against keccak256(data), and keeps the running sum of the withdrawals
      totals (claims never exceed it). Data larger than one transaction
      goes first in chunks (postData); data_hash chains them (records.vy
      chain_data). An output is final CHALLENGE_PERIOD seconds after it was
      proposed unless a dispute game (dispute.vy, DISPUTE) is open on it or on
      an output before it. Anyone may open a game within the period; a game
      the challenger wins deletes the output and every output after it and
      pays the slashed proposer bond to the winner (the requests the outputs
      covered get a fresh grace). The CHALLENGER is an optional guardian: it
      may delete pending outputs, nothing else (docs/fraud-proofs.md).
    - Withdrawals: claimed with a Merkle proof against a final output's
      withdrawals root, once each (keyed by the withdrawal hash).
    - Escape hatch (StarkEx escapes, Loopring withdrawal mode): a forced
      request (fee held by the contract, no cap) that no live output covers
      FORCED_GRACE seconds after it was made lets anyone freeze(). The freeze
      sets aside the unclaimed withdrawals of the final outputs and the
      deposits the last final output never took; the rest is the escape pool.
      For ESCAPE_WINDOW seconds every account registers its escape amount
      once (SMT proofs against the last final output); then each is paid
      owed * min(pool, registered) / registered, whatever the order.
    See docs/l1-bridge.md.
"""

from ethereum.ercs import IERC20

import smt

# ---------------------------------------------------------------- constants

OUTPUT_VERSION: public(constant(uint256)) = 0
KIND_DEPOSIT: public(constant(uint8)) = 1
KIND_FORCED_WITHDRAWAL: public(constant(uint8)) = 2
KIND_FORCED_CLOSE: public(constant(uint8)) = 3
MAX_AMOUNT: public(constant(uint256)) = 2**63 - 1  # the L2 log carries 64-bit amounts
MAX_TOTAL_DEPOSITS: public(constant(uint256)) = 2**63 - 1  # the L2 credits deposits while their total fits
MAX_MARKETS: public(constant(uint256)) = 8
MAX_BATCH_BYTES: public(constant(uint256)) = 120000
MAX_LEAF_BYTES: constant(uint256) = 512
LOW_192: constant(uint256) = 2**192 - 1
LOW_64: constant(uint256) = 2**64 - 1

# SMT key kinds (prover/smt.py)
KEY_ACCOUNT: constant(bytes1) = 0x01
KEY_POSITION: constant(bytes1) = 0x02
KEY_MARKET: constant(bytes1) = 0x04

# ---------------------------------------------------------------- types

struct Output:
    # The fields of an output; output_root = keccak256(abi.encode(OUTPUT_VERSION, *fields)).
    state_root: bytes32
    withdrawals_root: bytes32
    last_block_hash: bytes32
    inbox_count: uint256
    inbox_hash: bytes32
    data_hash: bytes32

struct PositionEscape:
    # One entry per registered market, in registration order. Leaf values are
    # the committed bytes (sequencer/core/commitment.py): ABI words, read by
    # offset, so fields appended to a leaf later do not break the escape.
    #   position: size (int256) || cost (int256) || margin (uint256) || funding_snapshot (int256) || ...
    #   market:   oracle_price (uint256) || oracle_time_ms || funding_index (int256) || ... || mark_price (word 6) || ...
    included: bool                      # False: position_proof is an exclusion proof
    position_value: Bytes[MAX_LEAF_BYTES]
    position_proof: smt.SmtProof
    market_value: Bytes[MAX_LEAF_BYTES]  # read only when included
    market_proof: smt.SmtProof

struct Withdrawal:
    # A leaf of a checkpoint's withdrawals tree:
    # withdrawal bytes = abi.encode(index, account, amount, l2_block).
    index: uint256
    account: address
    amount: uint256
    l2_block: uint256

struct OutputInfo:
    output_root: bytes32
    proposed_at: uint256
    final_at: uint256
    challenge_time_left: uint256
    is_final: bool
    inbox_count: uint256
    l2_block: uint256
    withdrawals_total: uint256

struct ForcedInfo:
    account: address
    requested_at: uint256
    deadline: uint256
    grace_left: uint256
    covered_by_live_output: bool
    served: bool
    kind: uint8

struct Status:
    frozen: bool
    frozen_at: uint256
    output_count: uint256
    last_final_output: uint256
    inbox_count: uint256
    inbox_hash: bytes32
    open_forced_requests: uint256
    now: uint256
    escape_deadline: uint256
    escape_pool: uint256
    total_registered: uint256

struct Reserves:
    unclaimed_withdrawals: uint256   # committed by outputs up to the frozen one (or the last final), not yet claimed
    refundable_deposits: uint256     # frozen: deposits the frozen output never took, not yet refunded
    escape_unpaid: uint256           # frozen: what registered escapes are still to be paid (before the window ends: the pool)

struct EscapeInfo:
    registered: bool
    owed: uint256
    paid: bool
    due: uint256                     # what claimEscape pays (0 until the window is over)

# ---------------------------------------------------------------- events

event Deposited:
    account: indexed(address)
    depositor: indexed(address)
    inbox_index: uint256
    amount: uint256
    inbox_hash: bytes32

event ForcedWithdrawalRequested:
    account: indexed(address)
    inbox_index: uint256
    amount: uint256
    inbox_hash: bytes32
    deadline: uint256

event ForcedCloseRequested:
    account: indexed(address)
    inbox_index: uint256
    market_id: uint256
    inbox_hash: bytes32
    deadline: uint256

event OutputProposed:
    output_index: indexed(uint256)
    output_root: indexed(bytes32)
    l2_block: uint256
    state_root: bytes32
    withdrawals_root: bytes32
    last_block_hash: bytes32
    inbox_count: uint256
    inbox_hash: bytes32
    data_hash: bytes32
    proposed_at: uint256
    final_at: uint256
    withdrawals_total: uint256

event OutputsDeleted:
    challenger: indexed(address)
    from_index: uint256
    previous_count: uint256
    slashed: uint256
    regrace_deadline: uint256

event WithdrawalClaimed:
    withdrawal_hash: indexed(bytes32)
    account: indexed(address)
    withdrawal_index: uint256
    amount: uint256
    output_index: uint256

event Frozen:
    caller: indexed(address)
    request_index: uint256
    output_index: uint256
    inbox_count: uint256
    escape_pool: uint256
    reserved_withdrawals: uint256
    reserved_deposits: uint256
    escape_deadline: uint256

event EscapeRegistered:
    account: indexed(address)
    caller: indexed(address)
    owed: uint256
    output_index: uint256

event Escaped:
    account: indexed(address)
    caller: indexed(address)
    owed: uint256
    paid: uint256
    output_index: uint256

event DepositRefunded:
    account: indexed(address)
    inbox_index: uint256
    amount: uint256

event DataPosted:
    output_index: indexed(uint256)
    chunk_index: uint256
    chunk_hash: bytes32
    data_hash: bytes32

event Bonded:
    proposer: indexed(address)
    amount: uint256
    total: uint256

event Unbonded:
    proposer: indexed(address)
    amount: uint256
    total: uint256

event EthWithdrawn:
    receiver: indexed(address)
    amount: uint256

# ---------------------------------------------------------------- parameters

TOKEN: public(immutable(IERC20))
PROPOSER: public(immutable(address))
CHALLENGER: public(immutable(address))        # the guardian (empty: none)
DISPUTE: public(immutable(address))           # the dispute game contract
CHALLENGE_PERIOD: public(immutable(uint256))
FORCED_GRACE: public(immutable(uint256))
FORCED_FEE: public(immutable(uint256))
ESCAPE_WINDOW: public(immutable(uint256))
PROPOSER_BOND: public(immutable(uint256))

market_ids: public(DynArray[uint32, MAX_MARKETS])
size_scales: public(DynArray[uint256, MAX_MARKETS])
funding_scales: public(DynArray[uint256, MAX_MARKETS])

# ---------------------------------------------------------------- state

# inbox
inbox_count: public(uint256)
inbox_hashes: HashMap[uint256, bytes32]        # count -> chain hash after `count` entries
inbox_sums: HashMap[uint256, uint256]          # count -> deposits before it (low 192 bits) | forced requests before it << 192
forced_requests: HashMap[uint256, uint256]     # inbox index -> account | kind << 160 | deadline << 168 (0: not forced)
forced_count: public(uint256)
forced_fees_held: public(uint256)              # forced-request fees: held, never paid to anyone
regrace_at: public(uint256)                    # time of the last deletion that uncovered requests
regrace_below: public(uint256)                 # requests below this index were covered by a deleted output

# outputs (index 0 = genesis, final from the start)
output_count: public(uint256)
output_roots: HashMap[uint256, bytes32]
output_meta: HashMap[uint256, uint256]         # proposed_at | inbox_count << 64 | l2_block << 128 | epoch << 192
output_withdrawn: HashMap[uint256, uint256]    # withdrawals committed by outputs 1..i (running sum)
final_hint: uint256                            # an output index known to be final
epoch: uint256                                 # deletions so far: (index, epoch) names an output for good
held_from: public(uint256)                     # lowest live output with an open game (0: none, set by DISPUTE)
data_acc: bytes32                              # chunks posted for output `data_for` so far: their chain
data_chunks: uint256
data_for: uint256

# proposer bond and ETH owed (slashed bonds, an unbonded bond): pull payments
bond: public(uint256)
eth_owed: public(HashMap[address, uint256])

# withdrawals, escapes, refunds
claimed: public(HashMap[bytes32, bool])
refunded: public(HashMap[uint256, bool])
escape_owed: public(HashMap[address, uint256])
escape_registered: public(HashMap[address, bool])
escaped: public(HashMap[address, bool])        # paid

# freeze
frozen: public(bool)
frozen_at: public(uint256)
frozen_output: public(uint256)
frozen_inbox_count: public(uint256)
escape_deadline: public(uint256)               # end of the registration window
escape_pool: public(uint256)                   # what escapes share: the balance at the freeze minus the reserves
total_registered: public(uint256)              # sum of the registered escape amounts

# totals (u256; for the invariants and monitoring)
total_deposited: public(uint256)
total_claimed: public(uint256)
total_escaped: public(uint256)
total_refunded: public(uint256)


@deploy
def __init__(
    token: address,
    proposer: address,
    challenger: address,
    dispute: address,
    challenge_period: uint256,
    forced_grace: uint256,
    forced_fee: uint256,
    escape_window: uint256,
    proposer_bond: uint256,
    genesis_output_root: bytes32,
    market_ids: DynArray[uint32, MAX_MARKETS],
    size_scales: DynArray[uint256, MAX_MARKETS],
    funding_scales: DynArray[uint256, MAX_MARKETS],
):
    assert token != empty(address) and proposer != empty(address) and dispute != empty(address)
    assert forced_grace > 0 and escape_window > 0, "bridge: the grace and the escape window must be positive"
    assert len(size_scales) == len(market_ids) and len(funding_scales) == len(market_ids), "bridge: one scale per market"
    for i: uint256 in range(MAX_MARKETS):
        if i >= len(market_ids):
            break
        assert size_scales[i] > 0 and funding_scales[i] > 0, "bridge: scales must be positive"
        for j: uint256 in range(MAX_MARKETS):
            if j >= i:
                break
            assert market_ids[j] != market_ids[i], "bridge: duplicate market"
    TOKEN = IERC20(token)
    PROPOSER = proposer
    CHALLENGER = challenger
    DISPUTE = dispute
    CHALLENGE_PERIOD = challenge_period
    FORCED_GRACE = forced_grace
    FORCED_FEE = forced_fee
    ESCAPE_WINDOW = escape_window
    PROPOSER_BOND = proposer_bond
    self.market_ids = market_ids
    self.size_scales = size_scales
    self.funding_scales = funding_scales
    self.output_roots[0] = genesis_output_root
    self.output_meta[0] = block.timestamp
    self.output_count = 1
    log OutputProposed(output_index=0, output_root=genesis_output_root, l2_block=0,
                       state_root=empty(bytes32), withdrawals_root=empty(bytes32),
                       last_block_hash=empty(bytes32), inbox_count=0, inbox_hash=empty(bytes32),
                       data_hash=empty(bytes32), proposed_at=block.timestamp, final_at=block.timestamp,
                       withdrawals_total=0)


# ================================================================ helpers

@internal
@pure
def _compute_output_root(o: Output) -> bytes32:
    return smt.output_root(OUTPUT_VERSION, o.state_root, o.withdrawals_root, o.last_block_hash,
                           o.inbox_count, o.inbox_hash, o.data_hash)


@internal
@pure
def _entry_hash(prev: bytes32, kind: uint8, index: uint256, account: address, amount: uint256) -> bytes32:
    return keccak256(concat(prev, convert(kind, bytes1), convert(convert(index, uint64), bytes8),
                            convert(account, bytes20), convert(amount, bytes32)))


@internal
@view
def _proposed_at(i: uint256) -> uint256:
    return self.output_meta[i] & LOW_64


@internal
@view
def _output_inbox_count(i: uint256) -> uint256:
    return (self.output_meta[i] >> 64) & LOW_64


@internal
@view
def _output_l2_block(i: uint256) -> uint256:
    return (self.output_meta[i] >> 128) & LOW_64


@internal
@view
def _final_at(i: uint256) -> uint256:
    if i == 0:
        return self._proposed_at(0)
    return self._proposed_at(i) + CHALLENGE_PERIOD


@internal
@view
def _time_final(i: uint256) -> bool:
    # is output i past its challenge period (ignoring the freeze)
    return i < self.output_count and block.timestamp >= self._final_at(i)


@internal
@view
def _is_final(i: uint256) -> bool:
    if self.frozen:
        return i <= self.frozen_output
    return self._time_final(i) and (self.held_from == 0 or i < self.held_from)


@internal
@view
def _search_last_final() -> uint256:
    # outputs are proposed in time order, so finality is a prefix: binary search
    lo: uint256 = self.final_hint          # final
    hi: uint256 = self.output_count        # first index not known final (exclusive bound)
    for _: uint256 in range(64):
        if lo + 1 >= hi:
            break
        mid: uint256 = (lo + hi) // 2
        if self._time_final(mid):
            lo = mid
        else:
            hi = mid
    held: uint256 = self.held_from
    if held != 0 and lo >= held:
        return held - 1
    return lo


@internal
@view
def _last_final() -> uint256:
    if self.frozen:
        return self.frozen_output
    return self._search_last_final()


@internal
@view
def _live_inbox_count() -> uint256:
    # inbox count of the newest live (not deleted) output, pending or final
    return self._output_inbox_count(self.output_count - 1)


@internal
@view
def _deposits_before(count: uint256) -> uint256:
    return self.inbox_sums[count] & LOW_192


@internal
@view
def _forced_before(count: uint256) -> uint256:
    return self.inbox_sums[count] >> 192


@internal
@view
def _forced_deadline(index: uint256) -> uint256:
    """The request's deadline: FORCED_GRACE after it was made, or after the
    last deletion that uncovered it (0: not a forced request)."""
    request: uint256 = self.forced_requests[index]
    if request == 0:
        return 0
    deadline: uint256 = request >> 168
    if index < self.regrace_below:
        deadline = max(deadline, self.regrace_at + FORCED_GRACE)
    return deadline


@internal
@view
def _can_freeze(index: uint256) -> bool:
    deadline: uint256 = self._forced_deadline(index)
    return (not self.frozen and deadline != 0 and block.timestamp >= deadline
            and self._live_inbox_count() <= index)


@internal
def _append_inbox(kind: uint8, account: address, amount: uint256, deposited: uint256) -> (uint256, bytes32):
    index: uint256 = self.inbox_count
    h: bytes32 = self._entry_hash(self.inbox_hashes[index], kind, index, account, amount)
    self.inbox_hashes[index + 1] = h
    forced: uint256 = 0
    if kind != KIND_DEPOSIT:
        forced = 1
    # deposits before a count stay below 2**127 (MAX_AMOUNT * 2**64), forced counts below 2**64
    self.inbox_sums[index + 1] = self.inbox_sums[index] + deposited + (forced << 192)
    self.inbox_count = index + 1
    return index, h


@internal
def _append_forced(kind: uint8, amount: uint256, fee: uint256) -> (uint256, bytes32, uint256):
    assert not self.frozen, "bridge: frozen"
    assert fee == FORCED_FEE, "bridge: pay exactly FORCED_FEE"
    index: uint256 = 0
    h: bytes32 = empty(bytes32)
    index, h = self._append_inbox(kind, msg.sender, amount, 0)
    deadline: uint256 = block.timestamp + FORCED_GRACE
    self.forced_requests[index] = convert(msg.sender, uint256) | (convert(kind, uint256) << 160) | (deadline << 168)
    self.forced_count += 1
    self.forced_fees_held += fee
    return index, h, deadline


@internal
@pure
def _prove(root: bytes32, key: bytes32, included: bool, value_hash: bytes32, proof: smt.SmtProof) -> bool:
    if included:
        return smt.verify(root, key, value_hash, proof)
    return smt.verify_exclusion(root, key, proof)


@internal
@pure
def _floor_div(a: int256, b: int256) -> int256:
    # b > 0; rounds toward minus infinity (payouts round down)
    q: int256 = a // b
    if a % b != 0 and a < 0:
        q -= 1
    return q


@internal
@pure
def _word(leaf: Bytes[MAX_LEAF_BYTES], i: uint256) -> bytes32:
    return extract32(leaf, 32 * i)


@internal
@pure
def _position_equity(position: Bytes[MAX_LEAF_BYTES], market: Bytes[MAX_LEAF_BYTES],
                     size_scale: uint256, funding_scale: uint256) -> int256:
    """margin + floor(size*price/size_scale) - cost - ceil(size*(F_market - F_snap)/funding_scale)"""
    size: int256 = convert(self._word(position, 0), int256)
    cost: int256 = convert(self._word(position, 1), int256)
    margin: int256 = convert(convert(self._word(position, 2), uint256), int256)
    snapshot: int256 = convert(self._word(position, 3), int256)
    price: int256 = convert(convert(self._word(market, 6), uint256), int256)  # the committed mark
    index: int256 = convert(self._word(market, 2), int256)
    value: int256 = self._floor_div(size * price, convert(size_scale, int256))
    funding: int256 = -self._floor_div(-(size * (index - snapshot)), convert(funding_scale, int256))
    return margin + value - cost - funding


@internal
@view
def _escape_due(account: address) -> uint256:
    """owed * min(pool, registered) // registered once the window is over: the
    same fraction for every account, rounded down (the dust stays)."""
    if not self.frozen or block.timestamp < self.escape_deadline or self.escaped[account]:
        return 0
    registered: uint256 = self.total_registered
    if registered == 0:
        return 0
    return self.escape_owed[account] * min(self.escape_pool, registered) // registered


@internal
def _pay(receiver: address, amount: uint256):
    if amount > 0:
        assert extcall TOKEN.transfer(receiver, amount, default_return_value=True), "bridge: token transfer failed"


# ================================================================ inbox

@external
@nonreentrant
def deposit(account: address, amount: uint256) -> uint256:
    """
    @notice Pull `amount` of TOKEN from the caller and credit `account` on L2.
    @return the inbox index of the deposit
    """
    assert not self.frozen, "bridge: frozen"
    assert account != empty(address), "bridge: zero account"
    assert amount > 0 and amount <= MAX_AMOUNT, "bridge: amount out of range"
    # the L2 credits deposits only while their total stays within 64 bits: refuse what it could not credit
    assert self.total_deposited + amount <= MAX_TOTAL_DEPOSITS, "bridge: the L2 cannot hold more deposits"
    index: uint256 = 0
    h: bytes32 = empty(bytes32)
    index, h = self._append_inbox(KIND_DEPOSIT, account, amount, amount)
    self.total_deposited += amount
    assert extcall TOKEN.transferFrom(msg.sender, self, amount, default_return_value=True), "bridge: transferFrom failed"
    log Deposited(account=account, depositor=msg.sender, inbox_index=index, amount=amount, inbox_hash=h)
    return index


@external
@payable
def forceWithdraw(amount: uint256) -> uint256:
    """
    @notice Ask the L2 to withdraw min(amount, free collateral) of the caller
        into a checkpoint's withdrawals tree. Pays FORCED_FEE (held by the
        contract; no cap, no queue: any account can always file one). If no
        live output covers it within FORCED_GRACE, anyone may freeze().
    @return the inbox index of the request
    """
    assert amount > 0 and amount <= MAX_AMOUNT, "bridge: amount out of range"
    index: uint256 = 0
    h: bytes32 = empty(bytes32)
    deadline: uint256 = 0
    index, h, deadline = self._append_forced(KIND_FORCED_WITHDRAWAL, amount, msg.value)
    log ForcedWithdrawalRequested(account=msg.sender, inbox_index=index, amount=amount, inbox_hash=h, deadline=deadline)
    return index


@external
@payable
def forceClose(market_id: uint32) -> uint256:
    """
    @notice Ask the L2 to close the caller's position in `market_id` at the
        mark, so its margin becomes free collateral a forced withdrawal can
        take. Same fee and grace as forceWithdraw. The inbox entry carries the
        market id in its amount field.
    @return the inbox index of the request
    """
    assert market_id in self.market_ids, "bridge: not a registered market"
    index: uint256 = 0
    h: bytes32 = empty(bytes32)
    deadline: uint256 = 0
    index, h, deadline = self._append_forced(KIND_FORCED_CLOSE, convert(market_id, uint256), msg.value)
    log ForcedCloseRequested(account=msg.sender, inbox_index=index, market_id=convert(market_id, uint256),
                             inbox_hash=h, deadline=deadline)
    return index


# ================================================================ outputs

@external
@payable
def depositBond():
    """
    @notice The proposer adds to its bond (PROPOSER_BOND is needed to propose).
    """
    assert msg.sender == PROPOSER, "bridge: only the proposer"
    self.bond += msg.value
    log Bonded(proposer=msg.sender, amount=msg.value, total=self.bond)


@external
@nonreentrant
def withdrawBond(amount: uint256):
    """
    @notice The proposer takes its bond back once every output is final (or the bridge is frozen
        with no game open).
    """
    assert msg.sender == PROPOSER, "bridge: only the proposer"
    assert (self.frozen and self.held_from == 0) or self._is_final(self.output_count - 1), "bridge: outputs still in their challenge period"
    self.bond -= amount
    self.eth_owed[PROPOSER] += amount
    log Unbonded(proposer=msg.sender, amount=amount, total=self.bond)


@external
def propose(
    output_index: uint256,
    l2_block: uint256,
    output: Output,
    withdrawals_total: uint256,
    data: Bytes[MAX_BATCH_BYTES],
    prior_chunks: uint256 = 0,
) -> bytes32:
    """
    @notice Post the output after L2 block `l2_block` with its batch data
        (its last chunk, after the `prior_chunks` chunks posted for it with
        postData; data_hash chains them all).
    @param output_index must equal output_count (no double posting after a crash)
    @param withdrawals_total the sum of the amounts in the output's withdrawals
        tree (the verifier checks it with the root; claims never exceed the
        running sum, and the freeze reserves what is unclaimed of it)
    @return the output root
    """
    assert msg.sender == PROPOSER, "bridge: only the proposer"
    assert not self.frozen, "bridge: frozen"
    assert self.bond >= PROPOSER_BOND, "bridge: proposer bond too small"
    count: uint256 = self.output_count
    assert output_index == count, "bridge: wrong output index"
    prev: uint256 = count - 1
    assert l2_block > self._output_l2_block(prev), "bridge: l2 block must increase"
    assert l2_block < 2**64, "bridge: l2 block out of range"
    assert output.inbox_count >= self._output_inbox_count(prev), "bridge: inbox count went back"
    assert output.inbox_count <= self.inbox_count, "bridge: inbox count beyond the inbox"
    assert self.inbox_hashes[output.inbox_count] == output.inbox_hash, "bridge: wrong inbox hash"
    acc: bytes32 = empty(bytes32)
    if prior_chunks > 0:
        assert self.data_for == count and self.data_chunks == prior_chunks, "bridge: chunks not posted"
        acc = self.data_acc
        self.data_chunks = 0
    assert keccak256(concat(acc, keccak256(data))) == output.data_hash, "bridge: wrong data hash"
    root: bytes32 = self._compute_output_root(output)
    self.output_roots[count] = root
    self.output_meta[count] = block.timestamp | (output.inbox_count << 64) | (l2_block << 128) | (self.epoch << 192)
    self.output_withdrawn[count] = self.output_withdrawn[prev] + withdrawals_total
    self.output_count = count + 1
    hint: uint256 = self._search_last_final()
    if hint != self.final_hint:
        self.final_hint = hint
    log OutputProposed(output_index=count, output_root=root, l2_block=l2_block,
                       state_root=output.state_root, withdrawals_root=output.withdrawals_root,
                       last_block_hash=output.last_block_hash, inbox_count=output.inbox_count,
                       inbox_hash=output.inbox_hash, data_hash=output.data_hash,
                       proposed_at=block.timestamp, final_at=block.timestamp + CHALLENGE_PERIOD,
                       withdrawals_total=withdrawals_total)
    return root


@external
def postData(output_index: uint256, chunk_index: uint256, chunk: Bytes[MAX_BATCH_BYTES]):
    """
    @notice Post chunk `chunk_index` of the data of output `output_index`
        (data larger than one transaction); chunk 0 starts over. Each chunk
        is a whole number of item frames.
    """
    assert msg.sender == PROPOSER, "bridge: only the proposer"
    assert output_index == self.output_count, "bridge: wrong output index"
    acc: bytes32 = empty(bytes32)
    if chunk_index > 0:
        assert self.data_for == output_index and self.data_chunks == chunk_index, "bridge: wrong chunk index"
        acc = self.data_acc
    chunk_hash: bytes32 = keccak256(chunk)
    acc = keccak256(concat(acc, chunk_hash))
    self.data_acc = acc
    self.data_chunks = chunk_index + 1
    self.data_for = output_index
    log DataPosted(output_index=output_index, chunk_index=chunk_index, chunk_hash=chunk_hash, data_hash=acc)


@internal
def _delete_outputs(from_index: uint256):
    """Output `from_index` and every later one go; the forced requests they
    covered get a fresh FORCED_GRACE from now, so a deletion never allows an
    instant freeze (the honest output can be posted again)."""
    covered: uint256 = self._live_inbox_count()
    self.output_count = from_index
    self.epoch += 1
    if self.held_from >= from_index:
        self.held_from = 0  # the outputs it held are gone, and none before it had a game
    if self._live_inbox_count() < covered:
        self.regrace_at = block.timestamp
        self.regrace_below = max(self.regrace_below, covered)


@external
def deleteOutputs(from_index: uint256):
    """
    @notice The guardian deletes output `from_index` and every output after
        it, while `from_index` is still pending: a circuit breaker. It pays
        nobody and finalizes nothing, and games on the deleted outputs play
        on (a challenger who wins still takes the slashed bond).
    """
    assert msg.sender == CHALLENGER, "bridge: only the guardian"
    assert from_index > 0 and from_index < self.output_count, "bridge: no such output"
    assert not self._is_final(from_index), "bridge: output already final"
    count: uint256 = self.output_count
    self._delete_outputs(from_index)
    log OutputsDeleted(challenger=msg.sender, from_index=from_index, previous_count=count, slashed=0,
                       regrace_deadline=self.regrace_at + FORCED_GRACE)


@external
def hold(held_from: uint256):
    """
    @notice DISPUTE only: output `held_from` is the lowest live output with
        an open game (0: none); it and every later output are not final.
    """
    assert msg.sender == DISPUTE, "bridge: only the dispute contract"
    self.held_from = held_from


@external
def slash(index: uint256, epoch: uint256, winner: address) -> uint256:
    """
    @notice DISPUTE only: a challenger proved output (index, epoch) wrong.
        The proposer bond (up to PROPOSER_BOND) is owed to `winner`; the
        output, if still live, and every later one are deleted.
    @return the amount slashed
    """
    assert msg.sender == DISPUTE, "bridge: only the dispute contract"
    slashed: uint256 = min(self.bond, PROPOSER_BOND)
    self.bond -= slashed
    self.eth_owed[winner] += slashed
    count: uint256 = self.output_count
    if index < count and self.output_meta[index] >> 192 == epoch:
        self._delete_outputs(index)
        log OutputsDeleted(challenger=winner, from_index=index, previous_count=count, slashed=slashed,
                           regrace_deadline=self.regrace_at + FORCED_GRACE)
    return slashed


@external
@view
def outputEpoch(index: uint256) -> uint256:
    """With the index, names an output for good (indices are reused after a deletion)."""
    return self.output_meta[index] >> 192


# ================================================================ withdrawals

@external
@nonreentrant
def claimWithdrawal(output_index: uint256, output: Output, withdrawal: Withdrawal,
                    leaf_index: uint256, siblings: DynArray[bytes32, smt.MAX_WITHDRAWAL_DEPTH]):
    """
    @notice Pay `withdrawal` (to its account) after proving it is leaf
        `leaf_index` of the withdrawals tree of final output `output_index`.
        Anyone may call it; each withdrawal is paid once. Claims in total never
        exceed the withdrawals totals the final outputs committed.
    """
    assert self._is_final(output_index), "bridge: output not final"
    assert self._compute_output_root(output) == self.output_roots[output_index], "bridge: output fields do not match the output root"
    whash: bytes32 = keccak256(abi_encode(withdrawal.index, withdrawal.account, withdrawal.amount, withdrawal.l2_block))
    assert not self.claimed[whash], "bridge: withdrawal already claimed"
    assert smt.verify_withdrawal(output.withdrawals_root, whash, leaf_index, siblings), "bridge: bad withdrawal proof"
    claimed: uint256 = self.total_claimed + withdrawal.amount
    assert claimed <= self.output_withdrawn[self._last_final()], "bridge: beyond the committed withdrawals"
    self.claimed[whash] = True
    self.total_claimed = claimed
    self._pay(withdrawal.account, withdrawal.amount)
    log WithdrawalClaimed(withdrawal_hash=whash, account=withdrawal.account, withdrawal_index=withdrawal.index,
                          amount=withdrawal.amount, output_index=output_index)


# ================================================================ escape hatch

@external
def freeze(request_index: uint256):
    """
    @notice Anyone: freeze the bridge because forced request `request_index`
        is past its grace and no live output covers it (inbox count > index).
        Sets aside the unclaimed withdrawals of the final outputs and the
        deposits the last final output never took; the rest of the balance
        is the escape pool, shared after ESCAPE_WINDOW.
    """
    assert not self.frozen, "bridge: already frozen"
    deadline: uint256 = self._forced_deadline(request_index)
    assert deadline != 0, "bridge: not a forced request"
    assert block.timestamp >= deadline, "bridge: forced request still within its grace"
    assert self._live_inbox_count() <= request_index, "bridge: a live output covers the request"
    last: uint256 = self._search_last_final()
    taken: uint256 = self._output_inbox_count(last)
    reserved_withdrawals: uint256 = self.output_withdrawn[last] - self.total_claimed
    reserved_deposits: uint256 = self.total_deposited - self._deposits_before(taken)
    balance: uint256 = staticcall TOKEN.balanceOf(self)
    pool: uint256 = 0
    if balance > reserved_withdrawals + reserved_deposits:
        pool = balance - reserved_withdrawals - reserved_deposits
    self.frozen = True
    self.frozen_at = block.timestamp
    self.frozen_output = last
    self.frozen_inbox_count = taken
    self.escape_pool = pool
    self.escape_deadline = block.timestamp + ESCAPE_WINDOW
    log Frozen(caller=msg.sender, request_index=request_index, output_index=last, inbox_count=taken,
               escape_pool=pool, reserved_withdrawals=reserved_withdrawals, reserved_deposits=reserved_deposits,
               escape_deadline=self.escape_deadline)


@external
def registerEscape(account: address, output: Output, account_value: Bytes[MAX_LEAF_BYTES],
                   account_proof: smt.SmtProof, positions: DynArray[PositionEscape, MAX_MARKETS]) -> uint256:
    """
    @notice Frozen, within ESCAPE_WINDOW: register what `account` is owed
        (anyone may call, once per account): its free collateral plus
        max(0, equity) of its position in every registered market, proven
        against the state root of the output that was last final at the freeze.
        `account_value` is the account leaf (collateral (uint256) || nonces_hash || ...).
        `positions` has one entry per registered market, in registration order:
        an inclusion proof of the position and of its market, or an exclusion
        proof of the position. claimEscape pays it after the window.
    @return the amount owed
    """
    assert self.frozen, "bridge: not frozen"
    assert block.timestamp < self.escape_deadline, "bridge: the escape registration window is over"
    assert not self.escape_registered[account], "bridge: account already registered"
    out: uint256 = self.frozen_output
    assert self._compute_output_root(output) == self.output_roots[out], "bridge: output fields do not match the last final output"
    root: bytes32 = output.state_root
    assert root != empty(bytes32), "bridge: empty state"

    account_bytes: bytes20 = convert(account, bytes20)
    akey: bytes32 = keccak256(concat(KEY_ACCOUNT, account_bytes))
    assert len(account_value) >= 64, "bridge: short account leaf"
    assert smt.verify(root, akey, keccak256(account_value), account_proof), "bridge: bad account proof"
    owed: uint256 = convert(self._word(account_value, 0), uint256)

    n: uint256 = len(self.market_ids)
    assert len(positions) == n, "bridge: one position entry per registered market"
    for i: uint256 in range(MAX_MARKETS):
        if i >= n:
            break
        e: PositionEscape = positions[i]
        mid: bytes4 = convert(self.market_ids[i], bytes4)
        pkey: bytes32 = keccak256(concat(KEY_POSITION, account_bytes, mid))
        pvalue: bytes32 = empty(bytes32)
        if e.included:
            assert len(e.position_value) >= 128, "bridge: short position leaf"
            pvalue = keccak256(e.position_value)
        assert self._prove(root, pkey, e.included, pvalue, e.position_proof), "bridge: bad position proof"
        if not e.included:
            continue
        mkey: bytes32 = keccak256(concat(KEY_MARKET, mid))
        assert len(e.market_value) >= 96, "bridge: short market leaf"
        assert smt.verify(root, mkey, keccak256(e.market_value), e.market_proof), "bridge: bad market proof"
        equity: int256 = self._position_equity(e.position_value, e.market_value, self.size_scales[i], self.funding_scales[i])
        if equity > 0:
            owed += convert(equity, uint256)

    self.escape_registered[account] = True
    self.escape_owed[account] = owed
    self.total_registered += owed
    log EscapeRegistered(account=account, caller=msg.sender, owed=owed, output_index=out)
    return owed


@external
@nonreentrant
def claimEscape(account: address) -> uint256:
    """
    @notice Frozen, after ESCAPE_WINDOW: pay a registered `account` (anyone
        may call, once) owed * min(escape_pool, total_registered) // total_registered.
    @return the amount paid
    """
    assert self.frozen, "bridge: not frozen"
    assert block.timestamp >= self.escape_deadline, "bridge: the escape registration window is still open"
    assert self.escape_registered[account], "bridge: account not registered"
    assert not self.escaped[account], "bridge: account already escaped"
    paid: uint256 = self._escape_due(account)
    self.escaped[account] = True
    self.total_escaped += paid
    self._pay(account, paid)
    log Escaped(account=account, caller=msg.sender, owed=self.escape_owed[account], paid=paid,
                output_index=self.frozen_output)
    return paid


@external
@nonreentrant
def refundDeposit(inbox_index: uint256, account: address, amount: uint256):
    """
    @notice Frozen only: refund a deposit the last final output never took
        (inbox_index >= its inbox count) to the account it was for. The caller
        names the entry; the contract checks it against the inbox chain.
    """
    assert self.frozen, "bridge: not frozen"
    assert inbox_index >= self.frozen_inbox_count, "bridge: the L2 took this deposit"
    assert inbox_index < self.inbox_count, "bridge: no such inbox entry"
    assert not self.refunded[inbox_index], "bridge: deposit already refunded"
    h: bytes32 = self._entry_hash(self.inbox_hashes[inbox_index], KIND_DEPOSIT, inbox_index, account, amount)
    assert h == self.inbox_hashes[inbox_index + 1], "bridge: not this deposit"
    self.refunded[inbox_index] = True
    self.total_refunded += amount
    self._pay(account, amount)
    log DepositRefunded(account=account, inbox_index=inbox_index, amount=amount)


@external
@nonreentrant
def withdrawEth():
    """
    @notice Take the ETH owed to the caller (slashed bonds for the challenger,
        an unbonded bond for the proposer), with all the gas forwarded so a
        contract wallet's receive hook may run.
    """
    amount: uint256 = self.eth_owed[msg.sender]
    assert amount > 0, "bridge: nothing owed"
    self.eth_owed[msg.sender] = 0
    raw_call(msg.sender, b"", value=amount)
    log EthWithdrawn(receiver=msg.sender, amount=amount)


# ================================================================ views

@external
@view
def inboxHashAt(count: uint256) -> bytes32:
    """
    @notice The inbox chain hash after `count` entries (count <= inbox_count).
    """
    assert count <= self.inbox_count, "bridge: beyond the inbox"
    return self.inbox_hashes[count]


@external
@view
def inboxHash() -> bytes32:
    return self.inbox_hashes[self.inbox_count]


@external
@view
def depositsBefore(count: uint256) -> uint256:
    """
    @notice The sum of the deposits among the first `count` inbox entries.
    """
    assert count <= self.inbox_count, "bridge: beyond the inbox"
    return self._deposits_before(count)


@external
@view
def getOutput(output_index: uint256) -> OutputInfo:
    """
    @notice An output and its challenge clock (challenge_time_left 0 = final).
    """
    assert output_index < self.output_count, "bridge: no such output"
    final_at: uint256 = self._final_at(output_index)
    left: uint256 = 0
    if block.timestamp < final_at:
        left = final_at - block.timestamp
    is_final: bool = self._is_final(output_index)
    if self.frozen and not is_final:
        final_at = max_value(uint256)  # never: pending outputs do not finalise once frozen
    withdrawn: uint256 = self.output_withdrawn[output_index]
    if output_index > 0:
        withdrawn -= self.output_withdrawn[output_index - 1]
    return OutputInfo(output_root=self.output_roots[output_index], proposed_at=self._proposed_at(output_index),
                      final_at=final_at, challenge_time_left=left, is_final=is_final,
                      inbox_count=self._output_inbox_count(output_index),
                      l2_block=self._output_l2_block(output_index), withdrawals_total=withdrawn)


@external
@view
def challengeTimeLeft(output_index: uint256) -> uint256:
    """
    @notice Seconds until output `output_index` is final (0 once final).
    """
    assert output_index < self.output_count, "bridge: no such output"
    final_at: uint256 = self._final_at(output_index)
    if block.timestamp >= final_at:
        return 0
    return final_at - block.timestamp


@external
@view
def isFinal(output_index: uint256) -> bool:
    return self._is_final(output_index)


@external
@view
def lastFinalOutput() -> uint256:
    return self._last_final()


@external
@view
def getForcedRequest(inbox_index: uint256) -> ForcedInfo:
    """
    @notice A forced request and its grace clock (grace_left 0 = past the grace;
        the deadline counts a fresh grace after a deletion that uncovered it).
    """
    request: uint256 = self.forced_requests[inbox_index]
    assert request != 0, "bridge: not a forced request"
    deadline: uint256 = self._forced_deadline(inbox_index)
    left: uint256 = 0
    if block.timestamp < deadline:
        left = deadline - block.timestamp
    return ForcedInfo(account=convert(convert(request & (2**160 - 1), uint160), address),
                      requested_at=(request >> 168) - FORCED_GRACE, deadline=deadline, grace_left=left,
                      covered_by_live_output=self._live_inbox_count() > inbox_index,
                      served=self._output_inbox_count(self._last_final()) > inbox_index,
                      kind=convert((request >> 160) & 255, uint8))


@external
@view
def forcedGraceLeft(inbox_index: uint256) -> uint256:
    """
    @notice Seconds until forced request `inbox_index` may trigger a freeze (0: past the grace).
    """
    deadline: uint256 = self._forced_deadline(inbox_index)
    assert deadline != 0, "bridge: not a forced request"
    if block.timestamp >= deadline:
        return 0
    return deadline - block.timestamp


@external
@view
def canFreeze(inbox_index: uint256) -> bool:
    return self._can_freeze(inbox_index)


@external
@view
def reserves() -> Reserves:
    """
    @notice What the balance must cover besides the live L2 state: unclaimed
        committed withdrawals of final outputs, refundable deposits and (frozen)
        the escapes still to pay.
    """
    last: uint256 = self._last_final()
    unclaimed: uint256 = self.output_withdrawn[last] - self.total_claimed
    if not self.frozen:
        return Reserves(unclaimed_withdrawals=unclaimed, refundable_deposits=0, escape_unpaid=0)
    refundable: uint256 = self.total_deposited - self._deposits_before(self.frozen_inbox_count) - self.total_refunded
    unpaid: uint256 = self.escape_pool - self.total_escaped
    if block.timestamp >= self.escape_deadline:
        shared: uint256 = min(self.escape_pool, self.total_registered)
        unpaid = 0
        if shared > self.total_escaped:
            unpaid = shared - self.total_escaped
    return Reserves(unclaimed_withdrawals=unclaimed, refundable_deposits=refundable, escape_unpaid=unpaid)


@external
@view
def escapeInfo(account: address) -> EscapeInfo:
    """
    @notice An account's escape: registered, owed, paid, and what claimEscape pays it now.
    """
    return EscapeInfo(registered=self.escape_registered[account], owed=self.escape_owed[account],
                      paid=self.escaped[account], due=self._escape_due(account))


@external
@view
def status() -> Status:
    final_count: uint256 = self._output_inbox_count(self._last_final())
    return Status(frozen=self.frozen, frozen_at=self.frozen_at, output_count=self.output_count,
                  last_final_output=self._last_final(), inbox_count=self.inbox_count,
                  inbox_hash=self.inbox_hashes[self.inbox_count],
                  open_forced_requests=self.forced_count - self._forced_before(final_count),
                  now=block.timestamp, escape_deadline=self.escape_deadline, escape_pool=self.escape_pool,
                  total_registered=self.total_registered)


@external
@view
def marketCount() -> uint256:
    return len(self.market_ids)


@external
@pure
def computeOutputRoot(output: Output) -> bytes32:
    return self._compute_output_root(output)


@external
@pure
def withdrawalHash(withdrawal: Withdrawal) -> bytes32:
    return keccak256(abi_encode(withdrawal.index, withdrawal.account, withdrawal.amount, withdrawal.l2_block))


# ================================================================ backstop vault escape
# (issue 10: sequencer/core/rules/vault.py; docs/l1-bridge.md "The backstop vault")
# The vault is an L2 account at VAULT_ADDRESS: registerEscape(VAULT_ADDRESS, ...)
# registers its amount like any account's (the pool of its shareholders).
# registerVaultEscape then adds a registered shareholder's part of it,
# escape_owed[VAULT_ADDRESS] * shares // total shares (share leaves: key
# keccak256(0x06 || address), value shares || unlock_ms; the total under
# VAULT_ADDRESS), to that shareholder's own escape (total_registered already
# counts it, through the vault), and marks the vault itself escaped: its
# claimEscape, to an address nobody controls, never pays.

VAULT_ADDRESS: public(constant(address)) = 0x000000000000000000000000000000000000000A
vault_share_registered: public(HashMap[address, bool])

event VaultShareRegistered:
    account: indexed(address)
    shares: uint256
    owed: uint256


@external
def registerVaultEscape(account: address, output: Output, share_value: Bytes[MAX_LEAF_BYTES],
                        share_proof: smt.SmtProof, total_value: Bytes[MAX_LEAF_BYTES],
                        total_proof: smt.SmtProof) -> uint256:
    """
    @notice Frozen, within ESCAPE_WINDOW, after registerEscape of both the
        vault and `account` (anyone may call, once per account): add
        escape_owed[VAULT_ADDRESS] * shares // total to `account`'s escape,
        with proofs of its share leaf and of the total against the frozen output.
    @return the amount added
    """
    assert self.frozen and block.timestamp < self.escape_deadline
    assert self.escape_registered[VAULT_ADDRESS] and self.escape_registered[account]
    assert account != VAULT_ADDRESS and not self.vault_share_registered[account]
    assert self._compute_output_root(output) == self.output_roots[self.frozen_output]
    assert len(share_value) >= 64 and len(total_value) >= 64
    assert smt.verify(output.state_root, keccak256(concat(0x06, convert(account, bytes20))), keccak256(share_value), share_proof)
    assert smt.verify(output.state_root, keccak256(concat(0x06, convert(VAULT_ADDRESS, bytes20))), keccak256(total_value), total_proof)
    shares: uint256 = convert(self._word(share_value, 0), uint256)
    owed: uint256 = self.escape_owed[VAULT_ADDRESS] * shares // convert(self._word(total_value, 0), uint256)
    self.escaped[VAULT_ADDRESS] = True
    self.vault_share_registered[account] = True
    self.escape_owed[account] += owed
    log VaultShareRegistered(account=account, shares=shares, owed=owed)
    return owed
