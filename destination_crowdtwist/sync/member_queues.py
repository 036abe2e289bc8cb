"""Rows inside the pipeline: bounded by count and bytes, queued per member, bound to their writer.

A row whose member has a row in flight waits in that member's queue, and the worker that finishes
the row before it runs it next; a row of a member with nothing in flight goes to the worker pool at
once. So a member's rows (across streams) are applied in input order and never two at once: updates
must not overtake each other, and a credit must not race its member's create.

Pure bookkeeping, no threads and no lock of its own: the pipeline (``sync/pipeline.py``) calls it under
its lock.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from destination_crowdtwist.writers.base import Outcome, Prepared, Row, Writer

P = TypeVar("P")


class Work(Protocol):
    """A prepared row on its way to a worker, bound to the writer that prepared it.

    What the queues, the worker pool and the settle path see of a :class:`Task`: a pipeline runs
    writers of several payload types ``P`` at once, and only the task itself knows its ``P`` (its
    writer applies its own ``Prepared[P]``), so nothing outside :class:`Task` handles a
    ``Prepared[Any]``.
    """

    @property
    def row(self) -> Row:
        """The row as read from the input."""
        ...

    @property
    def member(self) -> str:
        """The member key that orders this row behind the member's earlier rows."""
        ...

    @property
    def ticket(self) -> int:
        """Its checkpoint ticket (``sync/checkpoint.py``), to settle it with."""
        ...

    @property
    def size(self) -> int:
        """Serialized bytes of the record, counted against the byte bound."""
        ...

    @property
    def retry(self) -> bool:
        """Whether this is a row that waited for its member (``sync/deferral.py``), tried again."""
        ...

    def apply(self) -> Outcome:
        """Write the row with its writer (``Writer.apply``, on a worker thread)."""
        ...

    def preparer(self) -> Preparer:
        """How another row of its object is prepared again after waiting: by this row's writer."""
        ...


#: A row that waited for its member, with its ticket and size, prepared again by its object's writer:
#: a :class:`Work` to queue (``retry`` set), or the outcome that settles it without a request.
Preparer = Callable[[Row, int, int], "Work | Outcome"]


@dataclass(frozen=True)
class Task(Generic[P]):
    """A row its writer prepared, with that writer and what settling it needs (a :class:`Work`)."""

    prepared: Prepared[P]
    writer: Writer[P]
    ticket: int
    size: int  # serialized bytes of the record, counted against the in-flight byte budget
    retry: bool = False  # a row that waited for its member (sync/deferral.py), tried again

    @property
    def row(self) -> Row:
        """The row as read from the input."""
        return self.prepared.row

    @property
    def member(self) -> str:
        """The member key (``Prepared.member``)."""
        return self.prepared.member

    def apply(self) -> Outcome:
        """``writer.apply(prepared)``: the one place a payload meets its writer."""
        return self.writer.apply(self.prepared)

    def preparer(self) -> Preparer:
        """Prepares rows again with this task's writer (the closure keeps the writer, not this row)."""
        writer = self.writer
        return lambda row, ticket, size: prepare_again(writer, row, ticket, size)


def prepare_again(writer: Writer[P], row: Row, ticket: int, size: int) -> Task[P] | Outcome:
    """A row that waited for its member, prepared again by ``writer`` (see :data:`Preparer`)."""
    prepared = writer.prepare(row)
    if isinstance(prepared, Outcome):
        return prepared
    return Task(prepared, writer, ticket, size, retry=True)


class MemberQueues:
    """The rows inside the pipeline (queued, waiting behind their member, or in flight) and their bounds.

    Rows are bounded by count (``max_pending``) and bytes (``max_pending_bytes``): the reader waits
    while :meth:`full`, which back-pressures the source. Caller holds the pipeline's lock.
    """

    def __init__(self, max_pending: int, max_pending_bytes: int) -> None:
        self.max_pending = max_pending
        self.max_pending_bytes = max_pending_bytes
        self.pending = 0
        self.pending_bytes = 0
        self.peak_pending = 0
        # A member with a row in flight has an entry here, holding the rows waiting behind that one.
        self._waiting: dict[str, deque[Work]] = {}

    def full(self, size: int) -> bool:
        """Whether a row of ``size`` bytes must wait for room."""
        # One row always fits when nothing is pending, however large, so a big row cannot deadlock.
        if self.pending >= self.max_pending:
            return True
        return self.pending > 0 and self.pending_bytes + size > self.max_pending_bytes

    def reader_may_go_on(self, size: int) -> bool:
        """Whether a reader that waited for room goes on with a row of ``size`` bytes (0: any row).

        Not at the first free place but once a batch of them (an eighth of ``max_pending``) is free: a
        reader woken for every row that leaves takes one row and waits again, a thread switch per row.
        """
        if self.pending > self.max_pending - max(1, self.max_pending // 8):
            return False
        return not self.full(size)

    @property
    def room(self) -> int:
        """Rows that fit before ``max_pending`` (may be 0 or less: rows that waited come back beyond it)."""
        return self.max_pending - self.pending

    def admit(self, work: Work) -> None:
        """Count a row in (it entered, or came back after waiting for its member)."""
        self.pending += 1
        self.pending_bytes += work.size
        self.peak_pending = max(self.peak_pending, self.pending)

    def busy(self, member: str) -> bool:
        """Whether a row of ``member`` is in flight (and maybe others behind it)."""
        return member in self._waiting

    def enqueue(self, work: Work) -> bool:
        """Queue ``work`` behind its member's row in flight; True when there is none (run it now)."""
        waiting = self._waiting.get(work.member)
        if waiting is not None:
            waiting.append(work)
            return False
        self._waiting[work.member] = deque()
        return True

    def put_first(self, member: str, works: Sequence[Work]) -> None:
        """Run ``works`` (in this order) right after ``member``'s row in flight, before its later rows."""
        self._waiting[member].extendleft(reversed(works))

    def leave(self, work: Work) -> None:
        """Count a row out (it settled, or went to wait for its member)."""
        self.pending -= 1
        self.pending_bytes -= work.size

    def next_of(self, member: str) -> Work | None:
        """The member's next row, run by the worker that finished the previous one; None ends its queue."""
        waiting = self._waiting[member]
        if waiting:
            return waiting.popleft()
        del self._waiting[member]
        return None


__all__ = ["MemberQueues", "Preparer", "Task", "Work", "prepare_again"]
