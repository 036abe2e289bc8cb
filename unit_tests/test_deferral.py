"""Rows waiting for their member (sync/deferral.py): which rows wait, and the store that keeps them."""

from __future__ import annotations

from typing import Any

from destination_crowdtwist.records.rejection import Reason, Rejection
from destination_crowdtwist.sync.deferral import DeferredRows, MemberWait, creates_members
from destination_crowdtwist.writers.base import Outcome, OutcomeKind, Row, StreamContext

CREDITS = StreamContext(namespace=None, name="events", sync_mode="append", object_name="activity_credit")
MEMBERS = StreamContext(namespace="crm", name="members", sync_mode="append_dedup", object_name="user_profile")
UPDATES = StreamContext(namespace=None, name="fixes", sync_mode="update", object_name="user_profile")


def not_found(status: int | None = 404) -> Outcome:
    return Outcome.rejected("m", Rejection(Reason.NOT_FOUND, "No member", status=status))


def row(stream: StreamContext, seq: int = 0, data: dict[str, Any] | None = None) -> Row:
    return Row(stream=stream, data=data or {"id": seq}, seq=seq)


def test_only_rows_that_cannot_create_their_member_wait_for_a_not_found_answer() -> None:
    wait = MemberWait([CREDITS, MEMBERS, UPDATES])
    assert wait.members_may_come
    assert wait.waits(row(CREDITS), not_found())
    assert wait.waits(row(UPDATES), not_found())
    assert not wait.waits(row(MEMBERS), not_found())  # an upsert creates its member itself
    assert not wait.waits(row(CREDITS), not_found(status=None))  # refused before any request
    assert not wait.waits(row(CREDITS), Outcome.rejected("m", Rejection(Reason.INVALID_ACTIVITY, "no")))
    assert not wait.waits(row(CREDITS), Outcome(OutcomeKind.CREDITED, "m"))
    assert creates_members(MEMBERS) and not creates_members(UPDATES) and not creates_members(CREDITS)


def test_waiting_ends_with_the_member_streams_unless_member_rows_are_still_being_written() -> None:
    wait = MemberWait([CREDITS, MEMBERS, UPDATES])
    wait.stream_ended(UPDATES.key)  # an update-only stream never creates members: it was never awaited
    assert wait.members_may_come
    wait.stream_ended(MEMBERS.key)
    assert not wait.members_may_come
    assert not wait.waits(row(CREDITS), not_found())
    assert wait.waits(row(CREDITS), not_found(), creators_pending=1)  # a member row is still in flight
    wait = MemberWait([CREDITS, MEMBERS])
    wait.input_ended()
    assert not wait.members_may_come


def test_without_a_member_stream_or_when_disabled_nothing_waits() -> None:
    assert not MemberWait([CREDITS]).waits(row(CREDITS), not_found())
    assert not MemberWait([CREDITS, MEMBERS], enabled=False).waits(row(CREDITS), not_found())


def test_the_store_gives_rows_back_by_member_and_in_input_order_with_exact_values() -> None:
    store = DeferredRows()
    big = 2**70 + 1  # an event id beyond 64 bits stays exact
    store.add(row(CREDITS, 5, {"event_id": big, "pts": 1.5}), ticket=0, member="a", size=10)
    store.add(row(UPDATES, 2, {"first_name": "Zoë"}), ticket=0, member="b", size=20)
    store.add(row(CREDITS, 9, {"event_id": 3}), ticket=2, member="a", size=30)
    assert len(store) == 3 and store.has_member("a") and not store.has_member("c")
    taken = store.take_member("a")
    assert [(d.row.seq, d.ticket, d.size, d.member) for d in taken] == [(5, 0, 10, "a"), (9, 2, 30, "a")]
    assert taken[0].row.data == {"event_id": big, "pts": 1.5} and taken[0].row.stream == CREDITS
    assert len(store) == 1 and not store.has_member("a")
    [b] = store.take(10)
    assert (b.row.stream, b.row.data) == (UPDATES, {"first_name": "Zoë"})
    assert len(store) == 0 and store.take(10) == []
    store.close()


def test_the_store_hands_rows_back_in_batches_earliest_first() -> None:
    store = DeferredRows()
    for seq in (4, 1, 3, 0, 2):
        store.add(row(CREDITS, seq), ticket=seq, member=f"m{seq}", size=1)
    assert [d.row.seq for d in store.take(2)] == [0, 1]
    assert [d.row.seq for d in store.take(0)] == []
    assert [d.row.seq for d in store.take(5)] == [2, 3, 4]
    store.close()
