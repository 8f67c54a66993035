"""The per-account nonce window (DESIGN.md "Signing")."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from sequencer.core.nonces import MAX_NONCE, is_nonce_usable, record_nonce


def use(kept: tuple[int, ...], nonce: int, window: int) -> tuple[int, ...]:
    ok, why = is_nonce_usable(kept, nonce, window)
    assert ok, why
    return record_nonce(kept, nonce, window)


def test_fresh_account_takes_any_u64():
    for nonce in (0, 1, 1_700_000_000_000, MAX_NONCE):
        assert is_nonce_usable((), nonce, 3) == (True, "")


@pytest.mark.parametrize("nonce", [-1, MAX_NONCE + 1, 2**256])
def test_outside_u64_refused(nonce):
    ok, why = is_nonce_usable((), nonce, 3)
    assert not ok and "not a u64" in why


def test_replay_refused():
    kept = use((), 5, 3)
    ok, why = is_nonce_usable(kept, 5, 3)
    assert not ok and "already used" in why


def test_window_not_full_accepts_lower_unused():
    kept = use(use((), 10, 3), 20, 3)
    assert kept == (10, 20)
    kept = use(kept, 5, 3)  # below the smallest kept, but the window is not full: nothing was forgotten yet
    assert kept == (5, 10, 20)


def test_full_window_needs_above_smallest():
    kept = (10, 20, 30)
    ok, why = is_nonce_usable(kept, 9, 3)
    assert not ok and "not above 10" in why and "3 highest" in why
    ok, why = is_nonce_usable(kept, 10, 3)  # equal to the smallest: refused (it is used, too)
    assert not ok
    assert is_nonce_usable(kept, 11, 3) == (True, "")  # between kept values, unused
    assert is_nonce_usable(kept, 31, 3) == (True, "")
    assert not is_nonce_usable(kept, 20, 3)[0]


def test_eviction_drops_the_smallest():
    kept = (10, 20, 30)
    assert record_nonce(kept, 15, 3) == (15, 20, 30)
    assert record_nonce(kept, 40, 3) == (20, 30, 40)
    # the evicted nonce can never come back
    assert not is_nonce_usable((20, 30, 40), 10, 3)[0]
    assert not is_nonce_usable((20, 30, 40), 15, 3)[0]


def test_window_of_one():
    kept = use((), 7, 1)
    assert kept == (7,)
    assert not is_nonce_usable(kept, 7, 1)[0] and not is_nonce_usable(kept, 6, 1)[0]
    assert use(kept, 8, 1) == (8,)


def test_u64_bounds():
    kept = use(use((), 0, 2), MAX_NONCE, 2)
    assert kept == (0, MAX_NONCE)
    assert not is_nonce_usable(kept, MAX_NONCE, 2)[0]
    assert use(kept, 1, 2) == (1, MAX_NONCE)
    # a full window topped by MAX_NONCE still accepts anything unused above its smallest
    assert is_nonce_usable((1, MAX_NONCE), MAX_NONCE - 1, 2) == (True, "")


def test_millisecond_timestamps_as_nonces():
    kept: tuple[int, ...] = ()
    t = 1_700_000_000_000
    for i in range(250):
        kept = use(kept, t + i, 100)
    assert len(kept) == 100 and kept[0] == t + 150
    assert not is_nonce_usable(kept, t + 149, 100)[0]


def test_window_shrinking_preset_is_respected():
    """record_nonce trims to the window given, even if more were kept before."""
    assert record_nonce((1, 2, 3, 4), 5, 2) == (4, 5)


@settings(max_examples=300, deadline=None)
@given(window=st.integers(1, 8),
       nonces=st.lists(st.one_of(st.integers(0, 40), st.integers(0, MAX_NONCE), st.integers(-3, -1)), max_size=60))
def test_no_nonce_is_ever_accepted_twice(window, nonces):
    kept: tuple[int, ...] = ()
    accepted: set[int] = set()
    for nonce in nonces:
        ok, why = is_nonce_usable(kept, nonce, window)
        if ok:
            assert nonce not in accepted
            assert 0 <= nonce <= MAX_NONCE
            accepted.add(nonce)
            kept = record_nonce(kept, nonce, window)
        else:
            assert why
        assert list(kept) == sorted(set(kept)) and len(kept) <= window
        assert set(kept) == set(sorted(accepted)[-window:])  # the N highest used
