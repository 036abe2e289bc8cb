"""Checkpoint bookkeeping: when may a state be echoed, and with which exact stats.

The contract (docs/airbyte-protocol-notes.md §2.4): a state is echoed only after every record received
before it has *settled* — accepted by CrowdTwist, or rejected and counted — and all states are echoed
in the order received. Records complete out of order (a worker pool), so the tracker cuts the input
into *segments*: segment k holds the records received after state k-1 and before state k. State k
is ready when segments 0..k have no record outstanding.

Stats: for a STREAM state, ``recordCount`` is that stream's accepted records since that stream's
previous state and ``rejectedRecordCount`` its rejected ones; for a GLOBAL (or LEGACY) state, all
streams since the previous global state. Because states are released in order and a segment is
folded into the pending totals only when its closing state is released, the counts are exact
however the records finished.

Pure and single-threaded: callers hold a lock around it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Generic, TypeVar

StreamKey = tuple[str | None, str]  # (namespace, name)
S = TypeVar("S")


@dataclass
class _Segment:
    outstanding: int = 0
    accepted: dict[StreamKey, int] = field(default_factory=dict)
    rejected: dict[StreamKey, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ReleasedState(Generic[S]):
    """A state that may be echoed now, with its exact counts."""

    state: S
    record_count: int
    rejected_count: int


@dataclass
class _PendingState(Generic[S]):
    state: S
    stream: StreamKey | None  # None = GLOBAL / LEGACY: counts all streams


class CheckpointTracker(Generic[S]):
    """Tracks records and states; releases states only when everything before them settled."""

    def __init__(self) -> None:
        self._segments: deque[_Segment] = deque([_Segment()])
        self._first_segment_index = 0  # index of self._segments[0]
        self._states: deque[_PendingState[S]] = deque()  # states[i] closes segment first_index + i
        self._pending_accepted: dict[StreamKey, int] = {}
        self._pending_rejected: dict[StreamKey, int] = {}
        self.records_received = 0
        self.records_settled = 0

    def add_record(self) -> int:
        """Register a record received now; returns its segment ticket for :meth:`settle`."""
        self._segments[-1].outstanding += 1
        self.records_received += 1
        return self._first_segment_index + len(self._segments) - 1

    def settle(self, ticket: int, stream: StreamKey, *, accepted: bool) -> None:
        """Mark one record of segment ``ticket`` as settled (accepted or rejected)."""
        seg = self._segments[ticket - self._first_segment_index]
        if seg.outstanding <= 0:
            raise RuntimeError("a record was settled twice")
        seg.outstanding -= 1
        counts = seg.accepted if accepted else seg.rejected
        counts[stream] = counts.get(stream, 0) + 1
        self.records_settled += 1

    def add_state(self, state: S, stream: StreamKey | None) -> None:
        """Register a state received now; ``stream`` is None for GLOBAL / LEGACY states."""
        self._states.append(_PendingState(state, stream))
        self._segments.append(_Segment())

    @property
    def outstanding(self) -> int:
        """Records received but not yet settled."""
        return self.records_received - self.records_settled

    @property
    def pending_states(self) -> int:
        """States received but not yet released."""
        return len(self._states)

    def release(self) -> list[ReleasedState[S]]:
        """Pop every state that may be echoed now, in order, with its stats."""
        out: list[ReleasedState[S]] = []
        while self._states and self._segments[0].outstanding == 0:
            seg = self._segments.popleft()
            self._first_segment_index += 1
            for key, n in seg.accepted.items():
                self._pending_accepted[key] = self._pending_accepted.get(key, 0) + n
            for key, n in seg.rejected.items():
                self._pending_rejected[key] = self._pending_rejected.get(key, 0) + n
            pending = self._states.popleft()
            if pending.stream is None:
                accepted = sum(self._pending_accepted.values())
                rejected = sum(self._pending_rejected.values())
                self._pending_accepted.clear()
                self._pending_rejected.clear()
            else:
                accepted = self._pending_accepted.pop(pending.stream, 0)
                rejected = self._pending_rejected.pop(pending.stream, 0)
            out.append(ReleasedState(pending.state, accepted, rejected))
        return out

