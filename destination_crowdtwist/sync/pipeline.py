"""The write engine: a bounded worker pool with per-member ordering and checkpoint release.

CrowdTwist has no bulk API, so throughput comes from many single-row requests in flight at once.
The pipeline keeps three promises while doing that:

* **Bounded memory** — at most ``max_pending`` rows are inside the pipeline (queued, waiting for
  their member, or in flight); the reader blocks when it is full, which back-pressures the source.
* **Per-member order** — rows with the same member key are applied in input order and never two
  at once (updates must not overtake each other; a credit must not race its member's create). A
  member's next row is run by the worker that finished the previous one.
* **Checkpoints** — every row is registered with a :class:`CheckpointTracker` before it is
  dispatched and settled after its outcome is counted, so a state is released only when every
  record before it settled, whatever order rows finish in.

A sync-stopping error (bad credentials mid-sync, retries exhausted) makes workers stop taking new
rows; rows already in flight finish and settle, so the states they complete can still be echoed.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from destination_crowdtwist.sync.checkpoint import CheckpointTracker, ReleasedState, StreamKey
from destination_crowdtwist.sync.report import SyncReport
from destination_crowdtwist.writers.base import Row, Writer

logger = logging.getLogger("airbyte")

_STOP = object()


class Pipeline:
    """Runs rows through a writer on ``concurrency`` threads. See the module docstring."""

    def __init__(
        self,
        writer: Writer,
        report: SyncReport,
        *,
        concurrency: int,
        max_pending: int | None = None,
        request_stats: Callable[[], tuple[int, int]] | None = None,
        progress_interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._writer = writer
        self._report = report
        self._concurrency = max(1, concurrency)
        # Enough rows to keep every worker busy while some members have rows waiting behind them.
        self.max_pending = max_pending or max(64, 8 * self._concurrency)
        self._tasks: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._cond = threading.Condition()
        self._tracker: CheckpointTracker[Any] = CheckpointTracker()
        self._waiting: dict[str, deque[Row]] = {}
        self._pending = 0
        self._busy = 0
        self._fatal: BaseException | None = None
        self._closing = False
        self._threads: list[threading.Thread] = []
        self._request_stats = request_stats
        self._progress_interval = progress_interval
        self._clock = clock
        self._started_at = clock()
        self._stop_progress = threading.Event()
        self.peak_pending = 0

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker threads and the progress logger."""
        self._started_at = self._clock()
        for i in range(self._concurrency):
            t = threading.Thread(target=self._work, name=f"crowdtwist-worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)
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
        for _ in self._threads:
            self._tasks.put(_STOP)
        for t in self._threads:
            t.join(timeout=60)
        self._threads.clear()

    # -- main-thread API -----------------------------------------------------------------------

    def submit(self, row: Row) -> None:
        """Register a row with the checkpoint tracker and dispatch it (blocks while full)."""
        with self._cond:
            while self._pending >= self.max_pending and self._fatal is None:
                self._cond.wait()
            self._raise_if_fatal()
            row.ticket = self._tracker.add_record()
            self._pending += 1
            if self._pending > self.peak_pending:
                self.peak_pending = self._pending
            key = row.member
            if key is not None:
                waiting = self._waiting.get(key)
                if waiting is not None:
                    waiting.append(row)  # its member has a row in flight; run after it
                    return
                self._waiting[key] = deque()
        self._tasks.put(row)

    def add_state(self, state: Any, stream: StreamKey | None) -> None:
        """Register a state message received now (None stream = GLOBAL / LEGACY)."""
        with self._cond:
            self._tracker.add_state(state, stream)

    def release(self) -> list[ReleasedState[Any]]:
        """States that may be echoed now, in order, with exact counts."""
        with self._cond:
            return self._tracker.release()

    def wait_settled(self) -> None:
        """Block until every row submitted so far has settled (or a fatal error stopped the sync)."""
        with self._cond:
            while self._tracker.outstanding and self._fatal is None:
                self._cond.wait()
            self._raise_if_fatal()

    def wait_idle_after_fatal(self) -> None:
        """After a fatal error, wait for the rows already in flight to finish and settle."""
        with self._cond:
            while self._busy:
                self._cond.wait(timeout=1.0)

    @property
    def fatal(self) -> BaseException | None:
        """The sync-stopping error, if one happened."""
        with self._cond:
            return self._fatal

    def _raise_if_fatal(self) -> None:
        if self._fatal is not None:
            raise self._fatal

    # -- workers -------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            item = self._tasks.get()
            if item is _STOP:
                return
            row: Row | None = item
            while row is not None:
                with self._cond:
                    if self._fatal is not None or self._closing:
                        # Stop taking new rows: they stay unsettled, so no later state is echoed.
                        break
                    self._busy += 1
                try:
                    outcome = self._writer.process(row)
                except BaseException as exc:  # noqa: BLE001 - every error must stop the sync, classified later
                    with self._cond:
                        self._busy -= 1
                        if self._fatal is None:
                            self._fatal = exc
                        self._cond.notify_all()
                    break
                self._report.record(row, outcome)
                with self._cond:
                    self._busy -= 1
                    self._tracker.settle(row.ticket, row.stream.key, accepted=outcome.accepted)
                    self._pending -= 1
                    nxt: Row | None = None
                    if row.member is not None:
                        waiting = self._waiting[row.member]
                        if waiting:
                            nxt = waiting.popleft()
                        else:
                            del self._waiting[row.member]
                    self._cond.notify_all()
                row = nxt

    # -- progress ------------------------------------------------------------------------------

    def progress_line(self) -> str:
        """One line of progress: rows, rates, requests per row, 429s, rejected, in flight."""
        with self._cond:
            settled = self._tracker.records_settled
            in_flight = self._pending
        elapsed = max(self._clock() - self._started_at, 1e-9)
        requests, throttled = self._request_stats() if self._request_stats else (0, 0)
        per_row = requests / settled if settled else 0.0
        return (
            f"Progress: {settled} rows settled, {settled / elapsed:.1f} rows/s, {requests / elapsed:.1f} requests/s, "
            f"{per_row:.2f} requests/row, {throttled} throttled (429), {self._report.rejected} rejected, "
            f"{in_flight} in flight"
        )

    def _progress_loop(self) -> None:
        while not self._stop_progress.wait(self._progress_interval):
            logger.info(self.progress_line())
