"""Which of several sequencers with the same sequencer id writes: a Kafka
consumer group elects it, the transactional id keeps the others out.

Every sequencer started with ``standby = true`` joins the consumer group
``<transactional id>.election`` on a one-partition topic ``<topic>.election``.
The group coordinator (a broker) hands that partition to exactly one member, as
Kafka Streams hands a task to one instance; holding it is being the active
sequencer.  A member that stops heartbeating (kill -9, SIGSTOP, a partition
from the brokers) is dropped after ``session_timeout_ms`` and the partition
goes to another member.

The group decides who *tries* to write; it does not make writing safe.  Safety
is the transactional id's: the new active sequencer's producer start bumps the
producer epoch, which aborts the old one's open transaction and makes the
broker refuse every later write of the old one (``Fenced``).  So a paused
sequencer that wakes up after losing the election cannot write even once,
whatever it believes.

The assignment is computed by whichever member the coordinator picks as group
leader, with ``choose_active`` below: keep the current active sequencer while it
is a member (no hand-over when a standby joins), else the member that has
applied the most of the log (the shortest catch-up).  Every member's
assignment carries the active member's API URL and the election term (it grows
by one whenever the active sequencer changes), so standbys can forward txs and
``GET /v1/status`` can say who is active.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment, ConsumerProtocolMemberMetadata

from sequencer.log.kafka import LogConfig, LogUnavailable, ensure_topic, within

log = logging.getLogger("isoroll.election")


class Candidate(msgspec.Struct, frozen=True):
    """What a member tells the group leader when it joins."""
    url: str
    active: bool
    applied_offset: int
    term: int


class Verdict(msgspec.Struct, frozen=True):
    """What every member learns from an assignment."""
    active_url: str
    term: int


@dataclass(frozen=True)
class Leadership:
    active: bool
    """This node holds the election partition."""
    active_url: str
    term: int


def choose_active(candidates: Mapping[str, Candidate]) -> str:
    """The member to hold the partition: the active one if it is still a member,
    else the one that applied the most of the log; ties by member id.  Two may
    claim to be active when one was paused past its session and came back: the
    claim of the later term wins (the other was fenced meanwhile)."""
    actives = [m for m, c in candidates.items() if c.active]
    if actives:
        return min(actives, key=lambda m: (-candidates[m].term, m))
    return min(candidates, key=lambda m: (-candidates[m].applied_offset, m))


def compute_term(candidates: Mapping[str, Candidate], winner: str) -> int:
    """The election term: unchanged while the same member stays active, else one
    more than any member has seen."""
    seen = max(c.term for c in candidates.values())
    return seen if candidates[winner].active else seen + 1


def election_topic(config: LogConfig) -> str:
    return config.topic + ".election"


def election_group(config: LogConfig) -> str:
    return config.transactional_id + ".election"


class Election:
    """Membership in the election group of one sequencer id.  ``leadership``
    is the latest verdict; ``changed`` is set whenever it changes."""

    def __init__(self, config: LogConfig, url: str, get_applied_offset: Callable[[], int],
                 session_timeout_ms: int = 3000, heartbeat_interval_ms: int = 500) -> None:
        self._config = config
        self.url = url
        self._get_applied_offset = get_applied_offset
        self._session_timeout_ms = session_timeout_ms
        self._heartbeat_interval_ms = heartbeat_interval_ms
        self.topic = election_topic(config)
        self.leadership = Leadership(False, "", 0)
        self.changed = asyncio.Event()
        self._holding = False
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task | None = None

    @property
    def holding(self) -> bool:
        """This node holds the partition (as far as its last assignment says)."""
        return self._holding

    async def start(self) -> None:
        if self._consumer is not None:
            return
        c = self._config
        await ensure_topic(LogConfig(bootstrap_servers=c.bootstrap_servers, topic=self.topic,
                                     replication_factor=c.replication_factor,
                                     min_insync_replicas=c.min_insync_replicas,
                                     request_timeout_ms=c.request_timeout_ms, client_id=c.client_id))
        consumer = AIOKafkaConsumer(
            bootstrap_servers=c.bootstrap_servers, client_id=c.client_id + "-election",
            group_id=election_group(c), enable_auto_commit=False, auto_offset_reset="latest",
            session_timeout_ms=self._session_timeout_ms, heartbeat_interval_ms=self._heartbeat_interval_ms,
            rebalance_timeout_ms=self._session_timeout_ms * 2, max_poll_interval_ms=60_000,
            partition_assignment_strategy=(self._make_assignor(),))
        consumer.subscribe([self.topic])
        try:
            await within(consumer.start(), c.request_timeout_ms / 1000 * 2, "election consumer start")
        except Exception as exc:  # bounded: the caller retries
            await _stop_quietly(consumer)
            raise LogUnavailable(f"cannot join the election: {exc!r}") from exc
        self._consumer = consumer
        self._task = asyncio.create_task(self._poll())
        log.info("joined the election group %s (session timeout %d ms)", election_group(c),
                 self._session_timeout_ms)

    async def stop(self) -> None:
        """Leave the group at once (the partition moves without waiting for the
        session timeout)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await _stop_quietly(consumer)
        self._holding = False

    async def _poll(self) -> None:
        """The consumer takes part in rebalances only while it is polled."""
        while True:
            try:
                await self._consumer.getmany(timeout_ms=1000)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the brokers come and go; the coordinator rejoins by itself
                log.warning("election: %r", exc)
                await asyncio.sleep(0.5)

    def _make_assignor(self):
        election = self

        class SequencerElection(AbstractPartitionAssignor):
            name = "isoroll-sequencer-election"
            version = 0

            @classmethod
            def metadata(cls, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:
                candidate = Candidate(election.url, election._holding, election._get_applied_offset(),
                                      election.leadership.term)
                return ConsumerProtocolMemberMetadata(cls.version, sorted(topics), msgspec.msgpack.encode(candidate))

            @classmethod
            def assign(cls, cluster, members: Mapping[str, ConsumerProtocolMemberMetadata]):
                candidates = {m: msgspec.msgpack.decode(meta.user_data, type=Candidate)
                              for m, meta in members.items()}
                winner = choose_active(candidates)
                verdict = msgspec.msgpack.encode(Verdict(candidates[winner].url, compute_term(candidates, winner)))
                return {m: ConsumerProtocolMemberAssignment(cls.version, [(election.topic, [0])] if m == winner
                                                            else [], verdict) for m in members}

            @classmethod
            def on_assignment(cls, assignment: ConsumerProtocolMemberAssignment) -> None:
                verdict = msgspec.msgpack.decode(assignment.user_data, type=Verdict)
                holding = TopicPartition(election.topic, 0) in assignment.partitions()
                election._decide(Leadership(holding, verdict.active_url, verdict.term))

        return SequencerElection

    def _decide(self, leadership: Leadership) -> None:
        self._holding = leadership.active
        if leadership != self.leadership:
            log.info("election term %d: %s", leadership.term,
                     "this node is the active sequencer" if leadership.active
                     else f"the active sequencer is {leadership.active_url}")
            self.leadership = leadership
            self.changed.set()

    def resign(self) -> None:
        """This node was fenced: it claims nothing at the next rebalance."""
        self._holding = False

    async def rejoin(self) -> None:
        """Leave and join again claiming nothing, so that the group hands the
        lead out afresh now (to this node again if it is the most caught up)."""
        await self.stop()
        await self.start()


async def _stop_quietly(consumer: AIOKafkaConsumer) -> None:
    """Stop within 10 s whatever the brokers do (``within`` does not wait for a
    cancelled stop to unwind, unlike ``asyncio.wait_for``: aiokafka's group
    leave can wait forever on a dead coordinator)."""
    try:
        await within(consumer.stop(), 10, "election consumer stop")
    except Exception as exc:  # leaving a group through a dead broker: nothing more to do
        log.debug("election consumer close: %r", exc)
