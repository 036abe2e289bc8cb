"""The reader-to-main-thread hand-over: order, bounds, timeouts, and how rarely it wakes either side."""

from __future__ import annotations

import threading
import time

import pytest

from destination_crowdtwist.sync.inbox import Inbox


def test_the_consumer_takes_everything_queued_in_order() -> None:
    inbox: Inbox[int] = Inbox(maxsize=10)
    for i in range(7):
        assert inbox.put(i, timeout=0)
    assert inbox.take(timeout=0) == list(range(7))
    assert inbox.take(timeout=0) == []


def test_a_full_inbox_refuses_after_the_timeout_and_takes_again_once_emptied() -> None:
    inbox: Inbox[int] = Inbox(maxsize=3)
    assert all(inbox.put(i, timeout=0) for i in range(3))
    started = time.monotonic()
    assert not inbox.put(3, timeout=0.05)
    assert time.monotonic() - started >= 0.04
    assert inbox.take(timeout=0) == [0, 1, 2]
    assert inbox.put(3, timeout=0)
    assert inbox.take(timeout=0) == [3]


def test_an_empty_inbox_waits_for_the_timeout_then_returns_nothing() -> None:
    inbox: Inbox[int] = Inbox(maxsize=3)
    started = time.monotonic()
    assert inbox.take(timeout=0.05) == []
    assert time.monotonic() - started >= 0.04


def test_a_waiting_consumer_gets_the_first_item_at_once() -> None:
    # Nothing is held back for a batch: a lone message (a state after a quiet source) arrives at once.
    inbox: Inbox[str] = Inbox(maxsize=100)
    got: list[list[str]] = []
    taker = threading.Thread(target=lambda: got.append(inbox.take(timeout=5)))
    taker.start()
    time.sleep(0.05)
    started = time.monotonic()
    assert inbox.put("state", timeout=0)
    taker.join(5)
    assert got == [["state"]] and time.monotonic() - started < 1.0


def test_a_blocked_producer_wakes_once_per_emptying_and_nothing_is_lost_or_reordered() -> None:
    inbox: Inbox[int] = Inbox(maxsize=50)
    n = 5000
    waits = 0
    original = inbox._not_full.wait_for

    def counting_wait_for(predicate: object, timeout: float | None = None) -> bool:
        nonlocal waits
        waits += 1
        return original(predicate, timeout)  # type: ignore[arg-type]

    inbox._not_full.wait_for = counting_wait_for  # type: ignore[method-assign,assignment]

    def produce() -> None:
        for i in range(n):
            while not inbox.put(i, timeout=1):
                pass

    producer = threading.Thread(target=produce)
    producer.start()
    seen: list[int] = []
    while len(seen) < n:
        seen += inbox.take(timeout=1)
        time.sleep(0.0005)  # a slower consumer: the producer is ahead and waits for room
    producer.join(5)
    assert seen == list(range(n))
    # At most one wait per emptying of a full inbox (queue.Queue woke the producer per item taken).
    assert waits <= n // 50 + 1


def test_maxsize_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        Inbox(maxsize=0)
