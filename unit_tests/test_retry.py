"""Pure retry decisions as a table, exact delay sequences with injected randomness, Retry-After parsing."""

from __future__ import annotations

from typing import Any

import pytest

from destination_crowdtwist.api.errors import Bound
from destination_crowdtwist.api.retry import (
    LOST,
    UNREACHABLE,
    Decision,
    GiveUp,
    Outcome,
    Retry,
    RetryPolicy,
    Tally,
    Uncertain,
    add_jitter,
    answered,
    backoff_delay,
    decide,
    exponential_delay,
    parse_retry_after,
)

NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("  ", None),
        ("0", 0.0),
        ("7", 7.0),
        (" 120 ", 120.0),
        ("-3", None),
        ("1.5", None),  # RFC 9110 delta-seconds are whole numbers
        ("soon", None),
        ("Tue, 14 Nov 2023 22:13:50 GMT", 30.0),
        ("Tue, 14 Nov 2023 22:13:00 GMT", 0.0),  # in the past: retry now
        ("Tue, 14 Nov 2023 22:13:50 -0000", None),  # not a valid HTTP-date zone
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


def test_exponential_delay_is_capped() -> None:
    assert [exponential_delay(n, base=0.5, cap=30.0) for n in range(1, 9)] == [
        0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0,
    ]
    assert exponential_delay(10_000, base=0.5, cap=30.0) == 30.0
    with pytest.raises(ValueError, match="from 1"):
        exponential_delay(0, base=0.5, cap=30.0)


def test_jitter_is_equal_jitter() -> None:
    assert add_jitter(4.0, lambda: 0.0) == 2.0
    assert add_jitter(4.0, lambda: 0.5) == 3.0
    assert add_jitter(4.0, lambda: 0.999) == pytest.approx(3.998)


def test_backoff_delay_combines_both() -> None:
    assert [backoff_delay(n, base=0.5, cap=30.0, rand=lambda: 0.5) for n in (1, 2, 3, 4)] == [
        0.375, 0.75, 1.5, 3.0,
    ]


# UNREACHABLE: refused, DNS, connect timeout; LOST: read timeout, dropped connection, attempt deadline.
# An answer's outcome comes from its status's row of the status table: answered(status).
POLICY = RetryPolicy()  # max_retries 3, base 0.5, cap 30, retry_after_cap 60, 429: 600 s, 503: 300 s, wait_cap 16


def summary(decision: Decision) -> tuple[Any, ...]:
    if isinstance(decision, Retry):
        return ("retry", decision.delay, decision.tally)
    if isinstance(decision, GiveUp):
        return ("give up", decision.reason)
    assert isinstance(decision, Uncertain)
    return ("uncertain",)


# (id, outcome, tally before, seconds since the first failure, idempotent, expected summary); rand() = 0
DECISIONS = [
    # Nothing was sent: safe for any request, counted against max_retries.
    ("unreachable credit", UNREACHABLE, Tally(), 0.0, False, ("retry", 0.25, Tally(1, 0))),
    ("unreachable third retry", UNREACHABLE, Tally(2, 0), 9.0, True, ("retry", 1.0, Tally(3, 0))),
    ("unreachable exhausted", UNREACHABLE, Tally(3, 0), 9.0, False, ("give up", "Gave up after 4 attempts.")),
    # May have been applied: only idempotent requests are repeated.
    ("lost idempotent", LOST, Tally(1, 0), 1.0, True, ("retry", 0.5, Tally(2, 0))),
    ("lost credit", LOST, Tally(), 0.0, False, ("uncertain",)),
    ("lost exhausted", LOST, Tally(3, 0), 1.0, True, ("give up", "Gave up after 4 attempts.")),
    ("500 idempotent", answered(500), Tally(2, 0), 1.0, True, ("retry", 1.0, Tally(3, 0))),
    ("500 credit", answered(500), Tally(), 0.0, False, ("uncertain",)),
    ("500 exhausted", answered(500), Tally(3, 0), 1.0, True, ("give up", "Gave up after 4 attempts.")),
    ("500 retry-after capped", answered(500, retry_after=120.0), Tally(), 0.0, True, ("retry", 60.0, Tally(1, 0))),
    ("200 not JSON idempotent", answered(200), Tally(), 0.0, True, ("retry", 0.25, Tally(1, 0))),
    ("200 not JSON credit", answered(200), Tally(), 0.0, False, ("uncertain",)),
    # 408: the server did not run the request; safe, counted.
    ("408 credit", answered(408), Tally(), 0.0, False, ("retry", 0.25, Tally(1, 0))),
    ("408 exhausted", answered(408), Tally(3, 0), 1.0, False, ("give up", "Gave up after 4 attempts.")),
    # 429: safe, bounded by throttle_timeout, not by max_retries; waits count separately.
    ("429 credit", answered(429), Tally(), 0.0, False, ("retry", 0.25, Tally(0, 1))),
    ("429 past max_retries", answered(429), Tally(3, 8), 100.0, True, ("retry", 8.0, Tally(3, 9))),
    ("429 retry-after wins", answered(429, retry_after=7.0), Tally(), 0.0, True, ("retry", 7.0, Tally(0, 1))),
    ("429 retry-after capped", answered(429, retry_after=3600.0), Tally(), 0.0, True, ("retry", 60.0, Tally(0, 1))),
    ("429 wait cut to the bound", answered(429, retry_after=30.0), Tally(0, 9), 590.0, True,
     ("retry", 10.0, Tally(0, 10))),
    ("429 past throttle_timeout", answered(429), Tally(1, 9), 600.0, False,
     ("give up", "Gave up after 11 attempts in 600s.")),
    # 503: may have been applied, so never repeated for a credit; otherwise bounded by unavailable_timeout.
    ("503 past max_retries", answered(503), Tally(3, 2), 10.0, True, ("retry", 1.0, Tally(3, 3))),
    ("503 credit", answered(503), Tally(), 0.0, False, ("uncertain",)),
    ("503 retry-after cut to the bound", answered(503, retry_after=3600.0), Tally(0, 4), 280.0, True,
     ("retry", 20.0, Tally(0, 5))),
    ("503 past unavailable_timeout", answered(503), Tally(0, 12), 300.0, True,
     ("give up", "Gave up after 13 attempts in 300s.")),
]


@pytest.mark.parametrize(
    ("outcome", "tally", "elapsed", "idempotent", "expected"),
    [row[1:] for row in DECISIONS],
    ids=[row[0] for row in DECISIONS],
)
def test_decision_row(outcome: Outcome, tally: Tally, elapsed: float, idempotent: bool,
                      expected: tuple[Any, ...]) -> None:
    decision = decide(outcome, tally, elapsed, idempotent=idempotent, policy=POLICY, rand=lambda: 0.0)
    assert summary(decision) == expected


def test_counted_sequence_then_give_up() -> None:
    tally, delays = Tally(), []
    while isinstance(decision := decide(answered(502), tally, 0.0, idempotent=True, policy=POLICY, rand=lambda: 0.0),
                     Retry):
        delays.append(decision.delay)
        tally = decision.tally
    assert delays == [0.25, 0.5, 1.0]
    assert summary(decision) == ("give up", "Gave up after 4 attempts.")


def test_waits_back_off_to_the_wait_cap() -> None:
    delays = [summary(decide(answered(429), Tally(0, n), 0.0, idempotent=True, policy=POLICY, rand=lambda: 0.0))[1]
              for n in range(8)]
    assert delays == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_zero_time_bound_gives_up_at_once_and_zero_retries_never_retry() -> None:
    impatient = RetryPolicy(max_retries=0, throttle_timeout=0.0, unavailable_timeout=0.0)
    for outcome in (answered(429), answered(503), answered(500), UNREACHABLE):
        decision = decide(outcome, Tally(), 0.0, idempotent=True, policy=impatient, rand=lambda: 0.5)
        assert isinstance(decision, GiveUp)


def test_retry_notes_say_which_bound_applies() -> None:
    counted = decide(answered(500), Tally(1, 0), 0.0, idempotent=True, policy=POLICY, rand=lambda: 0.0)
    timed = decide(answered(503), Tally(), 12.0, idempotent=True, policy=POLICY, rand=lambda: 0.0)
    assert isinstance(counted, Retry) and counted.note == "retry 2 of 3"
    assert isinstance(timed, Retry) and timed.note == "HTTP 503 for 12s, waiting at most 300s"


def test_honoured_retry_after_is_clamped() -> None:
    assert (POLICY.max_retries, POLICY.base, POLICY.cap, POLICY.retry_after_cap, POLICY.throttle_timeout,
            POLICY.unavailable_timeout, POLICY.wait_cap) == (3, 0.5, 30.0, 60.0, 600.0, 300.0, 16.0)
    policy = RetryPolicy(retry_after_cap=60.0)
    assert [policy.honoured_retry_after(v) for v in (-5.0, 0.0, 7.0, 3600.0)] == [0.0, 0.0, 7.0, 60.0]
    assert RetryPolicy().time_bound(answered(429).bound) == 600.0
    assert RetryPolicy().time_bound(answered(503).bound) == 300.0
    assert RetryPolicy().time_bound(answered(500).bound) is None
    assert RetryPolicy().time_bound(Bound.COUNT) is None


@pytest.mark.parametrize(
    ("outcome", "processed", "bound"),
    [
        (UNREACHABLE, False, Bound.COUNT),
        (LOST, True, Bound.COUNT),
        (answered(200), True, Bound.COUNT),  # a 2xx whose body is not JSON or too large
        (answered(400), True, Bound.COUNT),  # a 4xx whose body is too large
        (answered(408), False, Bound.COUNT),
        (answered(429), False, Bound.THROTTLE),
        (answered(500), True, Bound.COUNT),
        (answered(503), True, Bound.UNAVAILABLE),
        (answered(504), True, Bound.COUNT),
    ],
)
def test_outcomes_carry_the_facts_of_their_row(outcome: Outcome, processed: bool, bound: Bound) -> None:
    # decide() reads these two facts, never a status: the status table (api/errors.py) supplies them.
    assert (outcome.processed, outcome.bound) == (processed, bound)
