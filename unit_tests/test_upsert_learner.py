from __future__ import annotations

from destination_crowdtwist.writers.learner import UpsertLearner


def test_auto_starts_update_first_and_switches_when_most_rows_are_new() -> None:
    learner = UpsertLearner("auto")
    assert learner.create_first() is False
    seen = 0
    while not learner.create_first():
        learner.observe(existed=False)
        seen += 1
    assert 5 <= seen <= 15  # switches after a handful of new members, not on the first one
    assert learner.switches == 1


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
