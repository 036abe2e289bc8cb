"""The progress line of a sync, and the thread that logs it every ``progress_interval_seconds``.

Rows and requests are kept apart (issue 18 §4: "931 in flight; in-flight target 4" read as one number
twice): rows read and not done yet are not requests on the wire.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Protocol

logger = logging.getLogger("airbyte")


class FlowStatus(Protocol):
    """What the progress line asks the API layer's flow control (``api.flow.FlowControl``)."""

    def status_line(self) -> str:
        """The flow control in words (requests at once, round trip, pace)."""
        ...

    def request_totals(self) -> tuple[int, int]:
        """``(requests sent, 429 answers)`` so far."""
        ...


class Progress:
    """Words the pipeline's counts and the flow control's state, and logs them periodically.

    ``rows()`` is ``(rows settled, rows read and not done yet)``, ``rejected()`` the rows rejected so
    far; ``clock`` (monotonic seconds) dates the start, which is construction until :meth:`start`.
    """

    def __init__(
        self,
        rows: Callable[[], tuple[int, int]],
        rejected: Callable[[], int],
        *,
        flow: FlowStatus | None,
        interval: float,
        clock: Callable[[], float],
    ) -> None:
        self._rows = rows
        self._rejected = rejected
        self._flow = flow
        self._interval = interval
        self._clock = clock
        self._started_at = clock()
        self._stop = threading.Event()

    def start(self) -> None:
        """The sync starts now; log the line every ``interval`` seconds (never when it is 0)."""
        self._started_at = self._clock()
        if self._interval > 0:
            t = threading.Thread(target=self._loop, name="crowdtwist-progress", daemon=True)
            t.start()

    def stop(self) -> None:
        """Stop logging (the summary logs the last line)."""
        self._stop.set()

    def elapsed(self) -> float:
        """Seconds since the start (the sync's duration, for the summary)."""
        return max(0.0, self._clock() - self._started_at)

    def line(self) -> str:
        """One line of progress in a user's words: rows done and rejected, requests sent and throttled,
        rows read but not done yet, then the flow control (requests at once, round trip, pace).
        """
        settled, pending = self._rows()
        elapsed = max(self._clock() - self._started_at, 1e-9)
        requests, throttled = self._flow.request_totals() if self._flow else (0, 0)
        per_row = requests / settled if settled else 0.0
        line = (
            f"Progress: {settled:,} rows done in {elapsed:,.0f} s ({settled / elapsed:,.1f} rows/s), "
            f"{self._rejected():,} of them rejected; {requests:,} requests sent ({requests / elapsed:,.1f}/s, "
            f"{per_row:.2f} per row done), {throttled:,} answered HTTP 429 (throttled); "
            f"{pending:,} rows read and not done yet"
        )
        # e.g. "up to 42 requests at once (max_concurrency 128), round trip 312 ms; sending at most ..."
        flow = self._flow.status_line() if self._flow else ""
        return f"{line}; {flow}" if flow else line

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            logger.info(self.line())


__all__ = ["FlowStatus", "Progress"]
