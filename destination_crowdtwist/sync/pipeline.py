"""The write engine: rows in, each outcome settled once, states released when every row before them settled.

CrowdTwist has no bulk API, so throughput comes from many single-row requests in flight at once, on
as many worker threads as the flow control wants (``sync/pool.py``). The pipeline keeps three promises:

* **Bounded memory** — at most ``max_pending`` rows (and ``max_pending_bytes``) are inside the pipeline;
  the reader blocks when it is full, which back-pressures the source (``sync/member_queues.py``).
* **Per-member order** — rows with the same member key are applied in input order and never two at
  once; a member's next row is run by the worker that finished the previous one.
* **Checkpoints** — every row is registered with a :class:`CheckpointTracker` before it is dispatched
  and settled after its outcome is counted, so a state is released only when every record before it
  settled, whatever order rows finish in.

Settling (:meth:`Pipeline._settle_locked`, the one place a row's outcome is counted) holds the lock, so
nothing there waits for the network: reject sinks only buffer (``rejects/sink.py``), and a thread waits
for a sink that fell behind only after its settle, outside the lock (``SyncReport.wait_for_room``).

A row answered "not found" while a later row may still create its member waits instead of settling,
on disk and outside the bounds: ``sync/deferral.py`` says which rows and keeps them,
``sync/deferred_feed.py`` takes them out and brings them back.

A sync-stopping error makes workers stop taking new rows; rows in flight finish and settle, so the
states they complete can still be echoed. Rows only waiting (a 429's Retry-After, pacing) stop waiting
at once (``on_stop``) and stay unsettled; at shutdown the requests still on the wire are cut (``abort``).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from destination_crowdtwist.records.limits import RecordLimits, check_record
from destination_crowdtwist.records.rejection import Rejection
from destination_crowdtwist.sync.checkpoint import CheckpointTracker, ReleasedState, StreamKey
from destination_crowdtwist.sync.deferral import MemberWait
from destination_crowdtwist.sync.deferred_feed import DeferredFeed
from destination_crowdtwist.sync.member_queues import MemberQueues, Task, Work
from destination_crowdtwist.sync.pool import WorkerPool, WorkersWanted
from destination_crowdtwist.sync.progress import FlowStatus, Progress
from destination_crowdtwist.sync.report import SyncReport
from destination_crowdtwist.writers.base import Outcome, Prepared, Row, StopBeforeRow, Writer

#: How a row that was refused before any parsing is named in logs (its identifier was never read).
NOT_PARSED = "(not parsed)"

P = TypeVar("P")


class Flow(WorkersWanted, FlowStatus, Protocol):
    """What the pipeline asks the API layer's flow control (``api.flow.FlowControl``): how many workers
    (``sync/pool.py``) and the words of the progress line (``sync/progress.py``).
    """


class Pipeline:
    """Runs rows through their writers on up to ``concurrency`` threads (as many as ``flow`` wants, all
    of them without one). See the module docstring.
    """

    def __init__(
        self,
        report: SyncReport,
        *,
        concurrency: int,
        max_pending: int | None = None,
        flow: Flow | None = None,
        progress_interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        limits: RecordLimits | None = None,
        max_pending_bytes: int = 64 * 1024 * 1024,
        on_stop: Callable[[], None] | None = None,
        abort: Callable[[], None] | None = None,
    ) -> None:
        self._report = report
        self._limits = limits or RecordLimits()
        concurrency = max(1, concurrency)
        # Rows are bounded by count AND bytes: 1,000 rows of 500 KB would otherwise hold 500 MB. The count
        # keeps every worker busy while some members have rows waiting behind them.
        self._queues = MemberQueues(max_pending or max(64, 8 * concurrency), max_pending_bytes)
        lock = threading.RLock()
        # The row path takes the lock itself (``with self._lock``): the same lock as the conditions',
        # without Condition.__enter__'s Python frame on every row.
        self._lock = lock
        self._cond = threading.Condition(lock)
        # The reader waiting for room has its own condition on the same lock, woken only once a batch of
        # places is free (MemberQueues.reader_may_go_on): woken for every settled row, it would take one
        # row, wait again, and pay a thread switch per row.
        self._room = threading.Condition(lock)
        self._reader_waits = False
        self._tracker: CheckpointTracker[Any] = CheckpointTracker()
        # Worker threads running a row (their idents). Joined without the lock: see _run.
        self._running: set[int] = set()
        self._fatal: BaseException | None = None
        self._closing = False
        self._clock = clock
        self._on_stop = on_stop
        self._abort = abort
        # A reject sink whose uploads fell behind holds a worker after its row (never the settle of the
        # others, which only buffer their rejected rows).
        self._pool = WorkerPool(self._run, ceiling=concurrency, flow=flow, between=report.wait_for_room)
        self._progress = Progress(
            self._rows, lambda: report.rejected, flow=flow, interval=progress_interval, clock=clock
        )
        # Rows waiting for their member (sync/deferral.py): none until wait_for_members() is called.
        self._feed: DeferredFeed | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker threads and the progress logger."""
        self._progress.start()
        self._pool.grow()

    def shutdown(self) -> None:
        """Stop the workers (after the rows they are running) and the progress logger.

        Rows still queued are abandoned (they stay unsettled, so no state after them is echoed):
        this only happens when the sync is stopping early.
        """
        self._progress.stop()
        with self._cond:
            self._closing = True
            self._pool.close()
            busy = bool(self._running)
        if busy and self._abort is not None:
            # Rows still running now are abandoned (SIGTERM's grace is over): cut their requests, so
            # no worker is still running (and logging) when the process exits.
            self._abort()
        self._pool.join()
        if self._feed is not None:
            self._feed.close()

    @property
    def workers(self) -> int:
        """Worker threads started so far."""
        return self._pool.workers

    @property
    def peak_pending(self) -> int:
        """The most rows the pipeline held at once so far."""
        return self._queues.peak_pending

    # -- main-thread API -----------------------------------------------------------------------

    def submit(self, row: Row, writer: Writer[P]) -> None:
        """Prepare a row with its writer, register it for checkpoints, and dispatch it.

        A row its writer settles without a request (a rejection found before any request, or a row
        ``Writer.settle_at_once`` settles) is settled here, at once; the others wait for a worker,
        behind earlier rows of their member.
        Blocks while ``max_pending`` rows are inside the pipeline.
        """
        check = check_record(row.data, self._limits)
        if check.rejection is not None:
            stored = dataclasses.replace(row, data=check.stored_data)
            self._enter(stored, Outcome.rejected(NOT_PARSED, check.rejection), None, 0)
            return
        try:
            prepared = writer.prepare(row)
        except StopBeforeRow:
            # The rows before this one are not to blame: they finish, and the caller then echoes
            # their states before the error stops the sync.
            self.wait_settled()
            raise
        self._enter(row, prepared, writer, check.size)

    def reject(self, row: Row, rejection: Rejection) -> None:
        """Settle a row that no writer can take (e.g. an input line that is not a usable RECORD)."""
        self._enter(row, Outcome.rejected(NOT_PARSED, rejection), None, 0)

    def _enter(self, row: Row, prepared: Prepared[P] | Outcome, writer: Writer[P] | None, size: int) -> None:
        # A reject sink whose uploads fell behind holds the reader back here, outside every lock.
        self._report.wait_for_room()
        with self._lock:
            at_once = None if writer is None or isinstance(prepared, Outcome) else self._at_once(prepared, writer)
            # A row settled at once takes no room in the queues, so it never waits for some.
            if at_once is None and self._queues.full(size):
                self._wait_for_room_locked(size)
            self._raise_if_fatal()
            ticket = self._tracker.add_record()
            settled = prepared if isinstance(prepared, Outcome) else at_once
            if settled is not None:
                self._settle_locked(row, ticket, settled)
                self._raise_if_fatal()
                return
            assert writer is not None
            assert not isinstance(prepared, Outcome)
            task = Task(prepared, writer, ticket, size)
            if self._feed is not None:
                self._feed.entered(row)
            self._queues.admit(task)
            if not self._queues.enqueue(task):
                return  # its member has a row in flight; run after it
        self._pool.put(task)
        self._pool.grow()

    def _wait_for_room_locked(self, size: int) -> None:
        """The reader waits until a batch of rows left (or the sync stops). Caller holds the lock."""
        self._reader_waits = True
        try:
            while not self._queues.reader_may_go_on(size) and self._fatal is None:
                # Every worker may be pausing before a retry (429s): more workers are then wanted,
                # and no finishing row would start them.
                if not self._room.wait(timeout=0.25):
                    self._pool.grow()
        finally:
            self._reader_waits = False

    def _at_once(self, prepared: Prepared[P], writer: Writer[P]) -> Outcome | None:
        """The row's outcome when its writer settles it here, without a worker (``Writer.settle_at_once``).

        Asked only while none of the member's rows is queued, in flight or waiting for its member (and
        no row waits at all: a settled member row may release waiting ones, which only the workers'
        path does), so what the writer reads of the member is what a worker would read; under the lock,
        so no worker can start a row of the member meanwhile. A re-sync's unchanged rows are most of its
        rows, and handing each to a thread and back cost more CPU than deciding it.
        """
        if self._fatal is not None or self._queues.busy(prepared.member):
            return None
        if self._feed is not None and self._feed.holds_rows():
            return None
        return writer.settle_at_once(prepared)

    def wait_for_members(self, member_wait: MemberWait) -> None:
        """Let rows answered "not found" wait for members later rows may create (before :meth:`start`)."""
        self._feed = DeferredFeed(
            member_wait, self._queues, settle=self._settle_locked, start=self._pool.put, fail=self._fail_locked
        )

    def stream_ended(self, stream: StreamKey | None) -> None:
        """A stream (None: every stream, the end of the input) sends no more rows.

        Once no member stream is left, the rows waiting for their member are tried a last time.
        """
        feed = self._feed
        if feed is None:
            return
        with self._cond:
            feed.stream_ended(stream)
            self._feed_locked()
        self._pool.grow()

    def add_state(self, state: Any, stream: StreamKey | None) -> None:
        """Register a state message received now (None stream = GLOBAL / LEGACY)."""
        with self._cond:
            self._tracker.add_state(state, stream)

    def release(self) -> list[ReleasedState[Any]]:
        """States that may be echoed now, in order, with exact counts (main thread)."""
        if not self._tracker.pending_states:
            # Read without the lock: only the main thread adds states (add_state) and pops them (here).
            # Asked after every message, and most messages are records.
            return []
        with self._cond:
            return self._tracker.release()

    def wait_settled(self, timeout: float | None = None) -> bool:
        """Block until every row submitted so far has settled (or a fatal error stopped the sync).

        With ``timeout``, return False when rows are still outstanding by then (the caller echoes
        the states that became safe meanwhile, and waits again).
        """
        deadline = None if timeout is None else self._clock() + timeout
        with self._cond:
            while self._tracker.outstanding and self._fatal is None:
                left = None if deadline is None else deadline - self._clock()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
            self._raise_if_fatal()
            return True

    def stop(self, error: BaseException) -> None:
        """Stop the sync from outside (e.g. SIGTERM): workers take no new row; rows in flight finish."""
        with self._cond:
            self._fail_locked(error)

    def wait_idle_after_fatal(self, timeout: float | None = None) -> None:
        """After a fatal error, wait for the rows already in flight to finish and settle.

        ``timeout`` bounds the wait (a terminating process has seconds, not minutes); rows still in
        flight then stay unsettled, so no state after them is echoed.
        """
        deadline = None if timeout is None else self._clock() + timeout
        with self._cond:
            while self._running:
                left = 1.0 if deadline is None else min(1.0, deadline - self._clock())
                if left <= 0:
                    return
                self._cond.wait(timeout=left)

    @property
    def fatal(self) -> BaseException | None:
        """The sync-stopping error, if one happened."""
        with self._lock:
            return self._fatal

    def _raise_if_fatal(self) -> None:
        if self._fatal is not None:
            raise self._fatal

    # -- settling (the one place a row's outcome is counted) ------------------------------------

    def _settle_locked(self, row: Row, ticket: int, outcome: Outcome) -> None:
        """Count a row's outcome and settle it. Caller holds ``self._cond``.

        If the outcome cannot be recorded (e.g. the rejected-records file is on a full disk), the
        row is NOT settled and the error stops the sync: a rejected row counted but stored nowhere
        would be lost, and a row never settled would hold every later state back for ever.
        """
        try:
            self._report.record(row, outcome)
        except BaseException as exc:  # noqa: BLE001 - any failure to record stops the sync, never strands it
            self._fail_locked(exc)
            return
        self._tracker.settle(ticket, row.stream.key, accepted=outcome.accepted)
        stop = self._report.systematic_rejection()
        if stop is not None:
            self._fail_locked(stop)
        self._cond.notify_all()

    def _fail_locked(self, exc: BaseException) -> None:
        if self._fatal is None:
            self._fatal = exc
            if self._on_stop is not None:
                # Rows waiting out a 429 (or pacing) would go on for up to minutes: end their waits now.
                # They stay unsettled, so no state after them is echoed.
                self._on_stop()
        self._cond.notify_all()
        self._room.notify_all()

    # -- workers -------------------------------------------------------------------------------

    def _run(self, work: Work) -> Work | None:
        """Apply one row and settle it; returns its member's next row, if any (run by this worker)."""
        # One turn of the lock per row, not two: at zero latency some twenty workers contend for it. The
        # worker joins ``_running`` before it reads ``_fatal`` / ``_closing``, and shutdown() (or a fatal
        # error) writes those before it reads ``_running``, so either this worker sees the stop or the
        # stopping thread sees this worker (set.add and attribute reads are atomic under the GIL).
        me = threading.get_ident()
        self._running.add(me)
        if self._fatal is not None or self._closing:
            # Stop taking new rows: they stay unsettled, so no later state is echoed.
            with self._cond:
                self._running.discard(me)
                self._cond.notify_all()
            return None
        try:
            outcome: Outcome | None = work.apply()
        except BaseException as exc:  # noqa: BLE001 - every error must stop the sync, classified later
            outcome = None
            error: BaseException = exc
        with self._cond:
            self._running.discard(me)
            if outcome is None:
                self._fail_locked(error)
                return None
            waits = self._defer_if_waiting_locked(work, outcome)
            if not waits:
                self._settle_locked(work.row, work.ticket, outcome)
                if self._feed is not None:
                    self._feed.settled(work, outcome)
            if self._fatal is not None:
                return None
            self._queues.leave(work)
            if self._reader_waits and self._queues.reader_may_go_on(0):
                self._room.notify()
            if self._feed is not None and not waits:
                # Its member exists now, or its waiting rows are being run in batches: they go first.
                self._feed.done(work, outcome)
            nxt = self._queues.next_of(work.member)
            self._feed_locked()
            return nxt

    # -- rows waiting for their member (sync/deferred_feed.py) ----------------------------------------

    def _defer_if_waiting_locked(self, work: Work, outcome: Outcome) -> bool:
        """Whether the row is to wait for its member; if so it went to the store, unsettled."""
        feed = self._feed
        if feed is None or not feed.waits(work, outcome):
            return False
        feed.defer(work)
        return True

    def _feed_locked(self) -> None:
        """Once no member can come any more, hand waiting rows to the workers (as many as fit)."""
        if self._feed is not None:
            self._feed.feed(stopping=self._fatal is not None or self._closing)

    # -- progress ------------------------------------------------------------------------------

    def progress_line(self) -> str:
        """One line of progress in a user's words (``sync/progress.py``)."""
        return self._progress.line()

    def elapsed_seconds(self) -> float:
        """Seconds since the pipeline started (the sync's duration, for the summary)."""
        return self._progress.elapsed()

    def _rows(self) -> tuple[int, int]:
        """``(rows settled, rows read and not done yet)`` for the progress line."""
        with self._cond:
            return self._tracker.records_settled, self._queues.pending
