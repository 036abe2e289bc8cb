"""Fault injection: an instance-wide rate limiter and seeded random fault decisions.

CrowdTwist documents a 10,000 requests/minute per-instance limit only in contract text, and neither
429 nor ``Retry-After`` (§5); DataGrail describes a leaky bucket answering 429. The limiter offers the
three usual shapes so connectors can be tested against each.
"""

from __future__ import annotations

import math
import random
import threading
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class RateDecision:
    """Whether a request may proceed; when refused, seconds until a retry can succeed."""

    allowed: bool
    retry_after: float = 0.0


class RateLimiter:
    """Per-instance request limit; times are epoch seconds from the injected clock.

    - ``sliding_window``: at most ``limit`` requests in any 60 s span.
    - ``fixed_window``: at most ``limit`` requests per clock minute (windows start at multiples of 60 s).
    - ``token_bucket``: capacity ``burst`` (default ``limit``), refilled at ``limit / 60`` tokens per s.
    Refused requests do not consume capacity.
    """

    def __init__(self, limit_per_minute: int, algorithm: str = "sliding_window", burst: int | None = None) -> None:
        self.limit = limit_per_minute
        self.algorithm = algorithm
        self.capacity = float(burst if burst is not None else limit_per_minute)
        self._lock = threading.Lock()
        self._stamps: deque[float] = deque()
        self._window_start: float | None = None
        self._window_count = 0
        self._tokens = self.capacity
        self._last_refill: float | None = None

    def check(self, now: float) -> RateDecision:
        """Consume one unit of capacity at ``now`` if available."""
        with self._lock:
            if self.algorithm == "fixed_window":
                return self._fixed(now)
            if self.algorithm == "token_bucket":
                return self._bucket(now)
            return self._sliding(now)

    def _sliding(self, now: float) -> RateDecision:
        while self._stamps and self._stamps[0] <= now - 60.0:
            self._stamps.popleft()
        if len(self._stamps) < self.limit:
            self._stamps.append(now)
            return RateDecision(allowed=True)
        return RateDecision(allowed=False, retry_after=self._stamps[0] + 60.0 - now)

    def _fixed(self, now: float) -> RateDecision:
        start = math.floor(now / 60.0) * 60.0
        if self._window_start != start:
            self._window_start, self._window_count = start, 0
        if self._window_count < self.limit:
            self._window_count += 1
            return RateDecision(allowed=True)
        return RateDecision(allowed=False, retry_after=start + 60.0 - now)

    def _bucket(self, now: float) -> RateDecision:
        rate = self.limit / 60.0
        if self._last_refill is not None and now > self._last_refill:
            self._tokens = min(self.capacity, self._tokens + (now - self._last_refill) * rate)
        self._last_refill = now if self._last_refill is None else max(now, self._last_refill)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return RateDecision(allowed=True)
        return RateDecision(allowed=False, retry_after=(1.0 - self._tokens) / rate)


def retry_after_header(seconds: float) -> str:
    """Whole seconds, rounded up, at least 1 (the HTTP ``Retry-After`` delta-seconds form)."""
    return str(max(1, math.ceil(seconds - 1e-9)))


class FaultDice:
    """One ``random.Random(seed)`` behind a lock, so fault sequences are reproducible for a seed."""

    def __init__(self, seed: int | None) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(seed)

    def chance(self, rate: float) -> bool:
        """True with probability ``rate``; draws nothing (keeps the sequence) when rate is 0 or 1."""
        if rate <= 0.0:
            return False
        if rate >= 1.0:
            return True
        with self._lock:
            return self._rng.random() < rate

    def latency_ms(self, distribution: str, mean_ms: float, spread_ms: float) -> float:
        """A latency sample: fixed, uniform in mean±spread, or normal(mean, spread); never negative."""
        if distribution == "fixed" or spread_ms <= 0:
            return mean_ms
        with self._lock:
            if distribution == "uniform":
                value = self._rng.uniform(mean_ms - spread_ms, mean_ms + spread_ms)
            else:
                value = self._rng.gauss(mean_ms, spread_ms)
        return max(0.0, value)
