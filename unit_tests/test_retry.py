"""Pure retry policy: exact delay sequences with injected randomness, Retry-After parsing."""

from __future__ import annotations

import pytest

from destination_crowdtwist.api.retry import (
    RetryPolicy,
    add_jitter,
    backoff_delay,
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


def test_policy_defaults_and_exact_sequence_then_give_up() -> None:
    policy = RetryPolicy()
    assert (policy.max_retries, policy.base, policy.cap, policy.retry_after_cap) == (3, 0.5, 30.0, 60.0)
    delays = [policy.next_delay(n, retry_after=None, rand=lambda: 0.0) for n in (1, 2, 3, 4)]
    assert delays == [0.25, 0.5, 1.0, None]


def test_policy_honours_retry_after_within_cap() -> None:
    policy = RetryPolicy()
    assert policy.next_delay(1, retry_after=7.0, rand=lambda: 0.0) == 7.0
    assert policy.next_delay(2, retry_after=0.0, rand=lambda: 0.0) == 0.0
    assert policy.next_delay(1, retry_after=3600.0, rand=lambda: 0.0) == 60.0
    assert policy.next_delay(4, retry_after=1.0, rand=lambda: 0.0) is None


def test_policy_with_zero_retries_never_retries() -> None:
    assert RetryPolicy(max_retries=0).next_delay(1, retry_after=None, rand=lambda: 0.5) is None
