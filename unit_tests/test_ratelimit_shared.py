"""Two connections on one program: two budgets that cannot talk share one server limit (issue 20).

Two Airbyte connections to the same CrowdTwist program are two processes, each with its own
``RateBudget`` and the same configured maximum, behind one limit. Each one's revealed rate is its
own share of what the server accepted, and the first episode splits the limit by chance (which
requests found a token). With a multiplicative probe and multiplicative cuts that split stayed for
the whole sync (the bench measured 0.91 / 1.09 of a fair share, and the favoured connection finished
first). The probe is additive, so every cut shrinks the difference, and it speeds up after a few
seconds without a 429, so the pair meets the limit (and cuts) often enough for the split to converge.

Fake clock, no threads: each connection has a fixed number of workers (its in-flight target), a
refused request is answered at once (a gateway) and retried by the same worker, an accepted one
after the round trip. The sends are jittered from a seeded generator so neither connection is
phase-locked to the server's token refills.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from destination_crowdtwist.api.ratelimit import RateBudget

MakeBudget = Callable[[float, Callable[[], float]], RateBudget]


@dataclass
class Connection:
    """One simulated connection: its budget, when it starts, and when the server accepted its requests."""

    budget: RateBudget
    start: float
    accepted: list[float] = field(default_factory=list)

    def rate(self, start: float, end: float) -> float:
        """Accepted requests per second in [start, end)."""
        return sum(1 for at in self.accepted if start <= at < end) / (end - start)


def _share_one_limit(
    starts: tuple[float, ...], *, seconds: float, limit_per_minute: float = 10_000, budget_per_minute: float = 9000,
    burst_seconds: float = 1.0, rtt: float = 0.1, workers: int = 20, seed: int = 1,
    make: MakeBudget | None = None,
) -> list[Connection]:
    now = [0.0]

    def clock() -> float:
        return now[0]

    def default(per_minute: float, clock: Callable[[], float]) -> RateBudget:
        return RateBudget(per_minute, clock=clock, sleep=lambda s: None)

    build = make or default
    connections = [Connection(build(budget_per_minute, clock), start) for start in starts]
    dice = random.Random(seed)
    rate = limit_per_minute / 60.0
    capacity = rate * burst_seconds
    tokens, refilled = capacity, 0.0
    events: list[tuple[float, int, str, int, float]] = []  # (when, order, what, connection, sent)
    order = 0

    def at(when: float, what: str, index: int, sent: float = 0.0) -> None:
        nonlocal order
        order += 1
        heapq.heappush(events, (when, order, what, index, sent))

    for index, connection in enumerate(connections):
        for _ in range(workers):
            at(connection.start, "acquire", index)
    while events:
        when, _, what, index, sent = heapq.heappop(events)
        if when > seconds:
            break
        now[0] = when
        budget = connections[index].budget
        if what == "acquire":
            with budget._lock:  # the slot a worker reserves, without sleeping on the fake clock
                wait = budget._reserve(when)
            at(when + wait + dice.random() * 0.003, "send", index)
        elif what == "send":
            tokens, refilled = min(capacity, tokens + (when - refilled) * rate), when
            if tokens >= 1:
                tokens -= 1
                connections[index].accepted.append(when)
                at(when + rtt, "accepted", index, when)
            else:
                at(when + 0.0005, "refused", index, when)
        elif what == "accepted":
            budget.on_success(sent)
            at(when, "acquire", index)
        else:
            budget.on_throttled(None, sent)
            at(when, "acquire", index)
    return connections


def _split(make: MakeBudget | None, seed: int) -> tuple[float, float]:
    """(together as a share of the limit, the larger connection's distance from a fair share) from
    5 s to 40 s of two connections that start 0.3 s apart."""
    first, second = _share_one_limit((0.0, 0.3), seconds=40.0, seed=seed, make=make)
    a, b = first.rate(5.0, 40.0), second.rate(5.0, 40.0)
    return (a + b) / (10_000 / 60), abs(2 * a / (a + b) - 1.0)


def _before(per_minute: float, clock: Callable[[], float]) -> RateBudget:
    # The budget before issue 20's two-connection row: a probe of 1% of the connection's own rate a
    # second (``probe_rate_multiple=1``), never faster however long no 429 came.
    return RateBudget(per_minute, clock=clock, sleep=lambda s: None, probe_rate_multiple=1.0,
                      speedup_after_seconds=float("inf"))


@pytest.mark.parametrize("seed", range(8))
def test_two_connections_share_the_limit_fairly_and_use_it_together(seed: int) -> None:
    together, off = _split(None, seed)
    assert together >= 0.98
    assert off <= 0.08  # the line is 10% of a fair share


def test_before_the_additive_probe_the_first_episodes_split_stayed() -> None:
    # Why the probe is additive and speeds up, kept as a test: over the same eight runs the budget
    # before them kept one run's chance split of the first episode (0.79 / 1.21 of a fair share) for
    # 35 s, and was further from fair on average.
    now = [_split(None, seed)[1] for seed in range(8)]
    before = [_split(_before, seed)[1] for seed in range(8)]
    assert max(before) >= 0.15 > 0.08 >= max(now)
    assert sum(now) < 0.7 * sum(before)
