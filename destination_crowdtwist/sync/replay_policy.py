"""The replay policy: what a replayed attempt may already have applied, and what the sync does about it.

Airbyte delivery is at-least-once: an interrupted attempt is replayed from the last state it echoed,
so rows after that state may reach CrowdTwist twice. Member writes are idempotent; activity credits
are not (CrowdTwist has no idempotency key), so ``credit_verification`` chooses how credits are kept
exactly once, and that choice is made here, once, for the whole sync (wiring builds it):

- ``every_row`` (the default): every credit row is verified against the member's activity history
  (read once per member); no barrier: a verified replay is safe wherever its states fall, and a
  barrier would only drain the requests in flight at every state.
- ``replay_window``: only the credit rows before the first state covering their stream are verified
  (:class:`ReplayWindow`), with a barrier at every state: no credit starts past a state that is not
  echoed yet, so an interrupted attempt can have credited rows only up to its next state, which are
  exactly the rows a replay re-sends before its first state.
- ``none``: no row is verified; the barrier bounds what a replay doubles.

A sync without an Activity Credit stream has nothing to verify and no barrier.

The write loop (``sync/session.py``) asks the policy at each record (:meth:`ReplayPolicy.verify`, which
becomes ``Row.verify``, read by the credit writer) and at each state (:meth:`ReplayPolicy.note_state`,
then :meth:`ReplayPolicy.barrier_at_state`: wait until every earlier row settled before reading on).
Rows cannot wait for members created later in the sync under a barrier (a waiting credit would hold
it), so wiring asks it too before enabling ``sync/deferral.py``.

Pure and single-threaded: only the write loop's thread uses it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from destination_crowdtwist.sync.checkpoint import StreamKey
from destination_crowdtwist.writers.base import StreamContext
from destination_crowdtwist.writers.objects import ACTIVITY_CREDIT

#: Which Activity Credit rows are verified: all of them, those in the replay window, or none.
Verify = Literal["every_row", "replay_window", "none"]


class ReplayWindow:
    """Which streams' rows a replayed attempt may already have applied.

    The platform resumes each stream from its own last echoed state (or every stream from the last
    GLOBAL state). With a barrier at every state, an interrupted attempt can have applied rows only
    up to its next state, so the rows of a stream that may already be applied are exactly those
    before the first state that covers that stream. A stream without a state yet restarts from
    scratch on replay, so its rows stay in the window until such a state arrives.

    Pure and single-threaded (the write loop's thread, through :class:`ReplayPolicy`).
    """

    def __init__(self) -> None:
        self._streams_with_state: set[StreamKey] = set()
        self._global_state_seen = False

    def note_state(self, stream: StreamKey | None) -> None:
        """A state arrived (None = GLOBAL / LEGACY, covering every stream)."""
        if stream is None:
            self._global_state_seen = True
        else:
            self._streams_with_state.add(stream)

    def contains(self, stream: StreamKey) -> bool:
        """Whether a row of ``stream`` received now may already have been applied by an earlier attempt."""
        return not self._global_state_seen and stream not in self._streams_with_state


class ReplayPolicy:
    """One sync's answer to replays: which rows the writer verifies, and whether states are barriers.

    Built once by :meth:`for_sync`; see the module docstring for the table it encodes.
    """

    def __init__(self, verify: Verify, *, barrier: bool) -> None:
        """``verify`` says which Activity Credit rows are verified; ``barrier`` whether states are barriers."""
        self._verify = verify
        self._barrier = barrier
        self._window = ReplayWindow()

    @classmethod
    def for_sync(cls, credit_verification: str, streams: Iterable[StreamContext]) -> ReplayPolicy:
        """The policy of a sync of ``streams`` under the config's ``credit_verification``."""
        if not any(stream.object_name == ACTIVITY_CREDIT for stream in streams):
            return cls("none", barrier=False)  # member writes are idempotent: nothing to verify or hold
        if credit_verification == "every_row":
            return cls("every_row", barrier=False)
        if credit_verification == "replay_window":
            return cls("replay_window", barrier=True)
        if credit_verification == "none":
            return cls("none", barrier=True)
        raise ValueError(f"unknown credit_verification {credit_verification!r}")

    def verify(self, stream: StreamContext) -> bool:
        """Whether a row of ``stream`` received now must be checked against what CrowdTwist already has
        (``Row.verify``): a replayed attempt may have applied it.
        """
        if stream.object_name != ACTIVITY_CREDIT or self._verify == "none":
            return False
        return self._verify == "every_row" or self._window.contains(stream.key)

    def note_state(self, stream: StreamKey | None) -> None:
        """A state arrived (None = GLOBAL / LEGACY): the rows after it are past the replay window."""
        self._window.note_state(stream)

    def barrier_at_state(self) -> bool:
        """Whether no row may start past a state until every row before it settled (then an interrupted
        attempt cannot have applied rows beyond its next state).
        """
        return self._barrier
