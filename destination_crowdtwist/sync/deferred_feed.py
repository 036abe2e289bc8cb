"""Rows that wait for their member, on their way out of the pipeline and back in.

``sync/deferral.py`` says which rows wait (:class:`MemberWait`) and keeps them (:class:`DeferredRows`);
this module moves them: a row answered "not found" leaves the in-flight bounds for the store, unsettled
(its ticket stays outstanding, so later states wait, and the fail-fast check never sees it). It comes
back, prepared again by its object's writer,

* right after an accepted ``user_profile`` row of its member: at the head of that member's queue, as
  many as fit the bounds (at least one), the next ones as those settle (so a member with a million
  waiting rows does not load them all at once), or
* once no member can come any more (every member stream ended and its rows are written): in batches
  that fit the bounds; its outcome then is final.

Every method runs under the pipeline's lock (``sync/pipeline.py``), which settles and runs the rows:
a row prepared again into an outcome goes to its ``settle`` (the pipeline's one settle path), a row to
run to its ``start`` (the worker pool). When the store fails (or a writer's ``prepare`` raises), the
error goes to ``fail``, which stops the sync: the rows taken stay unsettled, so none is dropped and no
state past them is echoed.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator

from destination_crowdtwist.sync.checkpoint import StreamKey
from destination_crowdtwist.sync.deferral import Deferred, DeferredRows, MemberWait, creates_members
from destination_crowdtwist.sync.member_queues import MemberQueues, Preparer, Work
from destination_crowdtwist.writers.base import Outcome, Row
from destination_crowdtwist.writers.objects import USER_PROFILE

logger = logging.getLogger("airbyte")


class DeferredFeed:
    """Takes rows that wait for their member out of ``queues`` and feeds them back. See the module docstring."""

    def __init__(
        self,
        member_wait: MemberWait,
        queues: MemberQueues,
        *,
        settle: Callable[[Row, int, Outcome], None],
        start: Callable[[Work], None],
        fail: Callable[[BaseException], None],
    ) -> None:
        self._member_wait = member_wait
        self._store = DeferredRows()
        self._queues = queues
        self._settle = settle
        self._start = start
        self._fail = fail
        # How each object's waiting rows are prepared again: by the writer of the first one that waited.
        self._preparers: dict[str, Preparer] = {}
        self._creators_pending = 0  # rows that may create a member, received and not finished yet
        self._waited = {"deferred": 0, "written": 0, "rejected": 0}

    # -- a row's way through the pipeline ------------------------------------------------------------

    def entered(self, row: Row) -> None:
        """A row entered the queues: one that may create a member keeps its member's rows waiting."""
        if creates_members(row.stream):
            self._creators_pending += 1

    def holds_rows(self) -> bool:
        """Whether any row is waiting for its member now."""
        return bool(len(self._store))

    def waits(self, work: Work, outcome: Outcome) -> bool:
        """``work`` was applied: whether its ``outcome`` is to wait for the member instead of settling."""
        row = work.row
        if creates_members(row.stream):
            self._creators_pending -= 1
        return self._member_wait.waits(row, outcome, creators_pending=self._creators_pending)

    def defer(self, work: Work) -> None:
        """Keep a row answered "not found" until its member may exist (it leaves the bounds: the caller)."""
        row = work.row
        with self._or_stop():
            self._store.add(row, work.ticket, work.member, work.size)
            if row.stream.object_name not in self._preparers:
                self._preparers[row.stream.object_name] = work.preparer()
            if not work.retry:
                if not self._waited["deferred"]:
                    logger.info(
                        f"Row {row.seq} of stream {row.stream.label}: its member does not exist yet, and member "
                        "rows of this sync are still to come, so it waits and is tried again after them (so do "
                        "later such rows). States after a waiting row are echoed once it is settled."
                    )
                self._waited["deferred"] += 1

    def settled(self, work: Work, outcome: Outcome) -> None:
        """``work`` settled with ``outcome`` (right after the settle: counted even if the sync then stops)."""
        if work.retry:
            self._count(outcome)

    def done(self, work: Work, outcome: Outcome) -> None:
        """``work`` settled and left the bounds: its member's waiting rows run next if it created the member.

        They run, too, when ``work`` was itself a row that waited: its member's waiting rows are being
        run in batches, and the next batch follows the last one.
        """
        if (outcome.accepted and work.row.stream.object_name == USER_PROFILE) or work.retry:
            if not len(self._store):
                # Nothing waits (what has_member would find, without its two guards): most accepted rows.
                return
            with self._or_stop():
                self._requeue_member(work.member)

    # -- rows coming back ----------------------------------------------------------------------------

    def stream_ended(self, stream: StreamKey | None) -> None:
        """A stream (None: every stream, the end of the input) sends no more rows; :meth:`feed` follows."""
        if stream is None:
            self._member_wait.input_ended()
        else:
            self._member_wait.stream_ended(stream)

    def feed(self, *, stopping: bool) -> None:
        """Once no member can come any more: hand waiting rows to the workers, as many as fit.

        ``stopping``: the sync is stopping (a fatal error, shutdown), so no row is taken.
        """
        if self._member_wait.members_may_come:
            return
        if self._creators_pending:
            return  # a member row still to be written may create the member: wait for it
        if stopping or not len(self._store):
            return
        with self._or_stop():
            for waiting in self._store.take(self._queues.room):
                work = self._prepare(waiting)
                if work is not None and self._queues.enqueue(work):
                    self._start(work)  # else its member has a row in flight: it runs after that one

    def _requeue_member(self, member: str) -> None:
        """A member's row was accepted: its waiting rows run next, before its later rows, in input order."""
        if not self._store.has_member(member):
            return
        room = max(1, self._queues.room)
        works = [w for w in map(self._prepare, self._store.take_member(member, room)) if w is not None]
        self._queues.put_first(member, works)

    def _prepare(self, waiting: Deferred) -> Work | None:
        """A waiting row prepared again and counted in; None when it settled without a request."""
        row = waiting.row
        prepared = self._preparers[row.stream.object_name](row, waiting.ticket, waiting.size)
        if isinstance(prepared, Outcome):
            self._settle(row, waiting.ticket, prepared)
            self._count(prepared)
            return None
        self._queues.admit(prepared)
        return prepared

    @contextlib.contextmanager
    def _or_stop(self) -> Iterator[None]:
        """A row that cannot wait or come back is not dropped: the error stops the sync (``fail``)."""
        try:
            yield
        except BaseException as exc:  # noqa: BLE001 - any failure here stops the sync, never strands a row
            self._fail(exc)

    def _count(self, outcome: Outcome) -> None:
        self._waited["written" if outcome.accepted else "rejected"] += 1

    def close(self) -> None:
        """Drop the store (rows still in it stay unsettled) and say what became of the rows that waited."""
        self._store.close()
        waited = self._waited
        if waited["deferred"]:
            logger.info(
                f"{waited['deferred']} rows arrived before their member and waited for the member streams: "
                f"{waited['written']} were then written, {waited['rejected']} rejected as not found."
            )


__all__ = ["DeferredFeed"]
