"""Pure retry policy: capped exponential backoff with isolated jitter, and Retry-After parsing.

No clock, sleep or randomness lives here; callers pass ``now`` and ``rand`` so tests can assert
exact delay sequences.
"""

from __future__ import annotations

import email.utils
from collections.abc import Callable
from dataclasses import dataclass


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
    """How often and how long to wait before retrying a retryable failure.

    ``max_retries`` counts retries, not attempts: 3 means at most 4 requests.
    """

    max_retries: int = 3
    base: float = 0.5
    cap: float = 30.0
    retry_after_cap: float = 60.0

    def next_delay(
        self, retry_number: int, *, retry_after: float | None, rand: Callable[[], float]
    ) -> float | None:
        """Seconds to wait before retry ``retry_number`` (1-based), or None to give up.

        A server-given Retry-After wins over the backoff, limited to ``retry_after_cap`` so one
        odd header cannot park every worker for an hour; if the server still throttles after that
        wait, the next 429 uses up another retry.
        """
        if retry_number > self.max_retries:
            return None
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.retry_after_cap)
        return backoff_delay(retry_number, base=self.base, cap=self.cap, rand=rand)
