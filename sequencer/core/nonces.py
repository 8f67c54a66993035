"""The per-account nonce window (DESIGN.md "Signing").

An account keeps its N highest used nonces.  A new nonce must be unused and,
once the window is full, above the smallest kept one; so millisecond
timestamps work as nonces and a tx can be replayed never.
"""
from __future__ import annotations

from bisect import bisect_left, insort

MAX_NONCE = 2**64 - 1


def is_nonce_usable(kept: tuple[int, ...], nonce: int, window: int) -> tuple[bool, str]:
    """(ok, reason).  ``kept`` is ascending."""
    if kept and kept[-1] < nonce <= MAX_NONCE:
        return True, ""  # the common case: above every kept nonce (all are u64s)
    if not 0 <= nonce <= MAX_NONCE:
        return False, f"nonce {nonce} is not a u64"
    if len(kept) >= window and nonce <= kept[0]:
        return False, (f"nonce {nonce} is not above {kept[0]}, the smallest of the "
                       f"{window} highest nonces this account has used")
    i = bisect_left(kept, nonce)
    if i < len(kept) and kept[i] == nonce:
        return False, f"nonce {nonce} was already used by this account"
    return True, ""


def record_nonce(kept: tuple[int, ...], nonce: int, window: int) -> tuple[int, ...]:
    """The window after using ``nonce`` (caller checked it is usable)."""
    if window > 0 and (not kept or nonce > kept[-1]):
        # The common case (timestamps as nonces): append, dropping the oldest
        # when full.  The same tuple as the insort below, without the list copy.
        drop = len(kept) + 1 - window
        return (kept[drop:] if drop > 0 else kept) + (nonce,)
    updated = list(kept)
    insort(updated, nonce)
    if len(updated) > window:
        del updated[: len(updated) - window]
    return tuple(updated)
