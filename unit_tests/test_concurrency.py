"""The in-flight target (pure, fake clock) and the adjustable gate the client passes before each attempt."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import urllib3.response
from fakehttp import json_response

from destination_crowdtwist.api.client import CrowdTwistClient
from destination_crowdtwist.api.concurrency import InFlightGate, InFlightTarget
from destination_crowdtwist.api.flow import FlowControl
from destination_crowdtwist.api.ratelimit import RateBudget
from destination_crowdtwist.api.signing import ApiKeyAuth


class FakeClock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


def _feed(target: InFlightTarget, clock: FakeClock, rtt: float, seconds: float, per_second: int = 100) -> None:
    """RTT samples of ``rtt`` arriving evenly over ``seconds``."""
    for _ in range(round(seconds * per_second)):
        clock.now += 1.0 / per_second
        target.observe(rtt)


BUDGET = 10_000 / 60  # requests per second


@pytest.mark.parametrize(
    ("rtt", "expected"),
    [
        # ceil(rate x RTT x 1.25) + 2, at 10,000/minute
        (0.0, 2),
        (0.02, 7),
        (0.1, 23),
        (0.3, 65),
        (0.5, 107),
        (0.6, 127),
        (0.7, 128),  # the ceiling
        (2.0, 128),
    ],
)
def test_target_is_budget_times_rtt_with_headroom_within_the_ceiling(rtt: float, expected: int) -> None:
    clock = FakeClock()
    target = InFlightTarget(128, clock=clock)
    target.observe(rtt)
    assert target.target(BUDGET) == expected


def test_target_rises_with_the_measured_rtt() -> None:
    clock = FakeClock()
    target = InFlightTarget(128, clock=clock)
    seen = []
    for rtt in (0.02, 0.1, 0.3, 0.5):
        # 25 s: the average has moved, and the recent minimum has forgotten the faster route
        _feed(target, clock, rtt, seconds=25.0, per_second=20)
        seen.append(target.target(BUDGET))
    assert seen == sorted(seen) and len(set(seen)) == 4
    assert seen[0] <= 8 and seen[-1] >= 100
    assert target.srtt == pytest.approx(0.5, rel=0.01)


def test_target_falls_on_429_with_the_budget_and_comes_back() -> None:
    clock = FakeClock()
    budget = RateBudget(10_000, clock=clock, sleep=lambda s: None)
    target = InFlightTarget(128, clock=clock)
    _feed(target, clock, 0.3, seconds=3.0)
    before = target.target(budget.rate_per_second())
    assert before == 65
    budget.on_throttled(None)  # the rate dips to 0.8 x 0.98 of the budget, and the target with it
    assert target.target(budget.rate_per_second()) == 51
    for _ in range(100):  # half a second of answers
        clock.now += 0.005
        budget.on_success()
        target.observe(0.3)
    assert target.target(budget.rate_per_second()) == 64  # back at 98% of the budget


@pytest.mark.parametrize(
    ("base", "queued", "rate", "expected"),
    [
        # An overloaded server: answers went from 50 ms to 1 s because requests queue there; more in
        # flight would only lengthen the queue. Counted as 4 x 50 ms: ceil(166.7 x 0.2 x 1.25) + 2.
        (0.050, 1.0, BUDGET, 44),
        # A local server sharing our CPU: 2 ms became 130 ms. Counted as 2 ms + 8 ms of harmless
        # queueing: ceil(1666.7 x 0.010 x 1.25) + 2 (about the old fixed 20 workers), not the ceiling.
        (0.002, 0.130, 100_000 / 60, 23),
    ],
)
def test_rtt_growing_from_queueing_does_not_raise_the_target(
    base: float, queued: float, rate: float, expected: int
) -> None:
    clock = FakeClock()
    target = InFlightTarget(128, clock=clock)
    _feed(target, clock, base, seconds=1.0)
    _feed(target, clock, queued, seconds=5.0)
    assert target.srtt == pytest.approx(queued, rel=0.01)
    assert target.min_rtt == base
    assert target.target(rate) == expected


def test_the_recent_minimum_forgets_a_faster_past() -> None:
    clock = FakeClock()
    target = InFlightTarget(128, clock=clock)
    _feed(target, clock, 0.05, seconds=5.0)
    _feed(target, clock, 0.5, seconds=25.0)  # the route got slower for good: 20 to 30 s later it is the norm
    assert target.min_rtt == 0.5
    assert target.target(BUDGET) == 107


def test_endpoints_of_different_speed_are_not_queueing() -> None:
    clock = FakeClock()
    target = InFlightTarget(128, clock=clock)
    for _ in range(500):  # history reads at 100 ms, credits at 300 ms: a spread of 3, not queueing
        clock.now += 0.01
        target.observe(0.1)
        clock.now += 0.01
        target.observe(0.3)
    srtt = target.srtt
    assert srtt is not None and 0.15 < srtt < 0.25
    assert target.target(BUDGET) == math.ceil(BUDGET * srtt * 1.25) + 2


def test_smoothing_is_over_time_not_samples() -> None:
    clock = FakeClock()
    target = InFlightTarget(128, clock=clock)
    target.observe(0.1)
    for _ in range(50):  # fifty answers in the same instant barely move the average
        target.observe(1.0)
    assert target.srtt is not None and target.srtt < 0.3
    clock.now += 60.0  # one answer after a long silence moves it by a quarter at most
    target.observe(0.1)
    srtt = target.srtt
    assert srtt is not None and srtt > 0.1


def test_steady_rtt_gives_a_steady_target() -> None:
    clock = FakeClock()
    target = InFlightTarget(128, clock=clock)
    _feed(target, clock, 0.1, seconds=1.0)
    targets = set()
    for _ in range(10):
        _feed(target, clock, 0.1, seconds=1.0)
        targets.add(target.target(BUDGET))
    assert targets == {23}


def test_before_the_first_answer_the_rtt_is_assumed_to_be_100_ms_and_the_target_at_most_20() -> None:
    target = InFlightTarget(128, clock=FakeClock())
    assert target.srtt is None
    assert target.target(3000 / 60) == 9  # 50/s x 100 ms x 1.25 + 2
    assert target.target(9000 / 60) == 20  # the old fixed 20 workers, not 21
    assert target.target(100_000 / 60) == 20  # a huge budget does not start with the ceiling
    assert target.target(0.0) == 2
    assert InFlightTarget(1, clock=FakeClock()).target(BUDGET) == 1


@pytest.mark.parametrize(("ceiling", "headroom", "smoothing_seconds"), [(0, 1.25, 1.0), (4, 0.5, 1.0), (4, 1.25, 0.0)])
def test_invalid_arguments(ceiling: int, headroom: float, smoothing_seconds: float) -> None:
    with pytest.raises(ValueError, match="must"):
        InFlightTarget(ceiling, headroom=headroom, smoothing_seconds=smoothing_seconds)


# -- the gate (real threads) ----------------------------------------------------------------------


def _wait_until(condition: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_gate_holds_requests_beyond_the_target_and_releases_one_per_leave() -> None:
    rate = [10.0]
    # 10/s x 100 ms x 1.25 -> 2, + 2 spare = 4 in flight
    gate = InFlightGate(InFlightTarget(64, clock=FakeClock()), lambda: rate[0], slack=0)
    assert gate.limit == 4
    entered = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        gate.enter()
        with lock:
            entered.append(i)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(6)]
    for thread in threads:
        thread.start()
    _wait_until(lambda: len(entered) == 4)
    time.sleep(0.05)
    assert len(entered) == 4 and gate.in_flight == 4
    gate.leave(0.1)
    _wait_until(lambda: len(entered) == 5)
    rate[0] = 100.0  # the budget came back: 100/s x 100 ms x 1.25 + 2 = 15
    gate.leave(0.1)
    _wait_until(lambda: len(entered) == 6)
    for thread in threads:
        thread.join(timeout=5)
    assert gate.limit == 15 and gate.in_flight == 4 and gate.peak == 4


def test_slack_lets_a_thread_or_two_past_a_target_that_moved_by_one() -> None:
    gate = InFlightGate(InFlightTarget(64, clock=FakeClock()), lambda: 10.0)  # target 4, slack 2
    for _ in range(6):
        gate.enter()  # none of these blocks
    assert (gate.limit, gate.in_flight, gate.peak) == (4, 6, 6)
    blocked = threading.Thread(target=gate.enter, daemon=True)
    blocked.start()
    blocked.join(timeout=0.1)
    assert blocked.is_alive()  # the seventh waits
    gate.leave(0.1)
    blocked.join(timeout=5)
    assert not blocked.is_alive() and gate.in_flight == 6


def test_gate_status_line() -> None:
    gate = InFlightGate(InFlightTarget(128, clock=FakeClock()), lambda: BUDGET)
    assert gate.status() == "up to 20 requests at once (max_concurrency 128), round trip not measured yet"
    gate.enter()
    gate.leave(0.3125)
    assert gate.srtt == pytest.approx(0.3125)
    assert gate.status() == "up to 68 requests at once (max_concurrency 128), round trip 312 ms"


def test_a_failure_without_answer_is_no_rtt_sample() -> None:
    gate = InFlightGate(InFlightTarget(128, clock=FakeClock()), lambda: BUDGET)
    gate.enter()
    gate.leave(None)  # a 30 s read timeout must not teach the gate a 30 s round trip
    assert gate.srtt is None and gate.in_flight == 0


# -- fed by the client: which answers are round trips (fake time, scripted transport) ----------------


class _GatewayPool:
    """A connection pool on a fake clock: a request the application serves takes 100 ms; ``refuse`` 429s
    (no Retry-After) come back after 1 ms, as from a gateway in front of the application."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.refuse = 0
        self.sent = 0

    def urlopen(self, method: str, url: str, **kwargs: Any) -> urllib3.response.HTTPResponse:
        self.sent += 1
        status, took, data = (429, 0.001, {"error": "rate_limit_exceeded"}) if self.refuse else (200, 0.1, [])
        self.refuse = max(0, self.refuse - 1)
        self.clock.now += took
        return json_response(status, data)


def test_fast_429s_do_not_lower_the_rtt_and_the_target_returns_after_the_episode() -> None:
    # Issue 20: 429s answered at once by a gateway fed their 1 ms "round trips" to the controller,
    # which then read the real 100 ms as queueing and held the target at 4 (7 in the field) long
    # after the episode, far below what the server's limit allowed.
    clock = FakeClock()

    def sleep(seconds: float) -> None:
        clock.now += seconds

    budget = RateBudget(9000, clock=clock, sleep=sleep)
    gate = InFlightGate(InFlightTarget(128, clock=clock), budget.rate_per_second)
    adapter = _GatewayPool(clock)
    client = CrowdTwistClient("https://api1.crowdtwist.com", ApiKeyAuth("k" * 32), pool=adapter,
                              flow=FlowControl(budget, gate, clock=clock), clock=clock, sleep=sleep, rand=lambda: 0.0)
    for _ in range(30):  # 3 s of answers at 100 ms
        client.list_activities()
    assert gate.srtt == pytest.approx(0.1)
    before = gate.limit
    assert before == math.ceil(150 * 0.1 * 1.25) + 2  # 21
    # The throttle episode: ten requests each refused at once three times before they get through.
    for _ in range(10):
        adapter.refuse = 3
        client.list_activities()
    assert budget.throttled == 30 and budget.rate_cuts >= 5
    assert gate.srtt == pytest.approx(0.1)  # the RTT the target is sized by did not move
    # Within two seconds of answers the target is what the budget's rate needs at 100 ms again.
    for _ in range(20):
        client.list_activities()
    rate = budget.rate_per_second()
    assert rate == pytest.approx(budget.good_rate / 60)
    assert gate.limit == math.ceil(rate * 0.1 * 1.25) + 2
    assert gate.limit >= 15
    assert adapter.sent == 30 + 10 * 4 + 20
