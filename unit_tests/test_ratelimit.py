"""Shared request budget with a fake clock and sleep: pacing, small burst, dips on 429 and fast return."""

from __future__ import annotations

import heapq
import logging
import random
import threading
from collections.abc import Callable
from typing import TypedDict, Unpack

import pytest

from destination_crowdtwist.api.ratelimit import RateBudget, Report


class Knobs(TypedDict, total=False):
    """The tuning keywords of ``RateBudget`` these tests set (a misspelt or retyped one is a type error)."""

    burst_seconds: float
    decrease_factor: float
    backoff_factor: float
    recovery_seconds: float
    reveal_margin: float


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


def _budget(per_minute: float, t: FakeTime, report: Report | None = None, **knobs: Unpack[Knobs]) -> RateBudget:
    return RateBudget(per_minute, clock=t.clock, sleep=t.sleep, report=report, **knobs)


def _succeed_for(budget: RateBudget, t: FakeTime, seconds: float, per_second: int = 100) -> None:
    """Answers that are not 429, evenly spread over ``seconds``."""
    for _ in range(round(seconds * per_second)):
        t.now += 1.0 / per_second
        budget.on_success()


def _send_at_pace(budget: RateBudget, t: FakeTime, server_per_second: float, until: Callable[[], bool]) -> None:
    """Send at the budget's pace (answers at once) to a server that accepts ``server_per_second``
    evenly and answers 429 to the rest, until ``until()`` holds."""
    start, accepted = t.now, 0
    while not until():
        budget.acquire()
        if accepted < server_per_second * (t.now - start):
            accepted += 1
            budget.on_success()
        else:
            budget.on_throttled(None)


# -- pacing ----------------------------------------------------------------------------------------


def test_a_fresh_budget_starts_paced_without_burst_credit() -> None:
    t = FakeTime()
    budget = _budget(600, t)  # 10/s
    for _ in range(4):
        budget.acquire()
    assert t.sleeps == [0.1, 0.1, 0.1]


def test_after_idle_only_50_ms_of_burst_then_smooth_pacing() -> None:
    t = FakeTime()
    budget = _budget(6000, t)  # 100/s: 50 ms of burst = 5 requests back to back
    t.now += 5
    for _ in range(8):
        budget.acquire()
    assert t.sleeps == [0.01, 0.01, 0.01]
    assert budget.acquired == 8
    assert budget.waited_seconds == pytest.approx(0.03)


def test_a_long_wait_refills_no_more_than_the_small_burst() -> None:
    # E.g. every worker waking up after the award-queue wait: they go paced, not all at once.
    t = FakeTime()
    budget = _budget(6000, t)
    t.now += 3600
    for _ in range(20):
        budget.acquire()
    assert len(t.sleeps) == 15 and set(t.sleeps) == {0.01}


def test_below_20_per_second_there_is_no_burst_at_all() -> None:
    t = FakeTime()
    budget = _budget(600, t)  # one interval (100 ms) is longer than the 50 ms tolerance
    t.now += 60
    for _ in range(3):
        budget.acquire()
    assert t.sleeps == [0.1, 0.1]


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


# -- 429: dip, fast return, gentle probe -------------------------------------------------------------


def test_a_lone_429_backs_off_a_step_dips_and_returns_within_half_a_second() -> None:
    t = FakeTime()
    budget = _budget(6000, t)  # 100/s
    budget.on_throttled(None)
    assert budget.good_rate == pytest.approx(5880)  # nothing revealed: one step (98%) below the rate that drew it
    assert budget.current_rate == pytest.approx(4704)  # the dip: 80% of the good rate
    _succeed_for(budget, t, 0.25)
    assert budget.current_rate == pytest.approx(5292)
    _succeed_for(budget, t, 0.25)
    assert budget.current_rate == pytest.approx(5880)  # back at the good rate after 0.5 s
    _succeed_for(budget, t, 1.0)
    # Then a gentle probe upward: 1% of the maximum (60/min) per second, the same step for every
    # connection with this budget (additive; 1% of its own rate would be 5,939.1).
    assert budget.current_rate == pytest.approx(5880 + 60, abs=0.7)
    _succeed_for(budget, t, 10.0)
    assert budget.current_rate == 6000
    assert (budget.throttled, budget.rate_cuts, budget.pauses) == (1, 1, 0)


def test_after_five_seconds_without_a_429_the_probe_doubles_every_second() -> None:
    # A connection left alone (the other one's sync ended) climbs from its share to its budget in
    # seconds, not in the ~45 s of the gentle probe.
    t = FakeTime()
    budget = _budget(9000, t)
    for _ in range(10):
        budget.on_throttled(None)
    _send_at_pace(budget, t, 75.0, until=lambda: budget.good_rate < 5000)  # half the budget revealed
    _succeed_for(budget, t, 0.5)  # back at the good rate
    quiet_from = t.now
    rates = []
    for _ in range(8):
        before = budget.current_rate
        _succeed_for(budget, t, 1.0)
        rates.append(budget.current_rate - before)
    assert t.now - quiet_from == pytest.approx(8.0)
    # 90/min a second (1% of the maximum) while the last 429 is less than 5 s old ...
    assert rates[:4] == pytest.approx([90.0] * 4, abs=1.0)
    # ... then twice as much every second (the last 429 came 0.5 s before the climb: 184, 368 and
    # 737/min a second in the seconds that end 6.5, 7.5 and 8.5 s after it).
    assert rates[6] == pytest.approx(2 * rates[5], rel=0.01)
    assert rates[7] == pytest.approx(2 * rates[6], rel=0.01)
    _succeed_for(budget, t, 3.0)
    assert budget.current_rate == 9000  # at its budget 11.5 s after the last 429


def test_far_below_the_maximum_the_probe_is_bounded_by_the_rate() -> None:
    # A server far below the budget (5/s against 150/s): 1% of the maximum a second would be 30% of
    # the rate a second; the probe adds at most 3% of the rate a second.
    t = FakeTime()
    budget = _budget(9000, t)
    for _ in range(10):
        budget.on_throttled(None)
    # The window stays open until it holds 20 accepted answers (4 s at 5/s), then reveals the rate.
    _send_at_pace(budget, t, 5.0, until=lambda: budget.good_rate < 1000)
    good = budget.good_rate
    assert good == pytest.approx(5 * 0.97 * 60, rel=0.05)
    _succeed_for(budget, t, 0.5, per_second=10)  # back at the good rate
    assert budget.current_rate == pytest.approx(good)
    _succeed_for(budget, t, 1.0, per_second=10)
    assert budget.current_rate == pytest.approx(good * 1.03 ** 1, rel=0.002)


def test_a_burst_of_429s_from_requests_already_in_flight_cuts_once() -> None:
    t = FakeTime()
    budget = _budget(6000, t)
    for _ in range(20):  # twenty requests in flight all hit the limit at the same moment
        budget.on_throttled(None)
    assert budget.current_rate == pytest.approx(4704)
    assert (budget.throttled, budget.rate_cuts) == (20, 1)


def test_when_429s_keep_coming_the_next_cut_paces_just_below_the_rate_the_server_revealed() -> None:
    t = FakeTime()
    budget = _budget(9000, t)  # 150/s against a server that accepts 100/s
    for _ in range(10):
        budget.on_throttled(None)  # the first cut, and the requests that were in flight with it
    # Sending at our pace, the server accepts 100 answers a second and refuses the rest; the first
    # 429 after the cool-down is the second cut.
    _send_at_pace(budget, t, 100.0, until=lambda: budget.rate_cuts == 2)
    assert budget.good_rate == pytest.approx(100 * 0.97 * 60, rel=0.02)
    assert budget.current_rate == pytest.approx(budget.good_rate * 0.8)


def test_a_revealed_rate_above_the_one_that_drew_the_429_is_not_trusted() -> None:
    t = FakeTime()
    budget = _budget(6000, t)  # 100/s
    for _ in range(10):
        budget.on_throttled(None)  # good 98/s
    _succeed_for(budget, t, 2.0, per_second=150)  # more answers than we sent: a bucket full of credit
    drew_it = budget.good_rate  # 98/s plus 1.5 s of gentle probing
    budget.on_throttled(None)
    # Not 150/s: at most the rate that drew the 429 (and here no reveal at all: the answers were not
    # for requests sent at our pace, so it is a step).
    assert budget.good_rate <= drew_it * 0.98 + 1e-6


def test_429s_while_sending_below_the_pace_reveal_nothing() -> None:
    # Issue 20: the connector sends 45 requests/s (held back by its in-flight target, not by the
    # pace of 10,000/min) and one in 30 draws a 429 from a 3-request server bucket (bunched
    # arrivals). What the server accepted is our own throughput, not its rate: never pace at it.
    t = FakeTime()
    budget = _budget(10_000, t)
    for n in range(1, 45 * 20):  # 20 s
        t.now += 1 / 45
        budget.acquire()
        if n % 30 == 0:
            budget.on_throttled(None)
        else:
            budget.on_success()
    assert budget.rate_cuts >= 10
    assert t.sleeps == []  # the pace never held anything back
    # Each cut only backs off a step and the probe climbs back: nowhere near 45/s = 2,700/min.
    assert budget.good_rate > 8_000


def test_a_lone_429_long_after_the_last_cut_reveals_nothing() -> None:
    t = FakeTime()
    budget = _budget(6000, t)
    budget.on_throttled(None)
    _succeed_for(budget, t, 3.0)  # 300 answers and no 429: the server was not saturated
    drew_it = budget.good_rate
    budget.on_throttled(None)
    assert budget.good_rate == pytest.approx(drew_it * 0.98)


def test_an_old_cut_reveals_nothing() -> None:
    t = FakeTime()
    budget = _budget(6000, t)
    budget.on_throttled(None)  # good 98/s
    t.now += 60  # a minute without answers, then a 429: 0 answers since the cut proves nothing
    budget.on_throttled(None)
    assert budget.good_rate == pytest.approx(98 * 0.98 * 60)


def test_the_rate_never_goes_below_the_floor_and_the_floor_never_above_the_maximum() -> None:
    t = FakeTime()
    budget = _budget(6000, t)
    # Sending at our pace, everything refused: separate congestion events with nothing accepted in between
    # (nothing measured either, so each cut backs off a step) until the floor, and then no lower.
    _send_at_pace(budget, t, 0.0, until=lambda: budget.current_rate <= 60)
    cuts = budget.rate_cuts
    _send_at_pace(budget, t, 0.0, until=lambda: budget.rate_cuts == cuts + 5)
    assert budget.current_rate == 60  # floor 1/s
    slow = _budget(30, t)  # 0.5/s, below the 1/s floor
    slow.on_throttled(None)
    assert slow.current_rate == 30


def test_a_cut_cancels_burst_credit_and_paces_at_the_dipped_rate() -> None:
    t = FakeTime()
    budget = _budget(600, t)  # 10/s
    t.now += 10
    budget.on_throttled(None)  # dip to 0.8 x 9.8 = 7.84/s
    budget.acquire()
    budget.acquire()
    assert t.sleeps == pytest.approx([1 / 7.84, 1 / 7.84])


def test_one_answer_after_a_long_gap_counts_as_one_second_at_most() -> None:
    t = FakeTime()
    budget = _budget(6000, t, recovery_seconds=4.0)
    budget.on_throttled(None)  # 78.4/s, good 98/s, back in 4 s: +4.9/s per second
    t.now += 100.0
    budget.on_success()
    assert budget.current_rate == pytest.approx((78.4 + 4.9) * 60)


# -- Retry-After ------------------------------------------------------------------------------------


def test_a_short_retry_after_is_a_rate_signal_not_a_pause_for_everyone() -> None:
    # Issue 12 C9: a 1 s Retry-After on every 429 used to stop every worker for a second each time.
    t = FakeTime()
    budget = _budget(6000, t)
    budget.on_throttled(1.0)
    assert (budget.pauses, budget.rate_cuts) == (0, 1)
    budget.acquire()
    assert t.sleeps == pytest.approx([1 / 78.4])  # paced at the dip, not paused for 1 s


def test_a_long_retry_after_pauses_everyone_then_resumes_paced() -> None:
    t = FakeTime()
    budget = _budget(600, t)
    budget.on_throttled(30.0)  # a used-up fixed window: every request would be refused until then
    assert budget.current_rate == 600  # a pause, not a cut
    budget.acquire()
    budget.acquire()
    assert t.sleeps == [30.0, 0.1]
    assert (budget.pauses, budget.rate_cuts) == (1, 0)


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


# -- against a token-bucket server (fake clock, no threads) ------------------------------------------


def _against_token_bucket(
    budget_per_minute: int, limit_per_minute: int, burst: int, rtt: float, seconds: float = 60.0, jitter: bool = False
) -> tuple[float, int]:
    """Send at the budget's pace to a server bucket checked when the answer leaves; returns
    (accepted answers per second after the first 10 s / the server's rate, number of 429s).

    ``jitter``: each request reaches the bucket a little late (1 ms on average, and 12 ms more one
    time in fifty: a server thread that woke up late), from a seeded generator, so requests bunch up
    now and then as on a busy machine.
    """
    now = [0.0]
    budget = RateBudget(budget_per_minute, clock=lambda: now[0], sleep=lambda s: None)
    rate = limit_per_minute / 60.0
    dice = random.Random(7)
    tokens, refilled = float(burst), 0.0
    answers: list[float] = []
    accepted_late = refused = 0
    sent = 0.0
    while sent < seconds:
        with budget._lock:
            sent += budget._reserve(sent)
        while answers and answers[0] <= sent:
            at = now[0] = heapq.heappop(answers)
            tokens, refilled = min(burst, tokens + (at - refilled) * rate), at
            if tokens >= 1:
                tokens -= 1
                accepted_late += at >= 10.0
                budget.on_success()
            else:
                refused += 1
                budget.on_throttled(1.0)  # with the sandbox's 1 s Retry-After
        now[0] = sent
        late = dice.expovariate(1000) + (0.012 if dice.random() < 0.02 else 0.0) if jitter else 0.0
        heapq.heappush(answers, sent + rtt + late)
    return accepted_late / (seconds - 10.0) / rate, refused


@pytest.mark.parametrize(
    ("budget", "limit", "burst", "rtt", "at_least", "max_429"),
    [
        (9000, 6000, 100, 0.1, 0.98, 80),  # budget 50% above the server's limit
        (9000, 6000, 100, 0.5, 0.98, 140),  # ... with 500 ms round trips
        (9000, 6000, 10, 0.1, 0.96, 80),  # ... and a server burst of 0.1 s, not 1 s
        (6000, 3000, 50, 0.1, 0.98, 90),  # budget twice the limit
        (10000, 10000, 166, 0.5, 0.99, 0),  # budget = limit: no 429 at all
        (6000, 6000, 3, 0.1, 0.99, 0),  # budget = limit, a 3-request server burst
    ],
)
def test_settles_near_the_limit_a_token_bucket_server_reveals(
    budget: int, limit: int, burst: int, rtt: float, at_least: float, max_429: int
) -> None:
    share, refused = _against_token_bucket(budget, limit, burst, rtt)
    assert share >= at_least
    assert refused <= max_429


@pytest.mark.parametrize("rtt", [0.1, 0.5])
def test_lone_429s_from_bunched_arrivals_cost_little(rtt: float) -> None:
    # Budget = limit and a 3-request server bucket: the 429s come from requests arriving bunched,
    # not from the average rate, so each one backs off a step and probes back up.
    share, refused = _against_token_bucket(10000, 10000, 3, rtt, jitter=True)
    assert share >= 0.98
    assert 0 < refused <= 10


@pytest.mark.parametrize(
    ("max_per_minute", "knobs"),
    [
        (0, Knobs()),
        (60, Knobs(decrease_factor=1.0)),
        (60, Knobs(backoff_factor=0.0)),
        (60, Knobs(reveal_margin=1.5)),
        (60, Knobs(recovery_seconds=0.0)),
    ],
)
def test_invalid_arguments(max_per_minute: float, knobs: Knobs) -> None:
    with pytest.raises(ValueError, match="must"):
        RateBudget(max_per_minute, **knobs)


# -- throttling episodes reported to the operator (issue 18 §4) --------------------------------------


def test_a_throttling_episode_logs_one_warning_and_one_recovery_line() -> None:
    t = FakeTime()
    lines: list[tuple[int, str]] = []
    budget = _budget(9000, t, report=lambda level, line: lines.append((level, line)))
    _succeed_for(budget, t, 2.0)
    assert lines == []
    # 44 answers 429 over ~20 s (one every ~0.5 s, several congestion events): one WARN only.
    for _ in range(44):
        budget.on_throttled(None)
        _succeed_for(budget, t, 0.45)
    assert len(lines) == 1
    level, warning = lines[0]
    assert level == logging.WARNING
    assert "HTTP 429" in warning and "of 9,000/min" in warning
    assert f"{budget.max_rate * 0.98 * 0.8:,.0f}/min" in warning  # the rate after the first cut
    # Still within the quiet time: no recovery line yet.
    _succeed_for(budget, t, 29.0)
    assert len(lines) == 1
    _succeed_for(budget, t, 2.0)
    assert len(lines) == 2
    level, recovered = lines[1]
    assert level == logging.INFO
    assert f"{budget.current_rate:,.0f}/min of 9,000/min" in recovered
    assert "44 answers were HTTP 429" in recovered
    # The next episode reports again, once.
    budget.on_throttled(None)
    budget.on_throttled(None)
    assert [level for level, _ in lines] == [logging.WARNING, logging.INFO, logging.WARNING]


def test_a_long_retry_after_pause_is_one_episode_too() -> None:
    t = FakeTime()
    lines: list[tuple[int, str]] = []
    budget = _budget(600, t, report=lambda level, line: lines.append((level, line)))
    budget.on_throttled(60.0)
    assert len(lines) == 1 and "Retry-After 60 s" in lines[0][1]
    _succeed_for(budget, t, 40.0, per_second=1)  # still paused for 20 s of it, then quiet for only 10 s
    assert len(lines) == 1
    _succeed_for(budget, t, 60.0, per_second=1)
    assert [level for level, _ in lines] == [logging.WARNING, logging.INFO]

