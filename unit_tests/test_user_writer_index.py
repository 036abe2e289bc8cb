"""User Profile writer with a member index: which request comes first, unchanged rows, stale entries,
write-ahead clearing; against an in-memory fake of CrowdTwist's member endpoints."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from destination_crowdtwist.config import parse_config
from destination_crowdtwist.writers.base import Outcome, OutcomeKind, Prepared, Row, StreamContext
from destination_crowdtwist.writers.dry_run import DryRunWriter
from destination_crowdtwist.writers.member_index import MemberEntry, MemberIndex, fingerprint
from destination_crowdtwist.writers.users import UserProfileWriter
from tests_support.fake_api import FakeApi, MemberBook

PROGRAM = "https://api123.crowdtwist.com"
UPSERT, INSERT, UPDATE = "append_dedup", "append", "update"


def crowdtwist(api: FakeApi, *emails: str) -> MemberBook:
    """CrowdTwist's members (these, to start with), answering ``api``'s member calls."""
    book = MemberBook.of(*emails)
    book.serve(api)
    return book


def sent(api: FakeApi) -> list[str]:
    """Each request as "METHOD member" (the member's email), in order."""
    return [f"{call.method} {call.user_id or (call.payload or {}).get('email_address')}" for call in api.calls]


def writer(
    tmp_path: Path, api: FakeApi, *, clock: Callable[[], float] = time.time, **config: Any
) -> UserProfileWriter:
    raw = {
        "api_base_url": PROGRAM,
        "credentials": {"auth_type": "api_key", "api_key": "k"},
        "member_index_path": str(tmp_path / "members.sqlite"),
        **config,
    }
    w = UserProfileWriter(parse_config(raw), api, clock=clock)
    w.start()
    return w


def person(email: str, **extra: Any) -> dict[str, Any]:
    return {"user_id": email, "first_name": "Ann", "last_name": "Lee", "postal_code": "10010", **extra}


def write(w: UserProfileWriter, data: Mapping[str, Any], mode: str = UPSERT) -> Outcome:
    prepared = w.prepare(Row(StreamContext(None, "users", mode), dict(data), 0))
    assert isinstance(prepared, Prepared), prepared
    return w.apply(prepared)


def index_view(tmp_path: Path, program: str = PROGRAM) -> MemberIndex:
    return MemberIndex(str(tmp_path / "members.sqlite"), program)


def payload_of(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k != "user_id"}


def test_first_sync_fills_the_index_and_the_next_one_updates_known_members_first(api: FakeApi, tmp_path: Path) -> None:
    crowdtwist(api, "old@x.com")
    w = writer(tmp_path, api, upsert_strategy="create_first")
    assert write(w, person("old@x.com")).kind is OutcomeKind.UPDATED  # POST taken -> PUT (learner's order)
    assert write(w, person("new@x.com")).kind is OutcomeKind.CREATED
    w.checkpoint()
    assert sent(api) == ["POST old@x.com", "PUT old@x.com", "POST new@x.com"]
    view = index_view(tmp_path)
    assert view.lookup("email", "old@x.com") == MemberEntry("1", fingerprint(payload_of(person("old@x.com"))))
    assert view.lookup("email", "new@x.com") == MemberEntry("101", fingerprint(payload_of(person("new@x.com"))))
    w.close()

    api.calls.clear()
    w = writer(tmp_path, api, upsert_strategy="create_first")
    assert write(w, person("old@x.com", first_name="Changed")).kind is OutcomeKind.UPDATED
    assert write(w, person("other@x.com")).kind is OutcomeKind.CREATED
    # A known member costs one PUT whatever the strategy says; the unknown one follows the strategy.
    assert sent(api) == ["PUT old@x.com", "POST other@x.com"]
    assert w.index_counts == {"known": 1, "unknown": 1, "skipped": 0, "expired": 0, "corrected": 0}
    w.close()


def test_known_members_do_not_teach_the_learner(api: FakeApi, tmp_path: Path) -> None:
    crowdtwist(api, *(f"m{i}@x.com" for i in range(30)))
    w = writer(tmp_path, api)
    for i in range(30):
        write(w, person(f"m{i}@x.com"))
    w.close()
    w = writer(tmp_path, api)
    p_new = w.learner.p_new
    for i in range(30):
        write(w, person(f"m{i}@x.com", first_name="Again"))
    assert w.learner.p_new == p_new  # only rows whose order the learner chose are observed
    w.close()


def test_with_a_warm_index_unknown_members_start_create_first(api: FakeApi, tmp_path: Path) -> None:
    """An index that already knew members of the program does not know this one: most likely new."""
    crowdtwist(api, "old@x.com")
    w = writer(tmp_path, api)  # empty index: nothing known, so the rows alternate (update first, then create)
    assert [w.learner.create_first(), w.learner.create_first()] == [False, True]
    write(w, person("old@x.com"))
    w.close()

    api.calls.clear()
    w = writer(tmp_path, api)
    assert w.learner.create_first()
    assert write(w, person("new@x.com")).kind is OutcomeKind.CREATED
    assert sent(api) == ["POST new@x.com"]  # one request, not PUT 404 then POST
    w.close()


@pytest.mark.parametrize("mode", [UPSERT, UPDATE, INSERT])
def test_a_row_identical_to_the_last_accepted_write_sends_nothing(api: FakeApi, tmp_path: Path, mode: str) -> None:
    crowdtwist(api)
    w = writer(tmp_path, api)
    write(w, person("a@x.com"))
    w.close()
    api.calls.clear()
    w = writer(tmp_path, api)
    # Same fields in another order: still identical.
    data = dict(reversed(list(person("a@x.com").items())))
    outcome = write(w, data, mode)
    assert outcome.kind is OutcomeKind.UNCHANGED
    assert "member index" in (outcome.message or "")
    assert sent(api) == []
    assert w.index_counts["skipped"] == 1
    w.close()


def test_skip_unchanged_off_sends_identical_rows_but_still_orders_by_the_index(api: FakeApi, tmp_path: Path) -> None:
    crowdtwist(api)
    w = writer(tmp_path, api)
    write(w, person("a@x.com"))
    w.close()
    api.calls.clear()
    w = writer(tmp_path, api, skip_unchanged=False, upsert_strategy="create_first")
    assert write(w, person("a@x.com")).kind is OutcomeKind.UPDATED
    assert sent(api) == ["PUT a@x.com"]
    w.close()


def test_the_same_row_twice_in_one_sync_is_sent_once(api: FakeApi, tmp_path: Path) -> None:
    crowdtwist(api)
    w = writer(tmp_path, api)
    assert write(w, person("a@x.com")).kind is OutcomeKind.CREATED
    assert write(w, person("a@x.com")).kind is OutcomeKind.UNCHANGED  # the staged entry is seen
    assert write(w, person("a@x.com", first_name="B")).kind is OutcomeKind.UPDATED
    assert sent(api) == ["PUT a@x.com", "POST a@x.com", "PUT a@x.com"]  # update-first, then the change
    w.close()


def test_a_stale_entry_is_corrected_and_the_member_created(api: FakeApi, tmp_path: Path) -> None:
    book = crowdtwist(api)
    w = writer(tmp_path, api)
    write(w, person("gone@x.com"))
    w.close()
    book.members.clear()  # someone removed the member in CrowdTwist
    api.calls.clear()
    w = writer(tmp_path, api)
    outcome = write(w, person("gone@x.com", first_name="Back"))
    assert outcome.kind is OutcomeKind.CREATED
    assert sent(api) == ["PUT gone@x.com", "POST gone@x.com"]
    assert w.index_counts["corrected"] == 1
    w.checkpoint()
    entry = index_view(tmp_path).lookup("email", "gone@x.com")
    assert entry == MemberEntry("100", fingerprint(payload_of(person("gone@x.com", first_name="Back"))))
    w.close()


def test_update_mode_drops_a_stale_entry_and_rejects_the_row(api: FakeApi, tmp_path: Path) -> None:
    book = crowdtwist(api)
    w = writer(tmp_path, api)
    write(w, person("gone@x.com"))
    w.close()
    book.members.clear()
    w = writer(tmp_path, api)
    outcome = write(w, person("gone@x.com", first_name="Back"), UPDATE)
    assert outcome.kind is OutcomeKind.REJECTED
    assert index_view(tmp_path).lookup("email", "gone@x.com") is None  # durable at once
    w.close()


def test_a_rejected_write_records_nothing(api: FakeApi, tmp_path: Path) -> None:
    crowdtwist(api, "a@x.com")
    w = writer(tmp_path, api)
    assert write(w, person("a@x.com"), INSERT).kind is OutcomeKind.REJECTED  # already taken
    w.close()
    assert index_view(tmp_path).lookup("email", "a@x.com") is None


def test_a_crash_after_a_changing_write_leaves_no_stale_fingerprint(api: FakeApi, tmp_path: Path) -> None:
    book = crowdtwist(api)
    w = writer(tmp_path, api)
    write(w, person("a@x.com"))  # first_name Ann
    w.close()
    w = writer(tmp_path, api)
    write(w, person("a@x.com", first_name="Bea"))  # accepted, then the process dies before checkpoint()
    # (no checkpoint, no close: a killed process commits nothing more)
    crashed = writer(tmp_path, api)
    api.calls.clear()
    # The source goes back to "Ann": it must be sent, although "Ann" was the last *committed* fingerprint.
    assert write(crashed, person("a@x.com")).kind is OutcomeKind.UPDATED
    assert sent(api) == ["PUT a@x.com"]
    assert book.members["a@x.com"]["first_name"] == "Ann"


def test_an_index_of_another_program_is_not_used(api: FakeApi, tmp_path: Path) -> None:
    crowdtwist(api)
    w = writer(tmp_path, api, api_base_url="https://sb-api123.crowdtwist.com")
    write(w, person("a@x.com"))
    w.close()
    api.calls.clear()
    w = writer(tmp_path, api, upsert_strategy="create_first")
    assert write(w, person("a@x.com")).kind is OutcomeKind.UPDATED
    assert sent(api) == ["POST a@x.com", "PUT a@x.com"]  # unknown here: the strategy's order, no skip
    w.close()


def test_dry_run_never_opens_the_index(api: FakeApi, tmp_path: Path) -> None:
    cfg = parse_config({"api_base_url": PROGRAM, "credentials": {"auth_type": "api_key", "api_key": "k"},
                        "member_index_path": str(tmp_path / "members.sqlite"), "dry_run": True})
    w = DryRunWriter(UserProfileWriter(cfg, api))
    w.start()
    w.checkpoint()
    w.close()
    assert not (tmp_path / "members.sqlite").exists()


def test_without_an_index_nothing_changes(api: FakeApi, tmp_path: Path) -> None:
    crowdtwist(api)
    w = writer(tmp_path, api, member_index_path=None)
    write(w, person("a@x.com"))
    write(w, person("a@x.com"))
    w.checkpoint()
    w.close()
    # Both rows are sent: the first update-first (404, then the create), the second create-first (the
    # learner saw one new member), answered "already taken", then its update.
    assert sent(api) == ["PUT a@x.com", "POST a@x.com", "POST a@x.com", "PUT a@x.com"]
    assert not (tmp_path / "members.sqlite").exists()


# --- the age of entries (member_index_max_age_days) ------------------------------------------------

DAY = 86400.0


class FakeClock:
    """Epoch seconds that move only when a test says so."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def sync(tmp_path: Path, api: FakeApi, clock: FakeClock, rows: list[dict[str, Any]], mode: str = UPSERT,
         **config: Any) -> tuple[list[OutcomeKind], dict[str, int]]:
    """One sync of ``rows`` with a fresh writer (as a new process would): outcome kinds and index counts."""
    w = writer(tmp_path, api, clock=clock, **config)
    kinds = [write(w, row, mode).kind for row in rows]
    w.checkpoint()
    w.close()
    return kinds, w.index_counts


def test_entries_older_than_the_max_age_are_sent_again_so_outside_deletions_and_changes_heal(api: FakeApi, tmp_path: Path) -> None:
    book, clock = crowdtwist(api), FakeClock()
    rows = [person("kept@x.com"), person("changed@x.com"), person("deleted@x.com")]
    sync(tmp_path, api, clock, rows)
    # Outside the connector: one member changed in Control Center, one deleted.
    book.members["changed@x.com"]["first_name"] = "Outside"
    del book.members["deleted@x.com"]
    api.calls.clear()

    clock.now += 1 * DAY  # young entries are trusted: the documented caveat, for a while
    kinds, _ = sync(tmp_path, api, clock, rows)
    assert kinds == [OutcomeKind.UNCHANGED] * 3 and sent(api) == []

    clock.now += 6 * DAY  # 7 days after the write: every entry is past its limit (at most the max age)
    kinds, counts = sync(tmp_path, api, clock, rows)
    assert kinds == [OutcomeKind.UPDATED, OutcomeKind.UPDATED, OutcomeKind.CREATED]
    # The deleted member's update is answered "not found": the upsert falls back to a create.
    assert sent(api) == ["PUT kept@x.com", "PUT changed@x.com", "PUT deleted@x.com", "POST deleted@x.com"]
    assert book.members["changed@x.com"]["first_name"] == "Ann"
    assert {k: v for k, v in book.members["deleted@x.com"].items() if k != "id"} == {
        "email_address": "deleted@x.com", **payload_of(person("deleted@x.com"))}
    assert (counts["expired"], counts["corrected"], counts["skipped"]) == (3, 1, 0)

    # The writes dated the entries afresh: the next sync trusts them again.
    api.calls.clear()
    clock.now += 1 * DAY
    kinds, _ = sync(tmp_path, api, clock, rows)
    assert kinds == [OutcomeKind.UNCHANGED] * 3 and sent(api) == []


def test_an_expired_identifier_only_row_is_checked_and_its_entry_dated_afresh(api: FakeApi, tmp_path: Path) -> None:
    book, clock = crowdtwist(api), FakeClock()
    sync(tmp_path, api, clock, [person("a@x.com"), person("b@x.com")])
    del book.members["b@x.com"]
    api.calls.clear()
    clock.now += 7 * DAY
    only_ids = [{"user_id": "a@x.com"}, {"user_id": "b@x.com"}]
    kinds, counts = sync(tmp_path, api, clock, only_ids, custom_attributes=[])
    # Nothing to update: the create (which needs names) cannot be sent, so a read says whether the member exists.
    assert kinds[0] is OutcomeKind.UNCHANGED and counts["expired"] == 2
    assert kinds[1] is OutcomeKind.REJECTED  # b was deleted and an identifier-only row cannot create it
    api.calls.clear()
    clock.now += 1 * DAY
    kinds, _ = sync(tmp_path, api, clock, only_ids[:1])
    assert kinds == [OutcomeKind.UNCHANGED] and sent(api) == []


def test_update_mode_sends_an_expired_row_and_rejects_a_deleted_member(api: FakeApi, tmp_path: Path) -> None:
    book, clock = crowdtwist(api), FakeClock()
    sync(tmp_path, api, clock, [person("gone@x.com")])
    del book.members["gone@x.com"]
    clock.now += 7 * DAY
    kinds, counts = sync(tmp_path, api, clock, [person("gone@x.com")], UPDATE)
    assert kinds == [OutcomeKind.REJECTED]  # update never creates; the row says why
    assert (counts["expired"], counts["corrected"]) == (1, 1)
    assert index_view(tmp_path).lookup("email", "gone@x.com") is None


def test_insert_mode_recreates_a_deleted_member_and_dates_a_checked_entry_afresh(api: FakeApi, tmp_path: Path) -> None:
    book, clock = crowdtwist(api), FakeClock()
    rows = [person("kept@x.com"), person("deleted@x.com")]
    sync(tmp_path, api, clock, rows, INSERT)
    del book.members["deleted@x.com"]
    api.calls.clear()
    clock.now += 7 * DAY
    kinds, counts = sync(tmp_path, api, clock, rows, INSERT)
    # The kept member still holds the row (already taken, then read and compared); the deleted one is created.
    assert kinds == [OutcomeKind.UNCHANGED, OutcomeKind.CREATED] and counts["expired"] == 2
    assert sent(api) == ["POST kept@x.com", "GET kept@x.com", "POST deleted@x.com"]
    api.calls.clear()
    clock.now += 1 * DAY  # both entries are trusted again: no request each sync from now on
    kinds, _ = sync(tmp_path, api, clock, rows, INSERT)
    assert kinds == [OutcomeKind.UNCHANGED] * 2 and sent(api) == []


def test_the_write_ahead_clear_runs_after_drop_before_the_changing_request(api: FakeApi, tmp_path: Path) -> None:
    # With the sync state in the bucket, wiring passes the store's flush as after_drop: the cleared
    # fingerprint must reach the bucket before the request that makes it stale.
    crowdtwist(api, "old@x.com")
    first = writer(tmp_path, api)
    write(first, person("old@x.com"))
    first.close()
    api.calls.clear()
    order: list[str] = []
    raw = {"api_base_url": PROGRAM, "credentials": {"auth_type": "api_key", "api_key": "k"},
           "member_index_path": str(tmp_path / "members.sqlite")}
    w = UserProfileWriter(parse_config(raw), api, after_drop=lambda: order.append(f"flush after {len(api.calls)} requests"))
    w.start()
    assert write(w, person("old@x.com")).kind is OutcomeKind.UNCHANGED  # nothing cleared, nothing flushed
    assert order == []
    assert write(w, person("old@x.com", first_name="Changed")).kind is OutcomeKind.UPDATED
    assert order == ["flush after 0 requests"]
    assert sent(api) == ["PUT old@x.com"]
    w.close()


# -- settled at once (on the reader thread, sync/pipeline.py) -----------------------------------------

def prepared_row(w: UserProfileWriter, data: Mapping[str, Any], mode: str = UPSERT) -> Prepared[Any]:
    prepared = w.prepare(Row(StreamContext(None, "users", mode), dict(data), 0))
    assert isinstance(prepared, Prepared), prepared
    return prepared


@pytest.mark.parametrize(("case", "skips"), [
    ("unchanged", True), ("identifier only", True), ("changed", False), ("unknown member", False),
    ("expired", False), ("skip_unchanged off", False),
])
def test_settle_at_once_skips_exactly_the_rows_apply_would_skip_and_otherwise_changes_nothing(
    api: FakeApi, tmp_path: Path, case: str, skips: bool,
) -> None:
    clock = FakeClock()
    crowdtwist(api)
    sync(tmp_path, api, clock, [person("a@x.com")])
    api.calls.clear()
    clock.now += (8 if case == "expired" else 1) * DAY
    rows = {"changed": person("a@x.com", first_name="Bo"), "unknown member": person("b@x.com"),
            "identifier only": {"user_id": "a@x.com"}}
    data = rows.get(case, person("a@x.com"))
    config = {"skip_unchanged": False} if case == "skip_unchanged off" else {}
    before = index_view(tmp_path).lookup("email", "a@x.com")

    w = writer(tmp_path, api, clock=clock, **config)
    at_once = w.settle_at_once(prepared_row(w, data))
    counts = dict(w.index_counts)
    after = index_view(tmp_path).lookup("email", "a@x.com")
    applied = w.apply(prepared_row(w, data))  # what a worker would have decided instead
    w.close()

    assert api.calls == [] or not skips
    if skips:
        assert at_once is not None and at_once.kind is OutcomeKind.UNCHANGED
        assert "member index" in (at_once.message or "")
        assert (counts["known"], counts["skipped"]) == (1, 1)
        assert applied.kind is OutcomeKind.UNCHANGED and api.calls == []
    else:
        # Nothing counted, nothing cleared: the worker's apply then decides (and sends the row).
        assert at_once is None
        assert all(v == 0 for v in counts.values()), counts
        assert after == before
        assert applied.kind is not OutcomeKind.UNCHANGED and api.calls != []


def test_settle_at_once_without_a_member_index_settles_nothing(api: FakeApi, tmp_path: Path) -> None:
    crowdtwist(api, "a@x.com")
    w = writer(tmp_path, api, member_index_path=None)
    assert w.settle_at_once(prepared_row(w, person("a@x.com"))) is None
    w.close()


def test_with_an_index_a_row_is_checked_only_once_it_needs_sending(api: FakeApi, tmp_path: Path) -> None:
    # Since the last sync the user added an allow-list of custom fields that leaves "tier" out. The row
    # CrowdTwist already holds is unchanged (its values are there; checking it would be wasted work),
    # whether settled at once or on a worker; a changed row is refused before any request, and its
    # entry's fingerprint is not cleared (nothing was sent, so the member still holds the old values).
    crowdtwist(api)
    row = person("a@x.com", custom_data={"tier": "gold"})
    sync(tmp_path, api, FakeClock(), [row])
    api.calls.clear()
    stored = index_view(tmp_path).lookup("email", "a@x.com")
    assert stored is not None and stored.fingerprint is not None

    w = writer(tmp_path, api, clock=FakeClock(), custom_attributes=["loyalty_id"])
    prepared = prepared_row(w, row)
    assert prepared.payload.unchecked is not None  # not checked in prepare
    at_once = w.settle_at_once(prepared)
    assert at_once is not None and at_once.kind is OutcomeKind.UNCHANGED
    assert w.apply(prepared_row(w, row)).kind is OutcomeKind.UNCHANGED

    changed = w.apply(prepared_row(w, person("a@x.com", custom_data={"tier": "silver"})))
    assert changed.kind is OutcomeKind.REJECTED and changed.rejection is not None
    assert "custom_attributes" in changed.rejection.message
    w.close()
    assert api.calls == []
    assert index_view(tmp_path).lookup("email", "a@x.com") == stored


def test_without_an_index_a_row_crowdtwist_would_refuse_is_rejected_in_prepare(api: FakeApi, tmp_path: Path) -> None:
    w = writer(tmp_path, api, member_index_path=None, custom_attributes=["loyalty_id"])
    outcome = w.prepare(Row(StreamContext(None, "users", UPSERT), person("a@x.com", custom_data={"tier": "x"}), 0))
    assert isinstance(outcome, Outcome) and outcome.kind is OutcomeKind.REJECTED
    w.close()
