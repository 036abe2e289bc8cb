"""The one flow-control object: the order of its parts per attempt, and what each result teaches them."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from destination_crowdtwist.api.concurrency import InFlightGate, InFlightTarget
from destination_crowdtwist.api.errors import Pace, TransientError
from destination_crowdtwist.api.flow import FlowControl
from destination_crowdtwist.api.ratelimit import RateBudget
from destination_crowdtwist.api.response import ApiResponse, Failure
from destination_crowdtwist.api.retry import LOST, UNREACHABLE


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Parts:
    """A spy budget and a spy gate writing into one list of calls."""

    def __init__(self, clock: Clock, capacity: int = 7) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.clock = clock
        self.capacity = capacity
        self.sent_at: list[float | None] = []  # what the budget heard as each answer's send time

    # the budget
    def acquire(self) -> float:
        self.clock.now += 2.0  # waiting for a paced slot is not part of the round trip
        self.calls.append(("acquire", None))
        return self.clock.now - 1.0  # the budget's own clock, here one second behind the flow's

    def on_throttled(self, retry_after: float | None, sent_at: float | None = None) -> None:
        self.calls.append(("throttled", retry_after))
        self.sent_at.append(sent_at)

    def on_success(self, sent_at: float | None = None) -> None:
        self.calls.append(("success", None))
        self.sent_at.append(sent_at)

    # the gate
    def enter(self) -> None:
        self.calls.append(("enter", None))

    def leave(self, rtt: float | None) -> None:
        self.calls.append(("leave", rtt))

    def status(self) -> str:
        return "status"


def _lost(pace: Pace = Pace.HOLD, pause: float | None = None) -> Failure:
    return Failure(LOST, TransientError("lost"), "uncertain", pace=pace, pause=pause)


RESULTS = [
    # (id, result, what the budget hears, whether the round trip counts)
    ("200", ApiResponse(200, {}, {}), [("success", None)], True),
    ("404 member", ApiResponse(404, {"message": "User does not exist."}, {}), [("success", None)], True),
    ("403 config", ApiResponse(403, {}, {}), [("success", None)], False),
    ("408", ApiResponse(408, {}, {}), [("success", None)], False),
    ("429", ApiResponse(429, {}, {}, retry_after=7.0), [("throttled", 7.0)], False),
    ("503", ApiResponse(503, {}, {}, retry_after=3.0), [], False),
    ("500", ApiResponse(500, {}, {}), [], False),
    ("200 not JSON", ApiResponse(200, None, {}, text="OK"), [("success", None)], False),
    ("no connection", Failure(UNREACHABLE, TransientError("down"), "x"), [], False),
    ("no answer", _lost(), [], False),
    # A 429 whose body was then cut off: its status line still slows the budget down.
    ("429 body lost", _lost(Pace.SLOW_DOWN, 5.0), [("throttled", 5.0)], False),
]


@pytest.mark.parametrize(("result", "heard", "timed"), [r[1:] for r in RESULTS], ids=[r[0] for r in RESULTS])
def test_an_attempt_takes_a_place_then_a_slot_and_reports_what_came_back(
    result: ApiResponse | Failure, heard: list[tuple[str, Any]], timed: bool
) -> None:
    clock = Clock()
    parts = Parts(clock)
    flow = FlowControl(parts, parts, clock=clock)
    with flow.attempt() as attempt:
        clock.now += 0.3  # on the wire
        attempt.observe(result)
    rtt = pytest.approx(0.3) if timed else None
    assert parts.calls == [("enter", None), ("acquire", None), *heard, ("leave", rtt)]
    # The budget hears when the slot was given on its own clock (it counts what the server accepted by
    # send time, issue 20's Retry-After row), not the flow's clock and not the answer's arrival.
    assert parts.sent_at == [101.0] * len(heard)


def test_an_attempt_that_raises_still_leaves_its_place() -> None:
    clock = Clock()
    parts = Parts(clock)
    flow = FlowControl(parts, parts, clock=clock)
    with pytest.raises(TransientError), flow.attempt():
        raise TransientError("stopping")
    assert parts.calls == [("enter", None), ("acquire", None), ("leave", None)]


def test_without_parts_every_attempt_passes_and_one_worker_is_wanted() -> None:
    flow = FlowControl()
    with flow.attempt() as attempt:
        attempt.observe(ApiResponse(200, {}, {}))
    assert (flow.workers_wanted(), flow.status_line(), flow.request_totals()) == (1, "", (0, 0))


def test_workers_wanted_is_the_gates_capacity_plus_the_requests_pausing() -> None:
    clock = Clock()
    parts = Parts(clock, capacity=7)
    flow = FlowControl(gate=parts)
    inside = threading.Event()
    release = threading.Event()

    def pause() -> None:
        with flow.pausing():
            inside.set()
            release.wait(5)

    thread = threading.Thread(target=pause)
    thread.start()
    assert inside.wait(5)
    assert flow.workers_wanted() == 8
    release.set()
    thread.join()
    assert flow.workers_wanted() == 7


def test_the_real_parts_compose_and_speak_in_one_line() -> None:
    clock = Clock()
    budget = RateBudget(6000, clock=clock, sleep=lambda seconds: None)
    gate = InFlightGate(InFlightTarget(50, clock=clock), budget.rate_per_second)
    flow = FlowControl(budget, gate, clock=clock)
    flow.stats.record_attempt("GET /v2/activities")
    flow.stats.record_status(429, throttled=True)
    assert flow.request_totals() == (1, 1)
    assert flow.workers_wanted() == gate.capacity == 15 + 2
    assert flow.status_line() == ("up to 15 requests at once (max_concurrency 50), round trip not measured yet; "
                                  "sending at most 6,000 requests/min (max_requests_per_minute 6,000)")
    with flow.attempt() as attempt:
        clock.now += 0.2
        attempt.observe(ApiResponse(200, {}, {}))
    assert gate.srtt == pytest.approx(0.2)
    assert budget.acquired == 1
