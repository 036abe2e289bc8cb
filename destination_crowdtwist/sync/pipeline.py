"""The write engine: a bounded worker pool with per-member ordering and checkpoint release.

CrowdTwist has no bulk API, so throughput comes from many single-row requests in flight at once.
The pipeline keeps three promises while doing that:

* **Bounded memory** — at most ``max_pending`` rows are inside the pipeline (queued, waiting for
  their member, or in flight); the reader blocks when it is full, which back-pressures the source.
  (Rows waiting for a member *to be created*, below, are kept on disk, outside that bound.)
* **Per-member order** — rows with the same member key are applied in input order and never two
  at once (updates must not overtake each other; a credit must not race its member's create). A
  member's next row is run by the worker that finished the previous one.
* **Checkpoints** — every row is registered with a :class:`CheckpointTracker` before it is
  dispatched and settled after its outcome is counted, so a state is released only when every
  record before it settled, whatever order rows finish in.

Settling holds the pipeline's lock, so nothing there waits for the network: reject sinks only buffer
(``rejects/sink.py``); their uploads run on their own thread, and a settling thread waits for a sink
that fell behind only after its settle, outside the lock (``SyncReport.wait_for_room``).

A row answered "not found" while its member may still be created by a later row of the sync (a
credit stream read before the member stream) waits instead of settling (``sync/deferral.py``): it
runs again right after its member's row is accepted, or once the member streams have ended.

A sync-stopping error (bad credentials mid-sync, retries exhausted) makes workers stop taking new
rows; rows already in flight finish and settle, so the states they complete can still be echoed.
Rows that are only waiting (a 429's Retry-After, pacing) stop waiting at once (``on_stop``) and stay
unsettled; at shutdown the requests still on the wire are cut (``abort``).
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from destination_crowdtwist.records.limits import RecordLimits, check_record
from destination_crowdtwist.records.rejection import Rejection
from destination_crowdtwist.sync.checkpoint import CheckpointTracker, ReleasedState, StreamKey
from destination_crowdtwist.sync.deferral import Deferred, DeferredRows, MemberWait, creates_members
from destination_crowdtwist.sync.report import SyncReport
from destination_crowdtwist.writers.base import Outcome, Prepared, Row, StopBeforeRow, Writer
from destination_crowdtwist.writers.objects import USER_PROFILE

logger = logging.getLogger("airbyte")

_STOP = object()
#: How long shutdown waits for the workers in all (their waits end and their requests are cut first).
SHUTDOWN_JOIN_SECONDS = 10.0
#: How a row that was refused before any parsing is named in logs (its identifier was never read).
NOT_PARSED = "(not parsed)"


class Flow(Protocol):
    """What the pipeline asks the API layer's flow control (``api.flow.FlowControl``)."""

    def workers_wanted(self) -> int:
        """Worker threads that keep the requests allowed in flight busy."""

    def status_line(self) -> str:
        """The flow control in words (requests at once, round trip, pace), for the progress line."""

    def request_totals(self) -> tuple[int, int]:
        """``(requests sent, 429 answers)`` so far."""


@dataclass(frozen=True)
class _Task:
    """A prepared row on its way to a worker, with what the pipeline needs to settle it."""

    prepared: Prepared[Any]
    writer: Writer
    ticket: int
    size: int  # serialized bytes of the record, counted against the in-flight byte budget
    retry: bool = False  # a row that waited for its member (sync/deferral.py), tried again


class Pipeline:
    """Runs rows through their writers on up to ``concurrency`` threads. See the module docstring.

    ``flow.workers_wanted()`` (the places of the client's in-flight gate, plus its requests pausing before
    a retry) sizes the pool instead of starting ``concurrency`` threads at once: at a short round trip
    a couple of dozen requests use the whole budget, and threads queued at the gate would only cost
    CPU (two context switches per request) to hand places over. The pool grows when more are wanted
    and a worker leaves, between rows, when there are more than wanted.
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
        # Rows waiting for their member (sync/deferral.py): none until wait_for_members() is called.
        self._member_wait: MemberWait | None = None
        self._deferred: DeferredRows | None = None
        self._writers_by_object: dict[str, Writer] = {}
        self._creators_pending = 0  # rows that may create a member, received and not finished yet
        self._waited = {"deferred": 0, "written": 0, "rejected": 0}
        self._limits = limits or RecordLimits()
        # Rows are bounded by count AND bytes: 1,000 rows of 500 KB would otherwise hold 500 MB.
        self.max_pending_bytes = max_pending_bytes
        self._pending_bytes = 0
        self._concurrency = max(1, concurrency)
        # Enough rows to keep every worker busy while some members have rows waiting behind them.
        self.max_pending = max_pending or max(64, 8 * self._concurrency)
        self._tasks: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._cond = threading.Condition()
        self._tracker: CheckpointTracker[Any] = CheckpointTracker()
        self._waiting: dict[str, deque[_Task]] = {}
        self._pending = 0
        self._busy = 0
        self._fatal: BaseException | None = None
        self._closing = False
        self._threads: list[threading.Thread] = []
        self._workers_lock = threading.Lock()
        self._flow = flow
        self._progress_interval = progress_interval
        self._clock = clock
        self._started_at = clock()
        self._stop_progress = threading.Event()
        self._on_stop = on_stop
        self._abort = abort
        self.peak_pending = 0

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker threads and the progress logger."""
        self._started_at = self._clock()
        self._grow()
        if self._progress_interval > 0:
            t = threading.Thread(target=self._progress_loop, name="crowdtwist-progress", daemon=True)
            t.start()

    def shutdown(self) -> None:
        """Stop the workers (after the rows they are running) and the progress logger.

        Rows still queued are abandoned (they stay unsettled, so no state after them is echoed):
        this only happens when the sync is stopping early.
        """
        self._stop_progress.set()
        with self._cond:
            self._closing = True
            busy = self._busy
        if busy and self._abort is not None:
            # Rows still running now are abandoned (SIGTERM's grace is over): cut their requests, so
            # no worker is still running (and logging) when the process exits.
            self._abort()
        with self._workers_lock:  # no worker starts after this
            threads = list(self._threads)
        for _ in threads:
            self._tasks.put(_STOP)
        deadline = time.monotonic() + SHUTDOWN_JOIN_SECONDS
        for t in threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))
        with self._workers_lock:
            self._threads.clear()
        if self._deferred is not None:
            self._deferred.close()
        waited = self._waited
        if waited["deferred"]:
            logger.info(
                f"{waited['deferred']} rows arrived before their member and waited for the member streams: "
                f"{waited['written']} were then written, {waited['rejected']} rejected as not found."
            )

    def _grow(self) -> None:
        """Start workers up to the wanted number (all ``concurrency`` of them without a ``flow``)."""
        if len(self._threads) >= self._concurrency:
            return
        want = self._concurrency
        if self._flow is not None:
            want = min(want, max(1, self._flow.workers_wanted()))
            if len(self._threads) >= want:
                return
        with self._workers_lock:
            if self._closing:
                return
            while len(self._threads) < want:
                t = threading.Thread(target=self._work, name=f"crowdtwist-worker-{len(self._threads)}", daemon=True)
                t.start()
                self._threads.append(t)

    @property
    def workers(self) -> int:
        """Worker threads started so far."""
        with self._workers_lock:
            return len(self._threads)

    # -- main-thread API -----------------------------------------------------------------------

    def submit(self, row: Row, writer: Writer) -> None:
        """Prepare a row with its writer, register it for checkpoints, and dispatch it.

        A row its writer settles without a request (a rejection found before any request) is
        settled here, at once; the others wait for a worker, behind earlier rows of their member.
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

    def _enter(self, row: Row, prepared: Prepared[Any] | Outcome, writer: Writer | None, size: int) -> None:
        # A reject sink whose uploads fell behind holds the reader back here, outside every lock.
        self._report.wait_for_room()
        with self._cond:
            while self._full(size) and self._fatal is None:
                # Every worker may be pausing before a retry (429s): more workers are then wanted,
                # and no finishing row would start them.
                if not self._cond.wait(timeout=0.25):
                    self._grow()
            self._raise_if_fatal()
            ticket = self._tracker.add_record()
            if isinstance(prepared, Outcome):
                self._settle_locked(row, ticket, prepared)
                self._raise_if_fatal()
                return
            assert writer is not None
            task = _Task(prepared, writer, ticket, size)
            if creates_members(row.stream):
                self._creators_pending += 1
            self._pending += 1
            self._pending_bytes += size
            self.peak_pending = max(self.peak_pending, self._pending)
            waiting = self._waiting.get(prepared.member)
            if waiting is not None:
                waiting.append(task)  # its member has a row in flight; run after it
                return
            self._waiting[prepared.member] = deque()
        self._tasks.put(task)
        self._grow()

    def _full(self, size: int) -> bool:
        # One row always fits when nothing is pending, however large, so a big row cannot deadlock.
        if self._pending >= self.max_pending:
            return True
        return self._pending > 0 and self._pending_bytes + size > self.max_pending_bytes

    def wait_for_members(self, member_wait: MemberWait) -> None:
        """Let rows answered "not found" wait for members later rows may create (before :meth:`start`)."""
        self._member_wait = member_wait
        self._deferred = DeferredRows()

    def stream_ended(self, stream: StreamKey | None) -> None:
        """A stream (None: every stream, the end of the input) sends no more rows.

        Once no member stream is left, the rows waiting for their member are tried a last time.
        """
        if self._member_wait is None:
            return
        with self._cond:
            if stream is None:
                self._member_wait.input_ended()
            else:
                self._member_wait.stream_ended(stream)
            self._feed_deferred_locked()
        self._grow()

    def add_state(self, state: Any, stream: StreamKey | None) -> None:
        """Register a state message received now (None stream = GLOBAL / LEGACY)."""
        with self._cond:
            self._tracker.add_state(state, stream)

    def release(self) -> list[ReleasedState[Any]]:
        """States that may be echoed now, in order, with exact counts."""
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
            while self._busy:
                left = 1.0 if deadline is None else min(1.0, deadline - self._clock())
                if left <= 0:
                    return
                self._cond.wait(timeout=left)

    @property
    def fatal(self) -> BaseException | None:
        """The sync-stopping error, if one happened."""
        with self._cond:
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

    # -- workers -------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            item = self._tasks.get()
            if item is _STOP:
                return
            task: _Task | None = item
            while task is not None:
                task = self._run(task)
                # After the settle, outside the lock: a reject sink whose uploads fell behind holds
                # this worker (never the settle of the others, which only buffer their rejected rows).
                self._report.wait_for_room()
                # The in-flight target may have risen with the answers of this row's requests.
                self._grow()
            if self._surplus():
                return

    def _surplus(self) -> bool:
        """Leave the pool (between rows) when it is larger than wanted, e.g. after a 429 or a spell of
        slow answers: a thread beyond the client's in-flight places would only wait at its gate.
        """
        if self._flow is None:
            return False
        want = max(1, self._flow.workers_wanted())
        if len(self._threads) <= want:
            return False
        with self._workers_lock:
            if self._closing or len(self._threads) <= want:
                return False
            self._threads.remove(threading.current_thread())
            return True

    def _run(self, task: _Task) -> _Task | None:
        """Apply one row and settle it; returns its member's next row, if any (run by this worker)."""
        with self._cond:
            if self._fatal is not None or self._closing:
                # Stop taking new rows: they stay unsettled, so no later state is echoed.
                return None
            self._busy += 1
        try:
            outcome: Outcome | None = task.writer.apply(task.prepared)
        except BaseException as exc:  # noqa: BLE001 - every error must stop the sync, classified later
            outcome = None
            error: BaseException = exc
        with self._cond:
            self._busy -= 1
            if outcome is None:
                self._fail_locked(error)
                return None
            row, member = task.prepared.row, task.prepared.member
            if creates_members(row.stream):
                self._creators_pending -= 1
            wait = self._member_wait
            waits = wait is not None and wait.waits(row, outcome, creators_pending=self._creators_pending)
            if waits:
                self._defer_locked(task)
            else:
                self._settle_locked(row, task.ticket, outcome)
                if task.retry:
                    self._waited["written" if outcome.accepted else "rejected"] += 1
            if self._fatal is not None:
                return None
            self._pending -= 1
            self._pending_bytes -= task.size
            # The member exists now (its row was accepted), or its waiting rows are being run in batches
            # (a retried row that settled): its next waiting rows go first, before its later rows.
            if not waits and ((outcome.accepted and row.stream.object_name == USER_PROFILE) or task.retry):
                self._requeue_member_locked(member)
            waiting = self._waiting[member]
            nxt = waiting.popleft() if waiting else None
            if nxt is None:
                del self._waiting[member]
            self._feed_deferred_locked()
            return nxt

    # -- rows waiting for their member (sync/deferral.py) -----------------------------------------

    def _defer_locked(self, task: _Task) -> None:
        """Keep a row answered "not found" until its member may exist. Caller holds ``self._cond``."""
        assert self._deferred is not None
        row = task.prepared.row
        try:
            self._deferred.add(row, task.ticket, task.prepared.member, task.size)
        except BaseException as exc:  # noqa: BLE001 - a row that cannot wait is not dropped: the sync stops
            self._fail_locked(exc)
            return
        self._writers_by_object.setdefault(row.stream.object_name, task.writer)
        self._cond.notify_all()  # its place in the bounded queue is free (the reader may be waiting for one)
        if not task.retry:
            if not self._waited["deferred"]:
                logger.info(
                    f"Row {row.seq} of stream {row.stream.label}: its member does not exist yet, and member rows "
                    "of this sync are still to come, so it waits and is tried again after them (so do later such "
                    "rows). States after a waiting row are echoed once it is settled."
                )
            self._waited["deferred"] += 1

    def _retry_task(self, waiting: Deferred) -> _Task | None:
        """A waiting row prepared again for a worker; None when its writer settles it without a request."""
        writer = self._writers_by_object[waiting.row.stream.object_name]
        prepared = writer.prepare(waiting.row)
        if isinstance(prepared, Outcome):
            self._settle_locked(waiting.row, waiting.ticket, prepared)
            self._waited["written" if prepared.accepted else "rejected"] += 1
            return None
        self._pending += 1
        self._pending_bytes += waiting.size
        self.peak_pending = max(self.peak_pending, self._pending)
        return _Task(prepared, writer, waiting.ticket, waiting.size, retry=True)

    def _requeue_member_locked(self, member: str) -> None:
        """A member's row was accepted: its waiting rows run next, before its later rows, in input order.

        As many as fit in ``max_pending`` (at least one); when the last of them settled, the next ones
        follow (``_run``), so a member with a million waiting rows does not load them all at once.
        """
        if self._deferred is None or not self._deferred.has_member(member):
            return
        room = max(1, self.max_pending - self._pending)
        try:
            tasks = [t for t in map(self._retry_task, self._deferred.take_member(member, room)) if t is not None]
        except BaseException as exc:  # noqa: BLE001 - the store failed: stop (the rows stay unsettled)
            self._fail_locked(exc)
            return
        self._waiting[member].extendleft(reversed(tasks))

    def _feed_deferred_locked(self) -> None:
        """Once no member can come any more: hand waiting rows to the workers, as many as fit."""
        if self._deferred is None or self._member_wait is None or self._member_wait.members_may_come:
            return
        if self._creators_pending:
            return  # a member row still to be written may create the member: wait for it
        if self._fatal is not None or self._closing or not len(self._deferred):
            return
        try:
            batch = self._deferred.take(self.max_pending - self._pending)
            for waiting in batch:
                task = self._retry_task(waiting)
                if task is None:
                    continue
                queued = self._waiting.get(waiting.member)
                if queued is not None:
                    queued.append(task)  # its member has a row in flight; run after it
                else:
                    self._waiting[waiting.member] = deque()
                    self._tasks.put(task)
        except BaseException as exc:  # noqa: BLE001 - the store failed: stop (the rows stay unsettled)
            self._fail_locked(exc)

    # -- progress ------------------------------------------------------------------------------

    def progress_line(self) -> str:
        """One line of progress in a user's words: rows done and rejected, requests sent and throttled,
        rows read but not done yet, then the flow control (requests at once, round trip, pace).

        Rows and requests are kept apart (issue 18 §4: "931 in flight; in-flight target 4" read as one
        number twice): rows waiting for their turn are not requests on the wire.
        """
        with self._cond:
            settled = self._tracker.records_settled
            pending = self._pending
        elapsed = max(self._clock() - self._started_at, 1e-9)
        requests, throttled = self._flow.request_totals() if self._flow else (0, 0)
        per_row = requests / settled if settled else 0.0
        line = (
            f"Progress: {settled:,} rows done in {elapsed:,.0f} s ({settled / elapsed:,.1f} rows/s), "
            f"{self._report.rejected:,} of them rejected; {requests:,} requests sent ({requests / elapsed:,.1f}/s, "
            f"{per_row:.2f} per row done), {throttled:,} answered HTTP 429 (throttled); "
            f"{pending:,} rows read and not done yet"
        )
        # e.g. "up to 42 requests at once (max_concurrency 128), round trip 312 ms; sending at most ..."
        flow = self._flow.status_line() if self._flow else ""
        return f"{line}; {flow}" if flow else line

    def elapsed_seconds(self) -> float:
        """Seconds since the pipeline started (the sync's duration, for the summary)."""
        return max(0.0, self._clock() - self._started_at)

    def _progress_loop(self) -> None:
        while not self._stop_progress.wait(self._progress_interval):
            logger.info(self.progress_line())
