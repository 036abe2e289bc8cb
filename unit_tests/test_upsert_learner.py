from __future__ import annotations

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
