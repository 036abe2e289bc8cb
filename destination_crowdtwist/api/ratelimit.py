"""A request budget shared by all worker threads: smooth pacing, slow-down on 429, gradual recovery.

CrowdTwist's limit (10,000 requests/minute per program) lives in Oracle's contract, not the API docs,
and no 429, Retry-After or X-RateLimit-* header is documented (docs/crowdtwist-api-notes.md §5). So the budget
paces to a configured maximum and adapts AIMD-style when a 429 does arrive: a multiplicative cut
(or a pause when Retry-After is given), then an additive climb back while requests succeed.

Pacing is a token bucket written in its "virtual scheduling" form (GCRA): each ``acquire`` reserves
the next free send slot under the lock and sleeps outside it, so many threads queue fairly and
nobody busy-waits.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RateBudget:
    """Thread-safe shared budget of requests per minute.

    Args:
        max_per_minute: the ceiling the rate never exceeds (and starts at).
        clock / sleep: injected monotonic time source and sleep, for tests.
        burst_seconds: how many seconds' worth of requests may go back to back after idling.
        min_per_second: floor of the rate after repeated cuts (never above the maximum).
        decrease_factor: multiplicative cut applied on a 429 without Retry-After.
        recovery_per_second: fraction of the maximum regained per second of successful requests.
        cut_cooldown_seconds: 429s arriving within this time of a cut belong to the same congestion
            event (all the requests that were in flight when the limit was hit) and cut only once.
    """

    def __init__(
        self,
        max_per_minute: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        burst_seconds: float = 1.0,
        min_per_second: float = 1.0,
        decrease_factor: float = 0.5,
        recovery_per_second: float = 0.05,
        cut_cooldown_seconds: float = 1.0,
    ) -> None:
        if max_per_minute <= 0:
            raise ValueError("max_per_minute must be positive")
        if not 0 < decrease_factor < 1:
            raise ValueError("decrease_factor must be between 0 and 1")
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._max = max_per_minute / 60.0  # requests per second from here on
        self._min = min(min_per_second, self._max)
        self._rate = self._max
        self._burst_seconds = burst_seconds
        self._decrease_factor = decrease_factor
        self._recovery = recovery_per_second
        now = clock()
        # Theoretical arrival time of the next request at the current rate. It starts with no burst
        # credit: a sync's first second goes at the paced rate, not at twice it (a fresh sync cannot
        # know what the program's other clients used in the last second).
        self._tat = now + self._tolerance()
        self._paused_until = now
        self._pause_generation = 0
        self._last_adjust = now
        self._cut_cooldown = cut_cooldown_seconds
        self._last_cut: float | None = None
        self._acquired = 0
        self._throttled = 0
        self._rate_cuts = 0
        self._pauses = 0
        self._waited = 0.0

    # -- counters ---------------------------------------------------------------------------------

    @property
    def current_rate(self) -> float:
        """The current allowed rate, in requests per minute."""
        with self._lock:
            return self._rate * 60.0

    @property
    def max_rate(self) -> float:
        """The configured maximum, in requests per minute."""
        return self._max * 60.0

    @property
    def acquired(self) -> int:
        """Number of requests let through."""
        with self._lock:
            return self._acquired

    @property
    def throttled(self) -> int:
        """Number of 429 answers reported through ``on_throttled``."""
        with self._lock:
            return self._throttled

    @property
    def rate_cuts(self) -> int:
        """Number of multiplicative rate cuts (429 without Retry-After)."""
        with self._lock:
            return self._rate_cuts

    @property
    def pauses(self) -> int:
        """Number of Retry-After pauses."""
        with self._lock:
            return self._pauses

    @property
    def waited_seconds(self) -> float:
        """Total time callers spent waiting in ``acquire``."""
        with self._lock:
            return self._waited

    # -- operations -------------------------------------------------------------------------------

    def acquire(self) -> None:
        """Block until one request may be sent."""
        while True:
            with self._lock:
                now = self._clock()
                wait = self._reserve(now)
                generation = self._pause_generation
            if wait > 0:
                self._sleep(wait)
            with self._lock:
                self._waited += max(wait, 0.0)
                # A Retry-After pause announced while we slept applies to us too: queue again behind it.
                if generation == self._pause_generation or self._paused_until <= self._clock():
                    self._acquired += 1
                    return

    def _tolerance(self) -> float:
        # Burst tolerance: how far ahead of the schedule a request may go (capacity - 1 intervals).
        return max(0.0, self._burst_seconds - 1.0 / self._rate)

    def _reserve(self, now: float) -> float:
        interval = 1.0 / self._rate
        tolerance = self._tolerance()
        start = max(now, self._paused_until)
        tat = max(self._tat, start)
        send_at = max(start, tat - tolerance)
        self._tat = tat + interval
        wait = send_at - now
        # Float noise (0.1 added ten times is not 1.0) must not turn a free slot into a tiny sleep.
        return wait if wait > 1e-9 else 0.0

    def on_throttled(self, retry_after: float | None) -> None:
        """Report a 429: pause everybody until Retry-After if given, else cut the rate."""
        with self._lock:
            now = self._clock()
            self._throttled += 1
            self._last_adjust = now
            if retry_after is not None and retry_after > 0:
                self._pauses += 1
                self._pause_generation += 1
                self._paused_until = max(self._paused_until, now + retry_after)
                # No burst right after the pause: the first request goes at its end, then paced.
                self._tat = max(self._tat, self._paused_until + self._tolerance())
                return
            if self._last_cut is not None and now - self._last_cut < self._cut_cooldown:
                # Same congestion event: the other requests that were already in flight.
                return
            self._last_cut = now
            self._rate_cuts += 1
            self._rate = max(self._min, self._rate * self._decrease_factor)
            # Forget the burst credit saved while idle: the server just said we are too fast, so the
            # next request waits one interval at the new rate.
            self._tat = max(self._tat, now + self._tolerance() + 1.0 / self._rate)

    def on_success(self) -> None:
        """Report a non-throttled answer: climb back towards the maximum, additively and gradually."""
        with self._lock:
            now = self._clock()
            # At most one second of credit per success, so one answer after a long idle gap does not
            # restore the full rate at once.
            elapsed = min(max(now - self._last_adjust, 0.0), 1.0)
            self._last_adjust = now
            if self._rate < self._max:
                self._rate = min(self._max, self._rate + self._recovery * self._max * elapsed)
