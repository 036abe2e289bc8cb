"""Pure retry decisions: what to do after a failed attempt, as one table-driven function.

``decide`` is the only place that says whether a failed attempt is repeated, after how long, or why
not. The client sends, describes what happened as an :class:`Outcome` and asks ``decide``, which
reads no status: an answer's outcome carries its row of the status table (``errors.Meaning``: was
the request processed, what bounds its retries), a failure without an answer one of
:data:`UNREACHABLE` and :data:`LOST`. The rules, tested row by row in unit_tests/test_retry.py:

=============================================  ================  ===============================
what happened (its meaning)                    repeat a credit?  bounded by
=============================================  ================  ===============================
no connection (``UNREACHABLE``)                yes (not sent)    ``max_retries``
408 (``NOT_RUN``)                              yes (not run)     ``max_retries``
429 (``THROTTLED``)                            yes (not run)     ``throttle_timeout`` (time)
503, maintenance page (``UNAVAILABLE``)        no: Uncertain     ``unavailable_timeout`` (time)
other 5xx (``TROUBLE``), 2xx not JSON, huge    no: Uncertain     ``max_retries``
read timeout, dropped connection (``LOST``)    no: Uncertain     ``max_retries``
=============================================  ================  ===============================

"Repeat a credit" is the non-idempotent case: CrowdTwist has no idempotency key for activity
credits (docs/crowdtwist-api-notes.md), so a request that may have been applied is never sent again;
``decide`` answers :class:`Uncertain`. A server-given Retry-After wins over the backoff, capped at
``retry_after_cap`` so one odd header cannot park a worker for an hour, and never past a time bound.

No clock, sleep or randomness lives here; callers pass ``elapsed``, ``now`` and ``rand`` so tests
can assert exact delay sequences.
"""

from __future__ import annotations

import email.utils
from collections.abc import Callable
from dataclasses import dataclass, replace

from destination_crowdtwist.api.errors import Bound, status_rule


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), or None if absent/invalid.

    ``now`` is the current Unix time (seconds), used for the HTTP-date form; a date in the past
    means "retry now" (0.0). CrowdTwist documents no Retry-After at all (docs/crowdtwist-api-notes.md §5), but
    proxies and throttling front-ends send one, and users expect it to be honoured.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        # RFC 9110 dates are always GMT; parsedate_to_datetime returns naive for "-0000".
        return None
    return max(0.0, when.timestamp() - now)


def exponential_delay(retry_number: int, *, base: float, cap: float) -> float:
    """``base * 2**(retry_number - 1)`` capped at ``cap``; retry_number counts from 1."""
    if retry_number < 1:
        raise ValueError("retry_number counts from 1")
    # Guard the exponent: 2**1000 as a float overflows long before the cap matters.
    return min(cap, base * 2.0 ** min(retry_number - 1, 60))


def add_jitter(delay: float, rand: Callable[[], float]) -> float:
    """"Equal jitter": a uniform value in [delay/2, delay). Kept apart to isolate randomness.

    Waiting at least half the backoff keeps retries spaced, while the random half stops many
    workers that failed together from retrying in lock step.
    """
    return delay * (0.5 + 0.5 * rand())


def backoff_delay(retry_number: int, *, base: float, cap: float, rand: Callable[[], float]) -> float:
    """Delay before retry ``retry_number`` (1, 2, ...): capped exponential with equal jitter."""
    return add_jitter(exponential_delay(retry_number, base=base, cap=cap), rand)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long one request is retried.

    ``max_retries`` counts retries, not attempts: 3 means at most 4 requests for failures bounded by
    count. Throttling (429) and unavailability (503) are bounded by time instead: they say "not
    now", so a long limit or a maintenance window slows the sync down rather than failing rows.
    Their backoff between probes is capped at ``wait_cap`` (before jitter).
    """

    max_retries: int = 3
    base: float = 0.5
    cap: float = 30.0
    retry_after_cap: float = 60.0
    throttle_timeout: float = 600.0
    unavailable_timeout: float = 300.0
    wait_cap: float = 16.0

    def honoured_retry_after(self, seconds: float) -> float:
        """A server-given Retry-After as we honour it: not negative, at most ``retry_after_cap``."""
        return min(max(seconds, 0.0), self.retry_after_cap)

    def time_bound(self, bound: Bound) -> float | None:
        """Seconds a failure so bounded may keep being retried, or None when counted instead."""
        if bound is Bound.THROTTLE:
            return self.throttle_timeout
        if bound is Bound.UNAVAILABLE:
            return self.unavailable_timeout
        return None


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """What one failed attempt tells the retry decision: its row's facts, not its status.

    ``processed`` is False when the request certainly had no effect (nothing was sent, or the server
    says it did not run it: 408, 429), so repeating it is safe for any request. ``bound`` is what
    limits its retries. ``status`` (None when no complete answer arrived) only names the failure in
    the retry note. ``retry_after`` is the server's Retry-After in seconds, if any.
    """

    processed: bool = True
    bound: Bound = Bound.COUNT
    retry_after: float | None = None
    status: int | None = None


#: Nothing reached the server (connection refused, DNS, connect timeout): safe for any request.
UNREACHABLE = Outcome(processed=False)
#: No complete answer, and the request may have reached the server (read timeout, dropped connection).
LOST = Outcome(processed=True)


def answered(status: int, retry_after: float | None = None) -> Outcome:
    """The outcome of an answer that failed (RETRY, or a body that could not be used), from its status's row."""
    meaning = status_rule(status).meaning
    return Outcome(processed=meaning.processed, bound=meaning.bound, retry_after=retry_after, status=status)


@dataclass(frozen=True)
class Tally:
    """The retries one request has made so far.

    ``retries`` count against ``max_retries``; ``waits`` are the 429 / 503 retries, bounded by time.
    """

    retries: int = 0
    waits: int = 0

    @property
    def attempts(self) -> int:
        """Attempts made, including the one that just failed."""
        return self.retries + self.waits + 1


@dataclass(frozen=True)
class Retry:
    """Send again after ``delay`` seconds; ``tally`` is the count to pass to the next decision."""

    delay: float
    tally: Tally
    note: str  # for the log line, e.g. "retry 2 of 3"


@dataclass(frozen=True)
class GiveUp:
    """Stop retrying; ``reason`` completes the error message (e.g. "Gave up after 4 attempts.")."""

    reason: str


@dataclass(frozen=True)
class Uncertain:
    """Stop without retrying: a non-idempotent request may already have been applied."""


Decision = Retry | GiveUp | Uncertain


def decide(
    outcome: Outcome,
    tally: Tally,
    elapsed: float,
    *,
    idempotent: bool,
    policy: RetryPolicy,
    rand: Callable[[], float],
) -> Decision:
    """What to do after a failed attempt (see the table in the module docstring).

    ``tally`` counts the retries made before this failure; ``elapsed`` is the time in seconds since
    this request first failed (time bounds run from there, so waiting for a rate-limit slot before
    the first attempt does not count against them).
    """
    if not idempotent and outcome.processed:
        return Uncertain()
    bound = policy.time_bound(outcome.bound)
    if bound is not None:
        if elapsed >= bound:
            return GiveUp(f"Gave up after {tally.attempts} attempts in {elapsed:.0f}s.")
        waits = tally.waits + 1
        if outcome.retry_after is not None:
            delay = policy.honoured_retry_after(outcome.retry_after)
        else:
            delay = backoff_delay(waits, base=policy.base, cap=policy.wait_cap, rand=rand)
        # Never sleep past the bound: the next failure then gives up on time.
        delay = min(delay, bound - elapsed)
        note = f"HTTP {outcome.status} for {elapsed:.0f}s, waiting at most {bound:.0f}s"
        return Retry(delay, replace(tally, waits=waits), note)
    retries = tally.retries + 1
    if retries > policy.max_retries:
        return GiveUp(f"Gave up after {tally.attempts} attempts.")
    if outcome.retry_after is not None:
        delay = policy.honoured_retry_after(outcome.retry_after)
    else:
        delay = backoff_delay(retries, base=policy.base, cap=policy.cap, rand=rand)
    return Retry(delay, replace(tally, retries=retries), f"retry {retries} of {policy.max_retries}")
