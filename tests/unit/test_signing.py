"""secp256k1 recovery: the shared vectors, both backends, and the rejection rules."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from hypothesis import given, settings, strategies as st

from sequencer.core import signing
from sequencer.core.signing import SECP256K1_HALF_N, SECP256K1_N, SignatureError

VECTORS_PATH = Path(__file__).parents[1] / "vectors" / "signing_vectors.json"
VECTORS = json.loads(VECTORS_PATH.read_text())
BACKENDS = sorted(signing.BACKENDS)


def b(hex_str: str) -> bytes:
    return bytes.fromhex(hex_str.removeprefix("0x"))


def test_vectors_file_is_what_the_generator_writes():
    root = Path(__file__).parents[2]
    result = subprocess.run([sys.executable, "tests/vectors/make_signing_vectors.py", "--check"], cwd=root)
    assert result.returncode == 0, "tests/vectors/signing_vectors.json is stale: rerun the generator"


def test_vectors_file_has_the_cases():
    assert VECTORS["curve_order"] == "0x" + SECP256K1_N.to_bytes(32, "big").hex()
    assert len(VECTORS["valid"]) >= 10
    names = {c["name"] for c in VECTORS["invalid"]}
    assert {"high_s", "v_0", "v_1", "v_29", "r_zero", "s_zero", "s_eq_n", "short_64", "long_66"} <= names


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("vector", VECTORS["valid"], ids=lambda v: v["address"][:10])
def test_valid_vector_recovers_the_address(backend, vector):
    recover = signing.get_recover(backend)
    assert recover(b(vector["digest"]), b(vector["signature"])) == b(vector["address"])


@pytest.mark.parametrize("vector", VECTORS["valid"], ids=lambda v: v["address"][:10])
def test_valid_vector_agrees_with_eth_account(vector):
    """eth-account (eth-keys) is a third, independent implementation."""
    key, digest, sig = b(vector["private_key"]), b(vector["digest"]), b(vector["signature"])
    assert signing.address_of(key) == b(vector["address"])
    assert signing.sign_digest(digest, key) == sig  # RFC 6979: deterministic
    assert Account._recover_hash(digest, signature=sig).lower() == vector["address"]
    s = int.from_bytes(sig[32:64], "big")
    assert s <= SECP256K1_HALF_N and sig[64] in (27, 28)


def test_typed_data_vector_signs_the_same_with_eth_account():
    vector = next(v for v in VECTORS["valid"] if "typed_data" in v)
    signed = Account.sign_message(encode_typed_data(full_message=vector["typed_data"]), b(vector["private_key"]))
    assert signed.message_hash == b(vector["digest"])
    assert signed.signature == b(vector["signature"])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", VECTORS["invalid"], ids=lambda c: c["name"])
def test_invalid_vector_rejected(backend, case):
    recover = signing.get_recover(backend)
    with pytest.raises(SignatureError) as err:
        recover(b(case["digest"]), b(case["signature"]))
    assert case["error"] in str(err.value)


def test_high_s_twin_is_valid_ecdsa_but_rejected():
    """The high-s vector really is the malleable twin: libsecp256k1 recovers the
    same key from it once normalised, so only the low-s rule rejects it."""
    case = next(c for c in VECTORS["invalid"] if c["name"] == "high_s")
    sig = b(case["signature"])
    s = int.from_bytes(sig[32:64], "big")
    assert s > SECP256K1_HALF_N
    normalised = sig[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - sig[64]])
    assert normalised == b(VECTORS["valid"][0]["signature"])
    with pytest.raises(SignatureError, match="high-s"):
        signing.parse_signature(sig)


@pytest.mark.parametrize("backend", BACKENDS)
def test_wrong_digest_recovers_another_address(backend):
    vector = VECTORS["valid"][0]
    other = bytes(31) + b"\x01"
    recover = signing.get_recover(backend)
    assert recover(other, b(vector["signature"])) != b(vector["address"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_r_not_on_curve_is_a_signature_error(backend):
    # x = 5 is not the x coordinate of a secp256k1 point (5^3 + 7 = 132 is a non-residue mod p).
    sig = (5).to_bytes(32, "big") + (1).to_bytes(32, "big") + b"\x1b"
    with pytest.raises(SignatureError, match="does not recover"):
        signing.get_recover(backend)(b"\x01" * 32, sig)


def test_unknown_backend():
    with pytest.raises(ValueError, match="unknown signature backend"):
        signing.get_recover("openssl")


def test_parse_signature():
    sig = b(VECTORS["valid"][0]["signature"])
    r, s, recid = signing.parse_signature(sig)
    assert (r.to_bytes(32, "big"), s.to_bytes(32, "big"), recid) == (sig[:32], sig[32:64], sig[64] - 27)


_private_keys = st.integers(min_value=1, max_value=SECP256K1_N - 1).map(lambda k: k.to_bytes(32, "big"))
_digests = st.binary(min_size=32, max_size=32)


@settings(max_examples=200, deadline=None)
@given(key=_private_keys, digest=_digests)
def test_sign_then_recover_coincurve(key, digest):
    sig = signing.sign_digest(digest, key)
    assert int.from_bytes(sig[32:64], "big") <= SECP256K1_HALF_N
    assert signing.get_recover("coincurve")(digest, sig) == signing.address_of(key)


@settings(max_examples=25, deadline=None)  # py-ecc: ~230 recoveries/s
@given(key=_private_keys, digest=_digests)
def test_backends_agree_on_random_keys(key, digest):
    sig = signing.sign_digest(digest, key)
    coincurve_address = signing.get_recover("coincurve")(digest, sig)
    assert signing.get_recover("py-ecc")(digest, sig) == coincurve_address == signing.address_of(key)


@settings(max_examples=25, deadline=None)
@given(digest=_digests, r=st.integers(1, SECP256K1_N - 1), s=st.integers(1, SECP256K1_HALF_N),
       v=st.sampled_from([27, 28]))
def test_backends_agree_on_arbitrary_signatures(digest, r, s, v):
    """Random (mostly meaningless) signatures: both backends recover the same
    address or both refuse."""
    sig = r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([v])
    outcomes = []
    for backend in BACKENDS:
        try:
            outcomes.append(signing.get_recover(backend)(digest, sig))
        except SignatureError:
            outcomes.append(None)
    assert outcomes[0] == outcomes[1]
