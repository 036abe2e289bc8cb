"""The replay policy (sync/replay_policy.py): which rows are verified, and whether states are barriers."""

from __future__ import annotations

import pytest

from destination_crowdtwist.sync.replay_policy import ReplayPolicy, ReplayWindow
from destination_crowdtwist.writers.base import StreamContext

CREDITS = StreamContext(namespace=None, name="credits", sync_mode="append", object_name="activity_credit")
MORE_CREDITS = StreamContext(namespace="shop", name="credits", sync_mode="append", object_name="activity_credit")
MEMBERS = StreamContext(namespace=None, name="members", sync_mode="append_dedup", object_name="user_profile")


def test_replay_window_is_per_stream_until_its_first_state_or_any_global_state() -> None:
    window = ReplayWindow()
    a, b = (None, "a"), (None, "b")
    assert window.contains(a) and window.contains(b)
    window.note_state(a)
    assert not window.contains(a)
    assert window.contains(b)  # a stream without a state restarts from scratch on replay
    window.note_state(None)
    assert not window.contains(b)


@pytest.mark.parametrize(("policy", "barrier"), [("every_row", False), ("replay_window", True), ("none", True)])
def test_only_policies_that_trust_where_states_fall_put_a_barrier_at_states(policy: str, barrier: bool) -> None:
    # every_row verifies each row, so a replay is safe wherever its states fall; replay_window verifies
    # only rows before a replay's first state, which is only enough when no credit passes a state early.
    assert ReplayPolicy.for_sync(policy, [MEMBERS, CREDITS]).barrier_at_state() is barrier


@pytest.mark.parametrize("policy", ["every_row", "replay_window", "none"])
def test_a_sync_without_credits_verifies_nothing_and_has_no_barrier(policy: str) -> None:
    replay = ReplayPolicy.for_sync(policy, [MEMBERS])
    assert not replay.barrier_at_state()
    assert not replay.verify(MEMBERS)
    replay.note_state(None)
    assert not replay.verify(MEMBERS)


def test_every_row_verifies_every_credit_row_before_and_after_states() -> None:
    replay = ReplayPolicy.for_sync("every_row", [MEMBERS, CREDITS])
    assert replay.verify(CREDITS)
    replay.note_state(None)
    assert replay.verify(CREDITS)
    assert not replay.verify(MEMBERS)  # member writes are idempotent


def test_replay_window_verifies_credit_rows_until_a_state_covers_their_stream() -> None:
    replay = ReplayPolicy.for_sync("replay_window", [CREDITS, MORE_CREDITS])
    assert replay.verify(CREDITS) and replay.verify(MORE_CREDITS)
    replay.note_state(CREDITS.key)
    assert not replay.verify(CREDITS)
    assert replay.verify(MORE_CREDITS)  # its stream has no state yet: a replay restarts it from scratch
    replay.note_state(None)  # a GLOBAL state covers every stream
    assert not replay.verify(MORE_CREDITS)


def test_none_verifies_no_row() -> None:
    replay = ReplayPolicy.for_sync("none", [CREDITS])
    assert not replay.verify(CREDITS)


def test_an_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="credit_verification"):
        ReplayPolicy.for_sync("sometimes", [CREDITS])
