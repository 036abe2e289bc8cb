"""Request counters shared by every worker: attempts, answers by status, retries, throttling."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

__all__ = ["ClientStats", "StatsSnapshot"]


@dataclass(frozen=True)
class StatsSnapshot:
    """A consistent copy of the client's counters."""

    requests: int
    retries: int
    throttled: int
    connection_errors: int
    uncertain: int
    by_endpoint: dict[str, int]
    statuses: dict[int, int]


@dataclass
class ClientStats:
    """Thread-safe request counters (attempts, per endpoint template, per status, retries, 429s)."""

    requests: int = 0
    retries: int = 0
    throttled: int = 0
    connection_errors: int = 0
    uncertain: int = 0
    by_endpoint: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record_attempt(self, endpoint: str) -> None:
        """Count one request sent (every attempt counts)."""
        with self._lock:
            self.requests += 1
            self.by_endpoint[endpoint] += 1

    def record_status(self, status: int, *, throttled: bool) -> None:
        """Count one answer by HTTP status (and as throttled when its row says so: 429)."""
        with self._lock:
            self.statuses[status] += 1
            if throttled:
                self.throttled += 1

    def add(self, name: str) -> None:
        """Increment one of ``retries``, ``connection_errors``, ``uncertain``."""
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)

    def totals(self) -> tuple[int, int]:
        """``(requests sent, 429 answers)``, read under the lock (for progress lines)."""
        with self._lock:
            return self.requests, self.throttled

    def snapshot(self) -> StatsSnapshot:
        """All counters, read under the lock."""
        with self._lock:
            return StatsSnapshot(
                requests=self.requests,
                retries=self.retries,
                throttled=self.throttled,
                connection_errors=self.connection_errors,
                uncertain=self.uncertain,
                by_endpoint=dict(self.by_endpoint),
                statuses=dict(self.statuses),
            )
