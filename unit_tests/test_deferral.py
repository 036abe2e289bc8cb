"""Rows waiting for their member (sync/deferral.py): which rows wait, and the store that keeps them."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from destination_crowdtwist.api.errors import ConfigError
from destination_crowdtwist.records.rejection import Reason, Rejection
from destination_crowdtwist.sync.checkpoint import ReleasedState
from destination_crowdtwist.sync.deferral import DeferredRows, MemberWait, creates_members
from destination_crowdtwist.sync.pipeline import Pipeline
from destination_crowdtwist.sync.report import SyncReport
from destination_crowdtwist.writers.base import Outcome, OutcomeKind, Prepared, Row, StreamContext

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
    assert [d.row.seq for d in store.take_member("a", 1)] == [5]  # the earliest first, at most the limit
    store.add(row(CREDITS, 5, {"event_id": big, "pts": 1.5}), ticket=0, member="a", size=10)
    taken = store.take_member("a", 10)
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


# -- the pipeline with waiting rows --------------------------------------------------------------------

class MemberWorld:
    """A writer double for both objects: a credit of a member not created yet answers "not found"."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.members: set[str] = set()
        self.credited: list[int] = []
        self.calls = 0
        self.asked: list[int] = []

    def prepare(self, row: Row) -> Prepared[None] | Outcome:
        return Prepared(row, row.data["m"], row.data["m"], None)

    def settle_at_once(self, prepared: Prepared[None]) -> Outcome | None:
        """Rows marked ``same`` of a member that exists need no request (the member index's skip)."""
        row = prepared.row
        with self.lock:
            self.asked.append(row.data["n"])
            if row.data.get("same") and row.data["m"] in self.members:
                return Outcome(OutcomeKind.UNCHANGED, row.data["m"])
        return None

    def apply(self, prepared: Prepared[None]) -> Outcome:
        row = prepared.row
        with self.lock:
            self.calls += 1
            if row.stream.object_name == "user_profile":
                self.members.add(row.data["m"])
                return Outcome(OutcomeKind.CREATED, row.data["m"])
            if row.data["m"] not in self.members:
                return not_found()
            self.credited.append(row.data["n"])
            return Outcome(OutcomeKind.CREDITED, row.data["m"])

    def start(self) -> None: ...

    def checkpoint(self) -> None: ...

    def finish(self) -> None: ...

    def close(self) -> None: ...


def test_waiting_rows_leave_the_in_flight_bound_and_come_back_within_it() -> None:
    """500 credits wait on disk (not in the bounded queue); the members' rows, then the end, bring them back."""
    world = MemberWorld()
    report = SyncReport(stop_sample=20, stop_share=0.9)  # the early stop is on: it must see final outcomes only
    p = Pipeline(report, concurrency=4, max_pending=8, progress_interval=0)
    p.wait_for_members(MemberWait([CREDITS, MEMBERS]))
    p.start()
    released: list[ReleasedState[Any]] = []
    try:
        for i in range(500):  # credits of 50 members (m0..m49), only m0..m39 ever created
            p.submit(row_of(CREDITS, i, m=f"m{i % 50}"), world)
        p.add_state("credits-done", CREDITS.key)
        for j in range(40):
            p.submit(row_of(MEMBERS, 500 + j, m=f"m{j}"), world)
        p.add_state("members-done", MEMBERS.key)
        released += p.release()
        assert released == []  # the credits' state waits for the waiting credits
        p.stream_ended(MEMBERS.key)
        assert p.wait_settled(timeout=30)
        released += p.release()
    finally:
        p.shutdown()
    assert sorted(world.credited) == [i for i in range(500) if i % 50 < 40]
    assert [(s.state, s.record_count, s.rejected_count) for s in released] == [
        ("credits-done", 400, 100), ("members-done", 40, 0)]
    assert p.peak_pending <= 8
    assert report.by_kind[OutcomeKind.REJECTED] == 100 and p.fatal is None


def test_no_row_settles_at_once_while_rows_wait_for_their_member() -> None:
    # A member row settled on a worker releases its member's waiting rows at once; one settled at once
    # would not, so the pipeline asks no writer while any row waits (and asks again once none does).
    world = MemberWorld()
    p = waiting_pipeline()
    try:
        p.submit(row_of(MEMBERS, 0, m="m0"), world)
        assert p.wait_settled(timeout=10)
        p.submit(row_of(CREDITS, 1, m="m1"), world)  # m1 does not exist yet: waits
        assert not p.wait_settled(timeout=0.5)
        p.submit(row_of(MEMBERS, 2, m="m0", same=True), world)  # not asked: a row waits
        p.submit(row_of(MEMBERS, 3, m="m1"), world)  # creates m1: its credit runs after it
        assert p.wait_settled(timeout=10)
        p.submit(row_of(MEMBERS, 4, m="m0", same=True), world)  # nothing waits: settled at once
        assert p.wait_settled(timeout=10)
    finally:
        p.shutdown()
    assert world.asked == [0, 1, 4]  # row 1 too: nothing waited yet when it came
    assert world.credited == [1] and world.calls == 5  # rows 0, 1 (twice), 2, 3; never row 4


def waiting_pipeline() -> Pipeline:
    """A started pipeline of 2 workers whose credits wait for their members."""
    p = Pipeline(SyncReport(), concurrency=2, progress_interval=0)
    p.wait_for_members(MemberWait([CREDITS, MEMBERS]))
    p.start()
    return p


def row_of(stream: StreamContext, seq: int, **data: Any) -> Row:
    return Row(stream=stream, data={**data, "n": seq}, seq=seq)


@pytest.mark.timeout(20)
def test_a_store_that_fails_when_a_member_arrives_stops_the_sync_instead_of_stranding_its_rows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Before: the store's error escaped the worker thread, and the member's waiting rows waited for ever.
    world = MemberWorld()
    p = waiting_pipeline()
    try:
        p.submit(row_of(CREDITS, 0, m="m0"), world)
        assert not p.wait_settled(timeout=0.5)  # the credit waits for its member

        def broken(self: DeferredRows, member: str) -> bool:
            raise ConfigError("The temporary space that holds rows waiting for their member is not usable")

        monkeypatch.setattr(DeferredRows, "has_member", broken)
        p.submit(row_of(MEMBERS, 1, m="m0"), world)  # accepted: the store is asked for m0's waiting rows
        with pytest.raises(ConfigError, match="temporary space"):
            p.wait_settled(timeout=10)
    finally:
        p.shutdown()
    assert world.credited == []
