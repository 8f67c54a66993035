#pragma version ~=0.4.3
"""
@title isoroll L1 bridge
@notice Holds the collateral of the isoroll rollup and anchors its state.
    - Inbox (Arbitrum delayed inbox): deposit() and forceWithdraw() append to
      a hash chain, inbox_hash' = keccak256(inbox_hash || entry) with
      entry = kind (1) || inbox_index (8) || account (20) || amount (32).
      The hash after every count is kept (inboxHashAt(count)).
    - Outputs (OP Stack L2OutputOracle): the bonded proposer posts
      propose(output fields, batch data as calldata); the contract recomputes
      output_root = keccak256(abi.encode(version, state_root, withdrawals_root,
      last_block_hash, inbox_count, inbox_hash, data_hash)) and checks the
      inbox pair against the chain and data_hash against keccak256(data).
      An output is final CHALLENGE_PERIOD seconds after it was proposed; until
      then the CHALLENGER may delete it and every output after it.
    - Withdrawals: claimed with a Merkle proof against a final output's
      withdrawals root, once each (keyed by the withdrawal hash).
    - Escape hatch (StarkEx escapes, Loopring withdrawal mode): a forced
      request that no live output covers FORCED_GRACE seconds after it was
      made lets anyone freeze(). Frozen: no proposals, deposits or forced
      requests; every account escapes once with SMT proofs of its account,
      its position in every registered market and those markets against the
      last output that was final when the bridge froze; deposits that output
      never took are refunded.
    See docs/l1-bridge.md.
"""

from ethereum.ercs import IERC20

import smt

# ---------------------------------------------------------------- constants

OUTPUT_VERSION: public(constant(uint256)) = 0
KIND_DEPOSIT: public(constant(uint8)) = 1
KIND_FORCED_WITHDRAWAL: public(constant(uint8)) = 2
MAX_AMOUNT: public(constant(uint256)) = 2**63 - 1  # the L2 log carries 64-bit amounts
MAX_MARKETS: public(constant(uint256)) = 8
MAX_BATCH_BYTES: public(constant(uint256)) = 120000
MAX_LEAF_BYTES: constant(uint256) = 512
POP_PER_CALL: constant(uint256) = 16

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
    #   market:   oracle_price (uint256) || oracle_time_ms || funding_index (int256) || ...
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

struct ForcedInfo:
    account: address
    requested_at: uint256
    deadline: uint256
    grace_left: uint256
    covered_by_live_output: bool
    served: bool

struct Status:
    frozen: bool
    frozen_at: uint256
    output_count: uint256
    last_final_output: uint256
    inbox_count: uint256
    inbox_hash: bytes32
    open_forced_requests: uint256
    now: uint256

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

event OutputsDeleted:
    challenger: indexed(address)
    from_index: uint256
    previous_count: uint256
    slashed: uint256

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

event ForcedRequestServed:
    account: indexed(address)
    inbox_index: uint256

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
CHALLENGER: public(immutable(address))
CHALLENGE_PERIOD: public(immutable(uint256))
FORCED_GRACE: public(immutable(uint256))
FORCED_FEE: public(immutable(uint256))
MAX_OPEN_FORCED: public(immutable(uint256))
PROPOSER_BOND: public(immutable(uint256))

market_ids: public(DynArray[uint32, MAX_MARKETS])
size_scales: public(DynArray[uint256, MAX_MARKETS])
funding_scales: public(DynArray[uint256, MAX_MARKETS])

# ---------------------------------------------------------------- state

# inbox
inbox_count: public(uint256)
inbox_hashes: HashMap[uint256, bytes32]        # count -> chain hash after `count` entries
forced_deadline: HashMap[uint256, uint256]     # inbox index -> requested_at + FORCED_GRACE (0: not forced)
forced_account: HashMap[uint256, address]
open_forced_of: HashMap[address, uint256]      # account -> inbox index + 1 of its open request
open_forced_count: public(uint256)
forced_queue: HashMap[uint256, uint256]        # FIFO of open forced requests (inbox indices)
forced_queue_head: uint256
forced_queue_tail: uint256

# outputs (index 0 = genesis, final from the start)
output_count: public(uint256)
output_roots: HashMap[uint256, bytes32]
output_meta: HashMap[uint256, uint256]         # proposed_at | inbox_count << 64 | l2_block << 128
final_hint: uint256                            # an output index known to be final

# proposer bond and ETH owed (fees, slashed bonds): pull payments
bond: public(uint256)
eth_owed: public(HashMap[address, uint256])

# withdrawals, escapes, refunds
claimed: public(HashMap[bytes32, bool])
escaped: public(HashMap[address, bool])
refunded: public(HashMap[uint256, bool])

# freeze
frozen: public(bool)
frozen_at: public(uint256)
frozen_output: public(uint256)
frozen_inbox_count: public(uint256)

# totals (for the invariants)
total_deposited: public(uint256)
total_claimed: public(uint256)
total_escaped: public(uint256)
total_refunded: public(uint256)


@deploy
def __init__(
    token: address,
    proposer: address,
    challenger: address,
    challenge_period: uint256,
    forced_grace: uint256,
    forced_fee: uint256,
    max_open_forced: uint256,
    proposer_bond: uint256,
    genesis_output_root: bytes32,
    market_ids: DynArray[uint32, MAX_MARKETS],
    size_scales: DynArray[uint256, MAX_MARKETS],
    funding_scales: DynArray[uint256, MAX_MARKETS],
):
    assert token != empty(address) and proposer != empty(address) and challenger != empty(address)
    assert max_open_forced > 0, "bridge: max_open_forced must be positive"
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
    CHALLENGE_PERIOD = challenge_period
    FORCED_GRACE = forced_grace
    FORCED_FEE = forced_fee
    MAX_OPEN_FORCED = max_open_forced
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
                       data_hash=empty(bytes32), proposed_at=block.timestamp, final_at=block.timestamp)


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
    return self.output_meta[i] & (2**64 - 1)


@internal
@view
def _output_inbox_count(i: uint256) -> uint256:
    return (self.output_meta[i] >> 64) & (2**64 - 1)


@internal
@view
def _output_l2_block(i: uint256) -> uint256:
    return self.output_meta[i] >> 128


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
    return self._time_final(i)


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
def _close_served_requests():
    # pop forced requests that a final output covers (amortised: each forceWithdraw pushes one)
    final_count: uint256 = self._output_inbox_count(self._last_final())
    head: uint256 = self.forced_queue_head
    tail: uint256 = self.forced_queue_tail
    for _: uint256 in range(POP_PER_CALL):
        if head >= tail:
            break
        index: uint256 = self.forced_queue[head]
        if index >= final_count:
            break
        account: address = self.forced_account[index]
        if self.open_forced_of[account] == index + 1:
            self.open_forced_of[account] = 0
        self.open_forced_count -= 1
        head += 1
        log ForcedRequestServed(account=account, inbox_index=index)
    self.forced_queue_head = head


@internal
def _append_inbox(kind: uint8, account: address, amount: uint256) -> (uint256, bytes32):
    index: uint256 = self.inbox_count
    h: bytes32 = self._entry_hash(self.inbox_hashes[index], kind, index, account, amount)
    self.inbox_hashes[index + 1] = h
    self.inbox_count = index + 1
    return index, h


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
    price: int256 = convert(convert(self._word(market, 0), uint256), int256)
    index: int256 = convert(self._word(market, 2), int256)
    value: int256 = self._floor_div(size * price, convert(size_scale, int256))
    funding: int256 = -self._floor_div(-(size * (index - snapshot)), convert(funding_scale, int256))
    return margin + value - cost - funding


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
    index: uint256 = 0
    h: bytes32 = empty(bytes32)
    index, h = self._append_inbox(KIND_DEPOSIT, account, amount)
    self.total_deposited += amount
    assert extcall TOKEN.transferFrom(msg.sender, self, amount, default_return_value=True), "bridge: transferFrom failed"
    log Deposited(account=account, depositor=msg.sender, inbox_index=index, amount=amount, inbox_hash=h)
    return index


@external
@payable
def forceWithdraw(amount: uint256) -> uint256:
    """
    @notice Ask the L2 to withdraw min(amount, free collateral) of the caller
        into a checkpoint's withdrawals tree. Pays FORCED_FEE (to the proposer).
        If no live output covers it within FORCED_GRACE, anyone may freeze().
    @return the inbox index of the request
    """
    assert not self.frozen, "bridge: frozen"
    assert msg.value == FORCED_FEE, "bridge: pay exactly FORCED_FEE"
    assert amount > 0 and amount <= MAX_AMOUNT, "bridge: amount out of range"
    self._close_served_requests()
    assert self.open_forced_of[msg.sender] == 0, "bridge: the account already has an open forced request"
    assert self.open_forced_count < MAX_OPEN_FORCED, "bridge: too many open forced requests"
    index: uint256 = 0
    h: bytes32 = empty(bytes32)
    index, h = self._append_inbox(KIND_FORCED_WITHDRAWAL, msg.sender, amount)
    deadline: uint256 = block.timestamp + FORCED_GRACE
    self.forced_deadline[index] = deadline
    self.forced_account[index] = msg.sender
    self.open_forced_of[msg.sender] = index + 1
    self.open_forced_count += 1
    self.forced_queue[self.forced_queue_tail] = index
    self.forced_queue_tail += 1
    self.eth_owed[PROPOSER] += msg.value
    log ForcedWithdrawalRequested(account=msg.sender, inbox_index=index, amount=amount, inbox_hash=h, deadline=deadline)
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
    @notice The proposer takes its bond back once every output is final (or the bridge is frozen).
    """
    assert msg.sender == PROPOSER, "bridge: only the proposer"
    assert self.frozen or self._time_final(self.output_count - 1), "bridge: outputs still in their challenge period"
    self.bond -= amount
    self.eth_owed[PROPOSER] += amount
    log Unbonded(proposer=msg.sender, amount=amount, total=self.bond)


@external
def propose(
    output_index: uint256,
    l2_block: uint256,
    output: Output,
    data: Bytes[MAX_BATCH_BYTES],
) -> bytes32:
    """
    @notice Post the output after L2 block `l2_block` with its batch data.
    @param output_index must equal output_count (no double posting after a crash)
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
    assert keccak256(data) == output.data_hash, "bridge: wrong data hash"
    root: bytes32 = self._compute_output_root(output)
    self.output_roots[count] = root
    self.output_meta[count] = block.timestamp | (output.inbox_count << 64) | (l2_block << 128)
    self.output_count = count + 1
    hint: uint256 = self._search_last_final()
    if hint != self.final_hint:
        self.final_hint = hint
    log OutputProposed(output_index=count, output_root=root, l2_block=l2_block,
                       state_root=output.state_root, withdrawals_root=output.withdrawals_root,
                       last_block_hash=output.last_block_hash, inbox_count=output.inbox_count,
                       inbox_hash=output.inbox_hash, data_hash=output.data_hash,
                       proposed_at=block.timestamp, final_at=block.timestamp + CHALLENGE_PERIOD)
    return root


@external
def deleteOutputs(from_index: uint256):
    """
    @notice The challenger deletes output `from_index` and every output after
        it, while `from_index` is still in its challenge period. The proposer's
        bond (up to PROPOSER_BOND) goes to the challenger.
    """
    assert msg.sender == CHALLENGER, "bridge: only the challenger"
    count: uint256 = self.output_count
    assert from_index > 0 and from_index < count, "bridge: no such output"
    assert not self._is_final(from_index), "bridge: output already final"
    self.output_count = from_index
    slashed: uint256 = min(self.bond, PROPOSER_BOND)
    self.bond -= slashed
    self.eth_owed[CHALLENGER] += slashed
    log OutputsDeleted(challenger=msg.sender, from_index=from_index, previous_count=count, slashed=slashed)


# ================================================================ withdrawals

@external
@nonreentrant
def claimWithdrawal(output_index: uint256, output: Output, withdrawal: Withdrawal,
                    leaf_index: uint256, siblings: DynArray[bytes32, smt.MAX_WITHDRAWAL_DEPTH]):
    """
    @notice Pay `withdrawal` (to its account) after proving it is leaf
        `leaf_index` of the withdrawals tree of final output `output_index`.
        Anyone may call it; each withdrawal is paid once.
    """
    assert self._is_final(output_index), "bridge: output not final"
    assert self._compute_output_root(output) == self.output_roots[output_index], "bridge: output fields do not match the output root"
    whash: bytes32 = keccak256(abi_encode(withdrawal.index, withdrawal.account, withdrawal.amount, withdrawal.l2_block))
    assert not self.claimed[whash], "bridge: withdrawal already claimed"
    assert smt.verify_withdrawal(output.withdrawals_root, whash, leaf_index, siblings), "bridge: bad withdrawal proof"
    self.claimed[whash] = True
    self.total_claimed += withdrawal.amount
    self._pay(withdrawal.account, withdrawal.amount)
    log WithdrawalClaimed(withdrawal_hash=whash, account=withdrawal.account, withdrawal_index=withdrawal.index,
                          amount=withdrawal.amount, output_index=output_index)


# ================================================================ escape hatch

@external
def freeze(request_index: uint256):
    """
    @notice Anyone: freeze the bridge because forced request `request_index`
        is past its grace and no live output covers it (inbox count > index).
    """
    assert not self.frozen, "bridge: already frozen"
    deadline: uint256 = self.forced_deadline[request_index]
    assert deadline != 0, "bridge: not a forced request"
    assert block.timestamp >= deadline, "bridge: forced request still within its grace"
    assert self._live_inbox_count() <= request_index, "bridge: a live output covers the request"
    last: uint256 = self._search_last_final()
    self.frozen = True
    self.frozen_at = block.timestamp
    self.frozen_output = last
    self.frozen_inbox_count = self._output_inbox_count(last)
    log Frozen(caller=msg.sender, request_index=request_index, output_index=last,
               inbox_count=self.frozen_inbox_count)


@external
@nonreentrant
def escape(account: address, output: Output, account_value: Bytes[MAX_LEAF_BYTES],
           account_proof: smt.SmtProof, positions: DynArray[PositionEscape, MAX_MARKETS]) -> uint256:
    """
    @notice Frozen only: pay `account` (anyone may call) its free collateral
        plus max(0, equity) of its position in every registered market, proven
        against the state root of the output that was last final at the freeze.
        `account_value` is the account leaf (collateral (uint256) || nonces_hash || ...).
        `positions` has one entry per registered market, in registration order:
        an inclusion proof of the position and of its market, or an exclusion
        proof of the position. Once per account.
    @return the amount paid
    """
    assert self.frozen, "bridge: not frozen"
    assert not self.escaped[account], "bridge: account already escaped"
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

    self.escaped[account] = True
    paid: uint256 = min(owed, staticcall TOKEN.balanceOf(self))
    self.total_escaped += paid
    self._pay(account, paid)
    log Escaped(account=account, caller=msg.sender, owed=owed, paid=paid, output_index=out)
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
    @notice Take the ETH owed to the caller (forced-request fees for the
        proposer, slashed bonds for the challenger, an unbonded bond).
    """
    amount: uint256 = self.eth_owed[msg.sender]
    assert amount > 0, "bridge: nothing owed"
    self.eth_owed[msg.sender] = 0
    send(msg.sender, amount)
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
    return OutputInfo(output_root=self.output_roots[output_index], proposed_at=self._proposed_at(output_index),
                      final_at=final_at, challenge_time_left=left, is_final=is_final,
                      inbox_count=self._output_inbox_count(output_index),
                      l2_block=self._output_l2_block(output_index))


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
    @notice A forced request and its grace clock (grace_left 0 = past the grace).
    """
    deadline: uint256 = self.forced_deadline[inbox_index]
    assert deadline != 0, "bridge: not a forced request"
    left: uint256 = 0
    if block.timestamp < deadline:
        left = deadline - block.timestamp
    return ForcedInfo(account=self.forced_account[inbox_index], requested_at=deadline - FORCED_GRACE,
                      deadline=deadline, grace_left=left,
                      covered_by_live_output=self._live_inbox_count() > inbox_index,
                      served=self._output_inbox_count(self._last_final()) > inbox_index)


@external
@view
def forcedGraceLeft(inbox_index: uint256) -> uint256:
    """
    @notice Seconds until forced request `inbox_index` may trigger a freeze (0: past the grace).
    """
    deadline: uint256 = self.forced_deadline[inbox_index]
    assert deadline != 0, "bridge: not a forced request"
    if block.timestamp >= deadline:
        return 0
    return deadline - block.timestamp


@external
@view
def canFreeze(inbox_index: uint256) -> bool:
    deadline: uint256 = self.forced_deadline[inbox_index]
    return (not self.frozen and deadline != 0 and block.timestamp >= deadline
            and self._live_inbox_count() <= inbox_index)


@external
@view
def openForcedRequestOf(account: address) -> uint256:
    """
    @notice inbox index + 1 of the account's open forced request (0: none).
    """
    return self.open_forced_of[account]


@external
@view
def status() -> Status:
    return Status(frozen=self.frozen, frozen_at=self.frozen_at, output_count=self.output_count,
                  last_final_output=self._last_final(), inbox_count=self.inbox_count,
                  inbox_hash=self.inbox_hashes[self.inbox_count],
                  open_forced_requests=self.open_forced_count, now=block.timestamp)


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
