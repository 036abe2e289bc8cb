"""How many requests may be in flight at once: enough to use the rate budget, no more.

CrowdTwist has no bulk API, so throughput is requests in flight divided by the round-trip time
(Little's law). A fixed number of workers caps it: 20 workers at 300 ms make 66 requests/s whatever
the budget. So the number of requests allowed in flight follows what the budget needs,

    target = ceil(rate × smoothed RTT × headroom) + spare,   between 1 and the ceiling,

where ``rate`` is the budget's current pacing rate (it falls on a 429, so the target falls with it)
and the RTT is measured per attempt, from sending to the last byte of the answer (never the time
spent waiting for the budget), on answers that did the work only: a 429 or a 503 refused at once by
a gateway would otherwise read the real round trip as queueing (issue 20). An RTT far above the
lowest one seen recently is queueing, not distance (an overloaded server, or a local one sharing our
CPU): more requests in flight would only lengthen the queue, so the RTT counted is at most
``queueing_factor`` times that recent minimum. That keeps a struggling server from being sent ever
more at once, and keeps our own CPU per row flat when the round trip is short. The headroom covers
RTT spread and the few requests waiting for their paced send slot; keeping the rest out keeps the
budget's queue of reserved slots short, so a rate cut takes effect at once instead of after every
worker's already-reserved slot.

:class:`InFlightTarget` is the pure controller (no threads; injected clock); :class:`InFlightGate`
is the thread-safe, adjustable semaphore the client passes before each attempt.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable


class InFlightTarget:
    """The in-flight target from RTT samples and the current rate (pure; not thread-safe).

    Args:
        ceiling: the most requests ever in flight (``max_concurrency``).
        clock: monotonic seconds; the RTT average is smoothed over time, not over a sample count,
            so it reacts as fast at 2 requests/s as at 150.
        headroom: multiplier on rate × RTT (RTT spread, requests waiting for their send slot).
        spare: requests added on top, so a low rate or a tiny RTT still keeps a couple in flight.
        smoothing_seconds: time constant of the RTT average.
        initial_rtt / initial_limit: before the first answer the RTT is assumed to be 100 ms and the
            target is at most 20 (the old fixed worker count), so a wrong API key or a dead host costs
            a handful of requests, not ``ceiling`` of them, and a huge budget does not start a hundred
            workers for a local server; the first answers set the real figure.
        queueing_factor: the RTT counted is at most this many times the lowest RTT of the last
            ``min_window_seconds`` to ``2 × min_window_seconds`` (4: CrowdTwist's endpoints may differ
            in speed, and their spread must not read as queueing) ...
        queueing_allowance: ... or that lowest RTT plus this many seconds, whichever is larger.
    """

    # Bounds of one sample's weight: simultaneous answers still count a little, and one answer after
    # a long silence does not erase the history.
    _MIN_WEIGHT = 1.0 / 256
    _MAX_WEIGHT = 0.25

    def __init__(
        self,
        ceiling: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        headroom: float = 1.25,
        spare: int = 2,
        smoothing_seconds: float = 1.0,
        initial_rtt: float = 0.1,
        initial_limit: int = 20,
        queueing_factor: float = 4.0,
        queueing_allowance: float = 0.008,
        min_window_seconds: float = 10.0,
    ) -> None:
        if ceiling < 1:
            raise ValueError("ceiling must be at least 1")
        if headroom < 1.0:
            raise ValueError("headroom must be at least 1")
        if smoothing_seconds <= 0:
            raise ValueError("smoothing_seconds must be positive")
        self.ceiling = ceiling
        self._clock = clock
        self._headroom = headroom
        self._spare = max(0, spare)
        self._tau = smoothing_seconds
        self._initial_rtt = max(0.0, initial_rtt)
        self._initial_limit = max(1, initial_limit)
        self._srtt: float | None = None
        self._last_sample = 0.0
        self._queueing_factor = queueing_factor
        self._queueing_allowance = queueing_allowance
        self._min_window = min_window_seconds
        # The recent minimum as two buckets: this window's and the previous one's (cheap, and it
        # forgets a minimum after one to two windows, so a slower route is learned).
        self._min_now = self._min_before = float("inf")
        self._window_start: float | None = None

    @property
    def srtt(self) -> float | None:
        """The smoothed round-trip time in seconds, None before the first answer."""
        return self._srtt

    @property
    def min_rtt(self) -> float | None:
        """The lowest round-trip time of the last one to two windows, None before the first answer."""
        lowest = min(self._min_now, self._min_before)
        return None if lowest == float("inf") else lowest

    def observe(self, rtt: float) -> None:
        """Add one round-trip sample (seconds from sending to the answer's last byte)."""
        rtt = max(0.0, rtt)
        now = self._clock()
        if self._window_start is None or now - self._window_start >= self._min_window:
            self._min_before = self._min_now if self._window_start is not None else float("inf")
            self._min_now = float("inf")
            self._window_start = now
        self._min_now = min(self._min_now, rtt)
        if self._srtt is None:
            self._srtt = rtt
        else:
            weight = min(self._MAX_WEIGHT, max(self._MIN_WEIGHT, (now - self._last_sample) / self._tau))
            self._srtt += weight * (rtt - self._srtt)
        self._last_sample = now

    def target(self, rate_per_second: float) -> int:
        """Requests to allow in flight at this pacing rate (before the first answer: see ``initial_rtt``)."""
        if self._srtt is None:
            guess = math.ceil(max(rate_per_second, 0.0) * self._initial_rtt * self._headroom) + self._spare
            return max(1, min(self.ceiling, self._initial_limit, guess))
        lowest = min(self._min_now, self._min_before)
        # A few milliseconds of queueing are harmless (and a local loopback's minimum is tiny).
        rtt = min(self._srtt, max(lowest * self._queueing_factor, lowest + self._queueing_allowance))
        needed = math.ceil(max(rate_per_second, 0.0) * rtt * self._headroom) + self._spare
        return max(1, min(self.ceiling, needed))


class InFlightGate:
    """A semaphore whose size follows an :class:`InFlightTarget` (thread-safe).

    ``enter`` blocks while ``target + slack`` requests are in flight; ``leave`` frees the place and
    feeds the RTT sample (None when no answer that did the work arrived: a timeout says nothing about
    the usual RTT, and a 429 or 503 a gateway sent back at once says nothing about the path's).
    ``rate`` returns the budget's current pacing rate in requests per second.

    The worker pool follows ``capacity`` (``FlowControl.workers_wanted``), so the gate binds only
    when the target falls (a 429, faster answers), until the surplus workers have left. ``slack``
    keeps it from binding when the target merely moves by one or two with each RTT sample: handing a
    place from one thread to another costs two context switches, which at a short round trip is a
    measurable share of a row's CPU.
    """

    def __init__(self, controller: InFlightTarget, rate: Callable[[], float], *, slack: int = 2) -> None:
        self._controller = controller
        self._rate = rate
        self._slack = max(0, slack)
        self._cond = threading.Condition(threading.Lock())
        self._in_flight = 0
        self._limit = controller.target(rate())
        self.peak = 0

    def enter(self) -> None:
        """Block until one more request may be in flight, then count it."""
        with self._cond:
            while self._in_flight >= self._limit + self._slack:
                self._cond.wait()
                # A 429 or a rate change while waiting moves the limit; re-read it.
                self._limit = self._controller.target(self._rate())
            self._in_flight += 1
            self.peak = max(self.peak, self._in_flight)

    def leave(self, rtt: float | None) -> None:
        """A request left (answered or failed); ``rtt`` in seconds when an answer arrived."""
        with self._cond:
            self._in_flight -= 1
            if rtt is not None:
                self._controller.observe(rtt)
            old, self._limit = self._limit, self._controller.target(self._rate())
            # One waiter per free place (no thundering herd); more when the limit rose.
            free = self._limit + self._slack - self._in_flight
            if free > 0:
                self._cond.notify(free if self._limit > old else 1)

    @property
    def limit(self) -> int:
        """The current in-flight target."""
        with self._cond:
            return self._limit

    @property
    def capacity(self) -> int:
        """Requests that may be in flight before ``enter`` blocks: the target plus the slack.

        Read without the lock: it only sizes the worker pool (``FlowControl.workers_wanted``), which
        asks about three times per row and re-reads before acting, so a value one change old is
        harmless, and ``_limit`` is one attribute (its read is atomic under the GIL). Taking the
        lock made every worker queue for it behind ``enter`` and ``leave``.
        """
        return self._limit + self._slack

    @property
    def in_flight(self) -> int:
        """Requests in flight now (waiting for their send slot or on the wire)."""
        with self._cond:
            return self._in_flight

    @property
    def srtt(self) -> float | None:
        """The smoothed round-trip time in seconds (None before the first answer)."""
        with self._cond:
            return self._controller.srtt

    def status(self) -> str:
        """``up to 42 requests at once (max_concurrency 128), round trip 312 ms`` for progress lines."""
        with self._cond:
            srtt = self._controller.srtt
            rtt = "not measured yet" if srtt is None else f"{srtt * 1000:.0f} ms"
            return (f"up to {self._limit} requests at once (max_concurrency {self._controller.ceiling}), "
                    f"round trip {rtt}")
