"""One flow-control object: how fast (the rate budget) and how many at once (the in-flight target).

CrowdTwist has no bulk API, so a sync's throughput is requests in flight over the round-trip time,
limited by a rate the server may lower with 429s. Two parts steer it, each unchanged and tested on
its own: :class:`~destination_crowdtwist.api.ratelimit.RateBudget` paces the sends and adapts to
429s, :class:`~destination_crowdtwist.api.concurrency.InFlightGate` admits as many requests at once as
that rate needs at the measured round trip. :class:`FlowControl` composes them (as botocore's
adaptive retry mode composes a token bucket, a rate measurer and a cubic calculator behind one
limiter) and is the only thing the rest of the connector talks to:

- the client, per attempt: ``with flow.attempt() as attempt:`` takes a place in flight, then a paced
  send slot (in that order, so a place is never held while a slot goes unused), and
  ``attempt.observe(result)`` reports what came back: the round trip of an answer that did the work
  (never a timeout, never a 429 or 503 a gateway sent back at once: issue 20), and what its status
  line told the budget (slow down, climb back, or nothing), with the time its send slot was given
  (the budget counts what the server accepted by when it was sent, not when the answer came back);
  ``with flow.pausing():`` around a retry's wait (it holds a worker thread but no place in flight);
- the pipeline: ``workers_wanted()`` sizes its worker pool, ``status_line()`` and
  ``request_totals()`` make its progress line.

Both parts are optional (a client built without them, as in ``check`` or a test, is neither paced
nor gated), and both are typed by what this module calls on them, so a test can pass a spy.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Protocol

from destination_crowdtwist.api.errors import Pace
from destination_crowdtwist.api.response import ApiResponse, Failure
from destination_crowdtwist.api.stats import ClientStats

__all__ = ["Attempt", "Budget", "FlowControl", "Gate"]


class Budget(Protocol):
    """How fast: what :class:`FlowControl` calls on a ``RateBudget``."""

    def acquire(self) -> float:
        """Block until one request may be sent; return when, on the budget's own clock."""

    def on_throttled(self, retry_after: float | None, sent_at: float | None = None) -> None:
        """A 429, with its honoured Retry-After and when its request was sent (``acquire``'s value)."""

    def on_success(self, sent_at: float | None = None) -> None:
        """An answer the server gave in its stride, and when its request was sent (``acquire``'s value)."""

    def status(self) -> str:
        """The pace, for progress lines."""


class Gate(Protocol):
    """How many at once: what :class:`FlowControl` calls on an ``InFlightGate``."""

    @property
    def capacity(self) -> int:
        """Requests that may be in flight before ``enter`` blocks."""

    def enter(self) -> None:
        """Block until one more request may be in flight."""

    def leave(self, rtt: float | None) -> None:
        """A request left; ``rtt`` in seconds when an answer that did the work arrived."""

    def status(self) -> str:
        """The in-flight target and round trip, for progress lines."""


class Attempt:
    """One attempt's place in flight and paced slot: :meth:`observe` what came back before it leaves.

    A context manager (``with flow.attempt() as attempt:``): entering takes a place in flight, then
    a paced send slot (in that order, so a place is never held while a slot goes unused); leaving
    frees the place with the round trip. A class rather than a generator-based context manager:
    it runs once per request.
    """

    __slots__ = ("_budget", "_clock", "_gate", "_sent", "_slot", "rtt")

    def __init__(self, budget: Budget | None, clock: Callable[[], float], gate: Gate | None = None) -> None:
        self._budget = budget
        self._gate = gate
        self._clock = clock
        self._sent = 0.0  # when the send slot was given (on entering)
        self._slot: float | None = None  # the same on the budget's clock (it measures the server's rate by it)
        self.rtt: float | None = None  # seconds from the send slot to the last byte of an answer that did the work

    def __enter__(self) -> Attempt:
        gate = self._gate
        if gate is not None:
            gate.enter()
        if self._budget is not None:
            try:
                self._slot = self._budget.acquire()
            except BaseException:
                if gate is not None:
                    gate.leave(None)  # never sent: the place is freed without a round trip
                raise
        self._sent = self._clock()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._gate is not None:
            self._gate.leave(self.rtt)

    def observe(self, result: ApiResponse | Failure) -> None:
        """Learn from one attempt's result: its round trip, and what its status line told the budget."""
        if isinstance(result, ApiResponse):
            pace, pause = result.resolution.meaning.pace, result.retry_after
            # Only an answer that did the work (2xx, or a record-level 4xx) is a round trip of the path:
            # a timeout would teach the gate a 30 s "RTT", and a 429, a 503 or a 5xx may come from a
            # gateway that refused at once (issue 20: fast 429s read the real round trip as queueing and
            # held the in-flight target far below what the limit allows).
            if result.resolution.did_work:
                self.rtt = self._clock() - self._sent
        else:
            pace, pause = result.pace, result.pause
        if self._budget is None:
            return
        if pace is Pace.SLOW_DOWN:
            # A long Retry-After pauses every worker, so the budget gets the capped value too.
            self._budget.on_throttled(pause, self._slot)
        elif pace is Pace.CLIMB:
            # A 5xx is no sign that we may speed up again; an overloaded server answers 503.
            self._budget.on_success(self._slot)


class FlowControl:
    """The rate budget and the in-flight gate behind one small interface (see the module docstring).

    Args:
        budget: the shared ``RateBudget``; None sends unpaced.
        gate: the shared ``InFlightGate`` (built on the budget's rate); None admits every attempt.
        stats: the request counters of everything that goes through this (a new one by default).
        clock: monotonic seconds, for round trips.
    """

    def __init__(
        self,
        budget: Budget | None = None,
        gate: Gate | None = None,
        *,
        stats: ClientStats | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._budget = budget
        self._gate = gate
        self.stats = stats if stats is not None else ClientStats()
        self._clock = clock
        self._pausing = 0  # requests waiting before a retry
        self._pausing_lock = threading.Lock()

    def attempt(self) -> Attempt:
        """A place in flight, then a paced send slot; the place is freed (with the round trip) on exit."""
        return Attempt(self._budget, self._clock, self._gate)

    @contextlib.contextmanager
    def pausing(self) -> Iterator[None]:
        """Around a wait before a retry: its worker is busy but holds no place in flight."""
        with self._pausing_lock:
            self._pausing += 1
        try:
            yield
        finally:
            with self._pausing_lock:
                self._pausing -= 1

    def workers_wanted(self) -> int:
        """Worker threads that keep the in-flight gate busy: its capacity, plus the requests now
        pausing before a retry (a 429's Retry-After holds a thread, not a place in flight).
        """
        target = self._gate.capacity if self._gate is not None else 1
        # Read without the lock (the lock guards the count's updates): a hint the pool re-reads before it
        # starts or stops a thread, asked about three times per row.
        return target + self._pausing

    def status_line(self) -> str:
        """The in-flight target, smoothed RTT and paced rate, for progress lines (empty without them)."""
        parts = []
        if self._gate is not None:
            parts.append(self._gate.status())
        if self._budget is not None:
            parts.append(self._budget.status())
        return "; ".join(parts)

    def request_totals(self) -> tuple[int, int]:
        """``(requests sent, 429 answers)`` for progress lines."""
        return self.stats.totals()
