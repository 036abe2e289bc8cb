"""Shared request budget with a fake clock and sleep: pacing, 429 handling, AIMD recovery."""

from __future__ import annotations

import threading

import pytest

from destination_crowdtwist.api.ratelimit import RateBudget


class FakeTime:
    """A clock that only moves when someone sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def clock(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(round(seconds, 9))
            self.now += seconds


def _budget(per_minute: float, t: FakeTime, **kwargs: float) -> RateBudget:
    return RateBudget(per_minute, clock=t.clock, sleep=t.sleep, **kwargs)


def test_a_fresh_budget_starts_paced_without_burst_credit() -> None:
    t = FakeTime()
    budget = _budget(600, t)  # 10/s
    for _ in range(4):
        budget.acquire()
    assert t.sleeps == [0.1, 0.1, 0.1]


def test_burst_after_idle_then_smooth_pacing() -> None:
    t = FakeTime()
    budget = _budget(600, t)  # 10/s, 1 s burst = 10 requests
    t.now += 5  # idle: one second's worth of burst credit builds up
    for _ in range(13):
        budget.acquire()
    assert t.sleeps == [0.1, 0.1, 0.1]
    assert budget.acquired == 13
    assert budget.waited_seconds == pytest.approx(0.3)
    assert budget.current_rate == 600


def test_idle_time_refills_only_up_to_the_burst() -> None:
    t = FakeTime()
    budget = _budget(600, t)
    t.now += 3600  # a long idle hour saves at most one second's worth
    for _ in range(11):
        budget.acquire()
    assert t.sleeps == [0.1]


def test_throttle_without_retry_after_halves_the_rate_down_to_a_floor() -> None:
    t = FakeTime()
    budget = _budget(600, t)
    budget.on_throttled(None)
    assert budget.current_rate == 300
    for _ in range(3):
        t.now += 1.0  # separate congestion events
        budget.on_throttled(None)
    assert budget.current_rate == 60  # floor 1/s
    assert (budget.throttled, budget.rate_cuts, budget.pauses) == (4, 4, 0)


def test_a_burst_of_429s_from_requests_already_in_flight_cuts_once() -> None:
    t = FakeTime()
    budget = _budget(600, t)
    for _ in range(20):  # twenty workers all hit the limit at the same moment
        budget.on_throttled(None)
    assert budget.current_rate == 300
    assert (budget.throttled, budget.rate_cuts) == (20, 1)
    t.now += 1.0
    budget.on_throttled(None)
    assert budget.current_rate == 150


def test_throttle_cancels_burst_and_paces_at_the_cut_rate() -> None:
    t = FakeTime()
    budget = _budget(600, t)
    budget.on_throttled(None)  # 5/s, burst credit gone
    budget.acquire()
    budget.acquire()
    assert t.sleeps == [0.2, 0.2]


def test_floor_never_exceeds_the_maximum() -> None:
    t = FakeTime()
    budget = _budget(30, t)  # 0.5/s, below the 1/s floor
    budget.on_throttled(None)
    assert budget.current_rate == 30


def test_retry_after_pauses_everyone_then_resumes_paced() -> None:
    t = FakeTime()
    budget = _budget(600, t)
    budget.on_throttled(5.0)
    assert budget.current_rate == 600  # a pause, not a cut
    budget.acquire()
    budget.acquire()
    assert t.sleeps == [5.0, 0.1]
    assert budget.pauses == 1


def test_pause_announced_while_waiting_applies_to_the_waiter() -> None:
    t = FakeTime()
    budget = _budget(60, t, burst_seconds=0.0)  # 1/s, no burst
    budget.acquire()
    original_sleep = t.sleep

    def sleep_and_get_throttled(seconds: float) -> None:
        original_sleep(seconds)
        if len(t.sleeps) == 1:
            budget.on_throttled(10.0)  # another worker got a 429 while we slept

    budget._sleep = sleep_and_get_throttled
    budget.acquire()
    assert t.sleeps[0] == 1.0
    assert t.now >= 1000.0 + 1.0 + 10.0
    assert budget.acquired == 2


def test_additive_recovery_is_gradual_and_capped() -> None:
    t = FakeTime()
    budget = _budget(600, t)
    budget.on_throttled(None)  # 300/min
    t.now += 1.0
    budget.on_success()  # +5% of max per second
    assert budget.current_rate == pytest.approx(330)
    t.now += 100.0
    budget.on_success()  # at most one second of credit per success
    assert budget.current_rate == pytest.approx(360)
    for _ in range(20):
        t.now += 1.0
        budget.on_success()
    assert budget.current_rate == 600


def test_many_threads_share_one_schedule() -> None:
    sleeps: list[float] = []
    lock = threading.Lock()

    def record(seconds: float) -> None:
        with lock:
            sleeps.append(round(seconds, 9))

    # A frozen clock: each thread's wait is then exactly its place in the shared schedule.
    budget = RateBudget(600, clock=lambda: 1000.0, sleep=record, burst_seconds=0.0)
    threads = [threading.Thread(target=budget.acquire) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert budget.acquired == 20
    # Every thread reserved its own slot: 19 of them waited, for 0.1 .. 1.9 s in some order.
    assert sorted(sleeps) == pytest.approx([round(0.1 * i, 9) for i in range(1, 20)])


@pytest.mark.parametrize("kwargs", [{"max_per_minute": 0}, {"max_per_minute": 60, "decrease_factor": 1.0}])
def test_invalid_arguments(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must"):
        RateBudget(**kwargs)
