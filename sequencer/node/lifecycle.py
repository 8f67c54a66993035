"""The node's life cycle: one state machine, not a set of flags.

    CREATED -> LOADING -> SEQUENCING <-> RECOVERING
                       +-> FOLLOWING        +-> FENCED (follows the log read-only)
                       +-> STANDBY <-> SEQUENCING, RECOVERING; FENCED -> STANDBY
                           (standby sequencers: sequencer.node.election)
    any running phase -> FAILED   (an executor failure: a bug or a broken machine)
    any phase -> STOPPING -> STOPPED

``READY`` phases serve (and, for SEQUENCING, write); FAILED never writes
again: the process is to exit and restart from its last snapshot.
"""
from __future__ import annotations

import enum


class Phase(enum.Enum):
    CREATED = "created"
    LOADING = "loading"
    """Snapshot loaded, replaying the log up to its end."""
    SEQUENCING = "sequencing"
    RECOVERING = "recovering"
    """The sequencer lost the log; restarting its producer and catching up."""
    FOLLOWING = "following"
    STANDBY = "standby"
    """A sequencer that lost (or has not won) the election: follows the log and
    takes over when the election hands it the lead."""
    FENCED = "fenced"
    """A newer sequencer took over: this one follows the log read-only."""
    FAILED = "failed"
    """The executor raised something other than a rule break: nothing more is
    applied or written (see sequencer.core.transition, the two failure channels)."""
    STOPPING = "stopping"
    STOPPED = "stopped"


ALLOWED: dict[Phase, frozenset[Phase]] = {
    Phase.CREATED: frozenset({Phase.LOADING, Phase.STOPPED}),
    Phase.LOADING: frozenset({Phase.SEQUENCING, Phase.FOLLOWING, Phase.STANDBY, Phase.FAILED, Phase.STOPPING}),
    Phase.SEQUENCING: frozenset({Phase.RECOVERING, Phase.FENCED, Phase.STANDBY, Phase.FAILED, Phase.STOPPING}),
    Phase.RECOVERING: frozenset({Phase.SEQUENCING, Phase.FENCED, Phase.STANDBY, Phase.FAILED, Phase.STOPPING}),
    Phase.FOLLOWING: frozenset({Phase.FAILED, Phase.STOPPING}),
    Phase.STANDBY: frozenset({Phase.SEQUENCING, Phase.FAILED, Phase.STOPPING}),
    Phase.FENCED: frozenset({Phase.STANDBY, Phase.FAILED, Phase.STOPPING}),
    Phase.FAILED: frozenset({Phase.STOPPING}),
    Phase.STOPPING: frozenset({Phase.STOPPED}),
    Phase.STOPPED: frozenset(),
}

READY = frozenset({Phase.SEQUENCING, Phase.FOLLOWING, Phase.STANDBY, Phase.FENCED})
"""Phases in which the node serves reads from a caught-up state."""
RUNNING = frozenset({Phase.LOADING, Phase.SEQUENCING, Phase.RECOVERING, Phase.FOLLOWING, Phase.STANDBY,
                     Phase.FENCED})


class IllegalTransition(RuntimeError):
    pass


class Lifecycle:
    """The current phase and a human-readable status line; ``enter`` refuses a
    transition that ``ALLOWED`` does not list."""

    def __init__(self) -> None:
        self.phase = Phase.CREATED
        self.status = "starting"
        self.history: list[Phase] = [Phase.CREATED]

    def can_enter(self, phase: Phase) -> bool:
        return phase in ALLOWED[self.phase]

    def enter(self, phase: Phase, status: str) -> None:
        if not self.can_enter(phase):
            raise IllegalTransition(f"the node cannot go from {self.phase.value} to {phase.value}")
        self.phase = phase
        self.status = status
        self.history.append(phase)

    @property
    def ready(self) -> bool:
        return self.phase in READY

    @property
    def running(self) -> bool:
        return self.phase in RUNNING


class NodeFailed(Exception):
    """The node stopped on an executor failure; a tx waiting for its block gets
    this (HTTP 503, nothing acknowledged, nothing written)."""
