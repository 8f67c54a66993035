"""EIP-712: our hand-rolled digests against eth-account, and EIP-712's own example."""
from __future__ import annotations

import pytest
from eth_account import Account
from eth_account._utils.encode_typed_data.encoding_and_hashing import hash_domain
from eth_account.messages import _hash_eip191_message, encode_typed_data
from hypothesis import given, settings, strategies as st

from sequencer.core import eip712, records as R, signing
from sequencer.core.hashing import keccak

# API.md "EIP-712", verbatim.  OraclePrice is ours (signed by oracle signers).
API_TYPE_STRINGS = {
    "Transfer": "Transfer(address account,address to,uint256 amount,uint64 nonce,uint64 expiry)",
    "Withdraw": "Withdraw(address account,uint256 amount,uint64 nonce,uint64 expiry)",
    "AdjustMargin": "AdjustMargin(address account,uint32 market,int256 amount,uint64 nonce,uint64 expiry)",
    "PlaceOrder": "PlaceOrder(address account,uint32 market,bool isBuy,uint256 price,uint256 size,"
                  "uint32 leverage,uint8 timeInForce,bool reduceOnly,uint64 nonce,uint64 expiry)",
    "CancelOrder": "CancelOrder(address account,uint64 orderNonce,uint64 nonce,uint64 expiry)",
    "VaultDeposit": "VaultDeposit(address account,uint256 amount,uint256 minShares,uint64 nonce,"
                    "uint64 expiry)",
    "VaultWithdraw": "VaultWithdraw(address account,uint256 shares,uint256 minAmount,uint64 nonce,"
                     "uint64 expiry)",
    "AuctionBid": "AuctionBid(address account,address owner,uint32 market,uint256 size,uint256 price,"
                  "uint32 leverage,uint64 nonce,uint64 expiry)",
    "PlaceTrigger": "PlaceTrigger(address account,uint32 market,bool isBuy,uint256 triggerPrice,uint256 price,"
                    "uint256 size,uint32 leverage,uint8 tpsl,bool reduceOnly,uint64 nonce,uint64 expiry)",
    "ModifyOrder": "ModifyOrder(address account,uint64 orderNonce,uint256 price,uint256 size,uint64 nonce,"
                   "uint64 expiry)",
    "ScheduleCancel": "ScheduleCancel(address account,uint64 cancelAt,uint64 nonce,uint64 expiry)",
    "OraclePrice": "OraclePrice(uint32 market,uint256 price,uint64 timestamp)",
}

A = b"\x11" * 20
B = b"\xab" * 20
U64 = 2**64 - 1

EXAMPLES = {
    "Transfer": R.Transfer(A, B, 1_000_000, 1, 1_700_000_000_000, b""),
    "Withdraw": R.Withdraw(A, 5, U64, U64, b""),
    "AdjustMargin": R.AdjustMargin(A, 3, -123_456_789, 7, 1_700_000_000_000, b""),
    "PlaceOrder": R.PlaceOrder(A, 2**32 - 1, True, 65_000_000_000, 10, 20, 2, False, 9, 10, b""),
    "CancelOrder": R.CancelOrder(A, 9, 10, 11, b""),
    "VaultDeposit": R.VaultDeposit(A, 10_000_000, 9_999_999, 12, 1_700_000_000_000, b""),
    "VaultWithdraw": R.VaultWithdraw(A, U64, 0, 13, 1_700_000_000_000, b""),
    "AuctionBid": R.AuctionBid(A, B, 1, 10_000, 54_000_000_000, 5, 14, 1_700_000_000_000, b""),
    "PlaceTrigger": R.PlaceTrigger(A, 1, False, 55_000_000_000, 54_000_000_000, 25, 10, 2, True, 14, U64, b""),
    "ModifyOrder": R.ModifyOrder(A, 9, 64_000_000_000, 50, U64, 1_700_000_000_000, b""),
    "ScheduleCancel": R.ScheduleCancel(A, 0, 15, 1_700_000_000_000, b""),
    "OraclePrice": R.OraclePrice(1, 64_999_500_000, 1_700_000_000_123, ()),
}


def eth_account_digest(domain: eip712.Domain, primary_type: str, record) -> bytes:
    return _hash_eip191_message(encode_typed_data(full_message=eip712.to_typed_data(domain, primary_type, record)))


def our_digest(domain: eip712.Domain, primary_type: str, record) -> bytes:
    return eip712.compute_digest(eip712.compute_domain_separator(domain), primary_type, record)


def test_type_strings_are_api_md():
    assert {t: eip712.compute_type_string(t) for t in eip712.TYPES} == API_TYPE_STRINGS
    for t, s in API_TYPE_STRINGS.items():
        assert eip712.TYPE_HASHES[t] == keccak(s.encode())


def test_every_record_class_has_its_type():
    for t, cls in eip712.RECORD_CLASS_BY_TYPE.items():
        assert eip712.get_primary_type(EXAMPLES[t]) == t
        fields = set(cls.__struct_fields__)
        assert all(attr in fields for _, _, attr in eip712.TYPES[t])
    assert set(R.USER_RECORD_TYPES) <= set(eip712.TYPE_BY_RECORD_CLASS)


def test_domain_separator_matches_eth_account(domain):
    assert eip712.compute_domain_separator(domain) == hash_domain(domain.to_json())
    other = eip712.Domain(1, b"\xcc" * 20)
    assert eip712.compute_domain_separator(other) == hash_domain(other.to_json())
    assert eip712.compute_domain_separator(other) != eip712.compute_domain_separator(domain)


def test_domain_json_is_the_status_form(domain):
    j = domain.to_json()
    assert j == {"name": "isoroll", "version": "1", "chainId": domain.chain_id,
                 "verifyingContract": "0x" + domain.verifying_contract.hex()}
    assert isinstance(j["chainId"], int)


@pytest.mark.parametrize("primary_type", sorted(EXAMPLES))
def test_digest_matches_eth_account(domain, primary_type):
    record = EXAMPLES[primary_type]
    assert our_digest(domain, primary_type, record) == eth_account_digest(domain, primary_type, record)


def test_negative_int256_matches_eth_account(domain):
    for amount in (-1, -(2**255), 2**255 - 1, 0):
        record = R.AdjustMargin(A, 0, amount, 1, 2, b"")
        assert our_digest(domain, "AdjustMargin", record) == eth_account_digest(domain, "AdjustMargin", record)


def test_sign_with_eth_account_recover_with_ours(domain, keys):
    key = keys[0]
    record = R.Transfer(signing.address_of(key), B, 42, 1, 2, b"")
    signed = Account.sign_message(encode_typed_data(full_message=eip712.to_typed_data(domain, "Transfer", record)), key)
    assert signed.message_hash == our_digest(domain, "Transfer", record)
    for backend in signing.BACKENDS:
        assert signing.get_recover(backend)(signed.message_hash, signed.signature) == record.account


def test_out_of_range_fields_are_refused(domain):
    """A value that no wallet could sign (wrong width for its EIP-712 type) must
    not get a digest: it would be a digest of no typed message at all."""
    sep = eip712.compute_domain_separator(domain)
    bad = [
        ("Transfer", R.Transfer(A, B, 1, -1, 2, b"")),             # uint64 nonce < 0
        ("Transfer", R.Transfer(A, B, 1, 2**64, 2, b"")),          # uint64 nonce overflow
        ("Transfer", R.Transfer(A, B, -1, 1, 2, b"")),             # uint256 < 0
        ("Transfer", R.Transfer(A[:19], B, 1, 1, 2, b"")),         # 19-byte address
        ("AdjustMargin", R.AdjustMargin(A, 2**32, 1, 1, 2, b"")),  # uint32 overflow
        ("AdjustMargin", R.AdjustMargin(A, 0, 2**255, 1, 2, b"")),  # int256 overflow
        ("PlaceOrder", R.PlaceOrder(A, 0, True, 1, 1, 1, 256, False, 1, 2, b"")),  # uint8 overflow
    ]
    for primary_type, record in bad:
        with pytest.raises(ValueError):
            eip712.compute_digest(sep, primary_type, record)


# --- Hypothesis: any in-range field values ------------------------------------------

_addr = st.binary(min_size=20, max_size=20)
_u = lambda bits: st.integers(0, 2**bits - 1)  # noqa: E731
_u64 = _u(64)
_i256 = st.integers(-(2**255), 2**255 - 1)
_domains = st.builds(eip712.Domain, _u(256), _addr)

_records = st.one_of(
    st.builds(R.Transfer, _addr, _addr, _u(256), _u64, _u64, st.just(b"")),
    st.builds(R.Withdraw, _addr, _u(256), _u64, _u64, st.just(b"")),
    st.builds(R.AdjustMargin, _addr, _u(32), _i256, _u64, _u64, st.just(b"")),
    st.builds(R.PlaceOrder, _addr, _u(32), st.booleans(), _u(256), _u(256), _u(32), _u(8), st.booleans(),
              _u64, _u64, st.just(b"")),
    st.builds(R.CancelOrder, _addr, _u64, _u64, _u64, st.just(b"")),
    st.builds(R.OraclePrice, _u(32), _u(256), _u64, st.just(())),
)


@settings(max_examples=150, deadline=None)
@given(domain=_domains, record=_records)
def test_digest_matches_eth_account_for_any_values(domain, record):
    primary_type = eip712.get_primary_type(record)
    assert our_digest(domain, primary_type, record) == eth_account_digest(domain, primary_type, record)


# --- EIP-712's own example (eips.ethereum.org/EIPS/eip-712, "Mail") ---------------------

MAIL = {
    "types": {
        "EIP712Domain": [{"name": "name", "type": "string"}, {"name": "version", "type": "string"},
                         {"name": "chainId", "type": "uint256"}, {"name": "verifyingContract", "type": "address"}],
        "Person": [{"name": "name", "type": "string"}, {"name": "wallet", "type": "address"}],
        "Mail": [{"name": "from", "type": "Person"}, {"name": "to", "type": "Person"},
                 {"name": "contents", "type": "string"}],
    },
    "primaryType": "Mail",
    "domain": {"name": "Ether Mail", "version": "1", "chainId": 1,
               "verifyingContract": "0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC"},
    "message": {"from": {"name": "Cow", "wallet": "0xCD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826"},
                "to": {"name": "Bob", "wallet": "0xbBbBBBBbbBBBbbbBbbBbbbbBBbBbbbbBbBbbBBbB"},
                "contents": "Hello, Bob!"},
}
MAIL_DOMAIN_SEPARATOR = bytes.fromhex("f2cee375fa42b42143804025fc449deafd50cc031ca257e0b194a650a912090f")
MAIL_DIGEST = bytes.fromhex("be609aee343fb3c4b28e1df9e632fca64fcfaede20f02e86244efddf30957bd2")
MAIL_R = 0x4355C47D63924E8A72E509B65029052EB6C299D53A04E167C5775FD466751C9D
MAIL_S = 0x07299936D304C153F6443DFA05F40FF007D72911B6F72307F996231605B91562
MAIL_V = 28
COW_KEY = keccak(b"cow")


def test_eip712_mail_example_with_eth_account():
    signable = encode_typed_data(full_message=MAIL)
    assert signable.header == MAIL_DOMAIN_SEPARATOR
    assert _hash_eip191_message(signable) == MAIL_DIGEST
    signed = Account.sign_message(signable, COW_KEY)
    assert signed.message_hash == MAIL_DIGEST
    assert (signed.v, signed.r, signed.s) == (MAIL_V, MAIL_R, MAIL_S)
    assert Account.recover_message(signable, signature=signed.signature) == MAIL["message"]["from"]["wallet"]


def test_eip712_mail_example_with_our_signing():
    """Our signer and both recovery backends reproduce the EIP's signature."""
    sig = signing.sign_digest(MAIL_DIGEST, COW_KEY)
    assert sig == MAIL_R.to_bytes(32, "big") + MAIL_S.to_bytes(32, "big") + bytes([MAIL_V])
    cow = bytes.fromhex(MAIL["message"]["from"]["wallet"][2:])
    assert signing.address_of(COW_KEY) == cow
    for backend in signing.BACKENDS:
        assert signing.get_recover(backend)(MAIL_DIGEST, sig) == cow
