"""The election's choice (sequencer.node.election): pure functions over what
the members said when they joined."""
from __future__ import annotations

from sequencer.node.election import Candidate, choose_active, compute_term
from sequencer.node.lifecycle import Lifecycle, Phase


def c(url: str, active: bool = False, offset: int = 0, term: int = 0) -> Candidate:
    return Candidate(url, active, offset, term)


def test_the_active_sequencer_keeps_the_lead_when_a_more_caught_up_standby_joins():
    members = {"m-b": c("b", offset=900, term=4), "m-a": c("a", active=True, offset=500, term=4)}
    assert choose_active(members) == "m-a"
    assert compute_term(members, "m-a") == 4


def test_without_an_active_sequencer_the_most_caught_up_member_wins_and_the_term_grows():
    members = {"m-a": c("a", offset=10, term=2), "m-b": c("b", offset=12, term=3), "m-c": c("c", offset=12, term=3)}
    assert choose_active(members) == "m-b"  # ties: the lowest member id
    assert compute_term(members, "m-b") == 4


def test_a_paused_sequencer_that_still_claims_the_lead_loses_to_the_later_term():
    # m-a was paused past its session; m-z took over in term 6 and fenced it.
    members = {"m-a": c("a", active=True, offset=700, term=5), "m-z": c("z", active=True, offset=650, term=6)}
    assert choose_active(members) == "m-z"
    assert compute_term(members, "m-z") == 6


def test_standby_transitions():
    lc = Lifecycle()
    for phase in (Phase.LOADING, Phase.STANDBY, Phase.SEQUENCING, Phase.STANDBY, Phase.SEQUENCING,
                  Phase.FENCED, Phase.STANDBY, Phase.STOPPING):
        lc.enter(phase, phase.value)
    assert lc.history[-1] is Phase.STOPPING
    assert not Lifecycle().can_enter(Phase.STANDBY)
    following = Lifecycle()
    following.enter(Phase.LOADING, "loading")
    following.enter(Phase.FOLLOWING, "following")
    assert not following.can_enter(Phase.STANDBY)  # a follower never writes
