from __future__ import annotations

from destination_crowdtwist.writers.learner import UpsertLearner


def test_auto_alternates_while_nothing_is_known_and_follows_the_first_answer() -> None:
    # Before any answer both orders cost the same: the rows alternate, update first, so a first window
    # wastes half its requests whatever the members are (docs/performance.md, "what not knowing costs").
    for existed in (False, True):
        learner = UpsertLearner("auto")
        assert [learner.create_first() for _ in range(6)] == [False, True] * 3
        learner.observe(existed=existed)  # the mean of the prior (0.5, as two rows) and one row: 1/3 or 2/3
        assert [learner.create_first() for _ in range(4)] == [not existed] * 4
        assert learner.switches == 1


def test_auto_alternates_again_when_what_it_saw_is_an_exact_tie() -> None:
    learner = UpsertLearner("auto")
    learner.observe(existed=False)
    learner.observe(existed=True)  # (1 + 1 + 0) / 4: a tie again
    assert learner.p_new == 0.5
    assert [learner.create_first() for _ in range(4)] == [False, True, False, True]
    learner.observe(existed=False)
    assert [learner.create_first() for _ in range(3)] == [True] * 3
    assert learner.switches == 3


def test_a_prior_that_leans_one_way_starts_that_way() -> None:
    # An index warmed by earlier syncs (writers/users.py): an unknown member is most likely new.
    leaning = UpsertLearner("auto", initial_p_new=0.75)
    assert [leaning.create_first() for _ in range(4)] == [True] * 4
    leaning.observe(existed=True)  # (1.5 + 0) / 3: a tie
    assert [leaning.create_first() for _ in range(2)] == [False, True]
    leaning.observe(existed=True)  # 1.5 / 4
    assert [leaning.create_first() for _ in range(2)] == [False, False]


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


def test_the_summary_counts_guessed_rows_and_those_that_needed_both_requests() -> None:
    learner = UpsertLearner("auto")
    assert learner.summary() is None  # no upsert row was guessed: nothing to say
    for both in (True, True, False, False, False):
        learner.count(both_sent=both)
    learner.observe(existed=False)  # the mean passes 0.5: create first
    assert learner.summary() == (
        "User Profile upsert: 2 of the 5 rows whose member was not known beforehand needed both requests (the first "
        "guess, update or create, was wrong; upsert_strategy auto, ending on create first). When a stream's rows are "
        "known to be new members (or existing ones), upsert_strategy create_first (or update_first) starts with the "
        "right request from the first row."
    )


def test_the_summary_gives_no_advice_when_no_guess_was_wrong_or_the_order_is_fixed() -> None:
    learner = UpsertLearner("auto")
    learner.count(both_sent=False)
    assert learner.summary() == (
        "User Profile upsert: 0 of the 1 rows whose member was not known beforehand needed both requests (the first "
        "guess, update or create, was wrong; upsert_strategy auto, ending on update and create first in turn)."
    )
    learner.observe(existed=True)
    assert learner.summary() == (
        "User Profile upsert: 0 of the 1 rows whose member was not known beforehand needed both requests (the first "
        "guess, update or create, was wrong; upsert_strategy auto, ending on update first)."
    )
    fixed = UpsertLearner("create_first")
    fixed.count(both_sent=True)
    summary = fixed.summary()
    assert summary is not None and "upsert_strategy create_first, ending on create first)." in summary
    assert "starts with the right request" not in summary
