"""The node's life cycle (sequencer.node.lifecycle): the transitions it allows,
the ones it refuses, and what each phase means for serving."""
from __future__ import annotations

import pytest

from sequencer.node.lifecycle import ALLOWED, READY, RUNNING, IllegalTransition, Lifecycle, Phase


def walk(*phases: Phase) -> Lifecycle:
    lc = Lifecycle()
    for phase in phases:
        lc.enter(phase, phase.value)
    return lc


def test_every_phase_has_its_transitions():
    assert set(ALLOWED) == set(Phase)
    assert ALLOWED[Phase.STOPPED] == frozenset()  # terminal


@pytest.mark.parametrize("path", [
    (Phase.LOADING, Phase.SEQUENCING, Phase.STOPPING, Phase.STOPPED),
    (Phase.LOADING, Phase.SEQUENCING, Phase.RECOVERING, Phase.SEQUENCING, Phase.RECOVERING, Phase.FENCED,
     Phase.STOPPING, Phase.STOPPED),
    (Phase.LOADING, Phase.SEQUENCING, Phase.FENCED, Phase.FAILED, Phase.STOPPING, Phase.STOPPED),
    (Phase.LOADING, Phase.FOLLOWING, Phase.FAILED, Phase.STOPPING, Phase.STOPPED),
    (Phase.LOADING, Phase.FAILED, Phase.STOPPING, Phase.STOPPED),
    (Phase.STOPPED,),
])
def test_allowed_paths(path):
    lc = walk(*path)
    assert lc.phase is path[-1] and lc.history == [Phase.CREATED, *path]


@pytest.mark.parametrize("path, illegal", [
    ((), Phase.SEQUENCING),                                      # sequencing before loading
    ((Phase.LOADING, Phase.FOLLOWING), Phase.SEQUENCING),         # a follower never writes
    ((Phase.LOADING, Phase.SEQUENCING, Phase.FENCED), Phase.SEQUENCING),  # fenced is for good
    ((Phase.LOADING, Phase.FAILED), Phase.SEQUENCING),            # a failed node never writes again
    ((Phase.LOADING, Phase.FAILED), Phase.FOLLOWING),
    ((Phase.LOADING, Phase.FOLLOWING), Phase.RECOVERING),
    ((Phase.LOADING, Phase.SEQUENCING, Phase.STOPPING, Phase.STOPPED), Phase.LOADING),  # no restart
    ((Phase.STOPPED,), Phase.FAILED),
])
def test_refused_transitions_leave_the_phase_alone(path, illegal):
    lc = walk(*path)
    before = (lc.phase, lc.status, list(lc.history))
    with pytest.raises(IllegalTransition):
        lc.enter(illegal, "no")
    assert (lc.phase, lc.status, lc.history) == before


def test_ready_and_running():
    assert READY == {Phase.SEQUENCING, Phase.FOLLOWING, Phase.STANDBY, Phase.FENCED}
    assert Phase.FAILED not in RUNNING and Phase.RECOVERING in RUNNING and Phase.RECOVERING not in READY
    lc = walk(Phase.LOADING)
    assert lc.running and not lc.ready
    lc.enter(Phase.SEQUENCING, "sequencing")
    assert lc.ready and lc.status == "sequencing"
    lc.enter(Phase.FAILED, "stopped on a bug")
    assert not lc.ready and not lc.running
