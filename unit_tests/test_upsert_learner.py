from __future__ import annotations

import threading

from destination_crowdtwist.writers.learner import UpsertLearner


def test_auto_starts_update_first_and_switches_when_most_rows_are_new() -> None:
    learner = UpsertLearner("auto")
    assert learner.create_first() is False
    seen = 0
    while not learner.create_first():
        learner.observe(existed=False)
        seen += 1
    assert seen == 2  # the mean of the prior (0.25, as two rows) and two new members: 0.625
    assert learner.switches == 1


def test_auto_becomes_a_moving_average_after_the_first_rows() -> None:
    # After 1/alpha rows, one row moves the estimate by alpha (0.05), as the moving average does.
    learner = UpsertLearner("auto", alpha=0.05, initial_p_new=0.25, prior_weight=2)
    for _ in range(100):
        learner.observe(existed=True)
    assert learner.p_new < 0.01
    learner.observe(existed=False)
    assert abs(learner.p_new - (0.05 + 0.95 * 0.0)) < 0.01


def test_auto_on_mixed_rows_stays_near_half() -> None:
    learner = UpsertLearner("auto")
    for i in range(200):
        learner.observe(existed=bool(i % 2))
    assert 0.4 < learner.p_new < 0.6


def test_auto_switches_back_when_members_exist_again() -> None:
    learner = UpsertLearner("auto")
    for _ in range(30):
        learner.observe(existed=False)
    assert learner.create_first() is True
    for _ in range(30):
        learner.observe(existed=True)
    assert learner.create_first() is False
    assert learner.switches == 2


def test_fixed_strategies_never_switch() -> None:
    for strategy, expected in (("update_first", False), ("create_first", True)):
        learner = UpsertLearner(strategy)
        for existed in [False] * 40 + [True] * 40:
            learner.observe(existed=existed)
            assert learner.create_first() is expected
        assert learner.switches == 0



class _Clock:
    """Fake monotonic time, moved by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _held(learner: UpsertLearner) -> tuple[threading.Thread, list[tuple[bool, bool]]]:
    """A row that waits for its guess on another thread, started and seen waiting."""
    guesses: list[tuple[bool, bool]] = []
    held = learner.held_rows
    waiter = threading.Thread(target=lambda: guesses.append(learner.wait_for_guess()))
    waiter.start()
    while learner.held_rows == held:
        threading.Event().wait(0.001)
    return waiter, guesses


def test_without_a_hold_every_row_takes_the_current_guess_at_once() -> None:
    learner = UpsertLearner("auto")
    assert [learner.wait_for_guess() for _ in range(30)] == [(False, False)] * 30
    assert learner.held_rows == 0


def test_the_rows_after_the_probes_wait_for_their_answers_and_go_on_the_informed_guess() -> None:
    learner = UpsertLearner("auto", hold_seconds=3600.0)
    # The probes: as many rows as the prior weighs (2), on the prior's guess (update first).
    assert [learner.wait_for_guess() for _ in range(2)] == [(False, True), (False, True)]
    waiter, guesses = _held(learner)
    learner.observe(existed=False)
    assert waiter.is_alive()  # one answer does not decide: (0.25 x 2 + 1) / 3 = 0.5
    learner.observe(existed=False)
    waiter.join(timeout=5.0)
    assert guesses == [(True, False)]  # both probes were new members: create first
    assert learner.held_rows == 1
    assert [learner.wait_for_guess() for _ in range(3)] == [(True, False)] * 3  # no more holding


def test_probes_that_end_without_telling_release_the_held_rows_on_the_prior() -> None:
    learner = UpsertLearner("auto", hold_seconds=3600.0)
    assert [learner.wait_for_guess()[1] for _ in range(2)] == [True, True]
    waiter, guesses = _held(learner)
    learner.probe_ended()  # e.g. rejected by CrowdTwist: no answer about the member's existence
    assert waiter.is_alive()
    learner.probe_ended()
    waiter.join(timeout=5.0)
    assert guesses == [(False, False)]


def test_the_hold_ends_after_hold_seconds_and_does_not_come_back() -> None:
    clock = _Clock()
    learner = UpsertLearner("auto", hold_seconds=2.0, clock=clock)
    assert [learner.wait_for_guess()[1] for _ in range(2)] == [True, True]  # the hold runs from the first probe
    clock.now += 2.0  # the probes' answers did not come in time (retries)
    assert learner.wait_for_guess() == (False, False)  # at once: the deadline has passed
    assert learner.wait_for_guess() == (False, False)
    assert learner.held_rows == 1


def test_fixed_strategies_never_hold() -> None:
    for strategy, expected in (("update_first", False), ("create_first", True)):
        learner = UpsertLearner(strategy, hold_seconds=3600.0)
        assert [learner.wait_for_guess() for _ in range(5)] == [(expected, False)] * 5
        assert learner.held_rows == 0
