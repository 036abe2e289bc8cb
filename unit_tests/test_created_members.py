"""Members created in this sync (writers/created_members.py): the User Profile writer records a create
answered as done, the Activity Credit writer spares those members' replay reads (issue 20).

Against the scripted CrowdTwist (tests_support/fake_api.py, a fake clock): the registry is the one
wiring shares between the two writers.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from destination_crowdtwist.api.errors import UncertainOutcome
from destination_crowdtwist.config import parse_config
from destination_crowdtwist.sync.replay_policy import ReplayPolicy
from destination_crowdtwist.wiring import created_members
from destination_crowdtwist.writers.activities import DEDUPE_KEY_FIELD, ActivityCreditWriter
from destination_crowdtwist.writers.base import Outcome, OutcomeKind, Row, StreamContext
from destination_crowdtwist.writers.created_members import CreatedMembers
from destination_crowdtwist.writers.ledger import CreditLedger, event_key, ledger_scope
from destination_crowdtwist.writers.objects import ACTIVITY_CREDIT, USER_PROFILE
from destination_crowdtwist.writers.users import UserProfileWriter
from tests_support.fake_api import FakeApi, Reply, Step

BASE_URL = "https://api123.crowdtwist.com"
USERS = StreamContext(None, "users", "append_dedup")
CREDITS = StreamContext(None, "purchases", "append", object_name="activity_credit")
AWARDED = Reply(200, {"awarded": True})
TAKEN_BODY = {"error": "input_error", "message": "Email address already taken."}
NO_USER_BODY = {"error": "not_found", "message": "User does not exist"}
ANN = {"user_id": "Ann@Example.com", "first_name": "Ann", "last_name": "Lee", "postal_code": "10001"}
ANN_PROFILE = {"id": 7, "email_address": "ann@example.com", "first_name": "Ann", "last_name": "Lee",
               "postal_code": "10001"}
CREATED: Step = ("create_user", Reply(200, ANN_PROFILE))


def config(**extra: Any) -> Any:
    return parse_config({"api_base_url": BASE_URL, "credentials": {"api_key": "k"}, "award_queue_delay_seconds": 2,
                         **extra})


def users_writer(api: FakeApi, registry: CreatedMembers, **extra: Any) -> UserProfileWriter:
    writer = UserProfileWriter(config(**extra), api, on_created=registry.add)
    writer.start()
    return writer


def credit_writer(api: FakeApi, registry: CreatedMembers | None, **extra: Any) -> ActivityCreditWriter:
    api.activities = [{"id": "1001", "num_points": 10}]
    writer = ActivityCreditWriter(config(object_type="activity_credit", **extra), api, clock=api.clock,
                                  sleep=api.wait, created=registry)
    writer.start()
    return writer


def settle(writer: Any, stream: StreamContext, data: Mapping[str, Any], seq: int = 0) -> Outcome:
    """Prepare then apply one row; credit rows are marked to verify as every_row marks them."""
    verify = ReplayPolicy.for_sync("every_row", [stream]).verify(stream)
    result = writer.prepare(Row(stream=stream, data=dict(data), seq=seq, verify=verify))
    return result if isinstance(result, Outcome) else writer.apply(result)


def credit(event: str, user: str = "ann@example.com") -> dict[str, Any]:
    return {"user_id": user, "activity_id": "1001", "event_id": event}


def history_reads(api: FakeApi) -> int:
    return len(api.to("activity_history"))


# -- the registry ----------------------------------------------------------------------------------


def test_the_registry_knows_what_was_added_by_identifier_type_and_id() -> None:
    registry = CreatedMembers()
    registry.add("email", "ann@example.com")
    assert registry.created("email", "ann@example.com")
    assert not registry.created("username", "ann@example.com")  # another identifier type: another member
    assert not registry.created("email", "bob@example.com")
    registry.close()
    assert not registry.created("email", "ann@example.com")  # closed: "not created" (the credit is verified)
    registry.add("email", "bob@example.com")  # a straggling worker after close changes nothing


def test_a_broken_registry_answers_not_created_and_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    registry = CreatedMembers()
    registry.add("email", "ann@example.com")

    class Broken:
        def execute(self, *_: Any) -> Any:
            raise sqlite3.OperationalError("disk I/O error")

        def close(self) -> None:
            pass

    registry._db = Broken()  # type: ignore[assignment]  # a scratch database that fails from now on
    assert not registry.created("email", "ann@example.com")
    registry.add("email", "bob@example.com")
    assert not registry.created("email", "bob@example.com")
    assert sum("not usable" in r.getMessage() for r in caplog.records) == 1


def test_wiring_shares_a_registry_only_between_both_objects_of_a_real_sync() -> None:
    both = [USER_PROFILE, ACTIVITY_CREDIT]
    registry = created_members(config(), both)
    assert isinstance(registry, CreatedMembers)
    registry.close()
    assert created_members(config(), [ACTIVITY_CREDIT]) is None
    assert created_members(config(), [USER_PROFILE]) is None
    assert created_members(config(dry_run=True), both) is None  # a dry run creates nobody


# -- what the User Profile writer records ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "strategy", "script", "recorded"),
    [
        ("append_dedup", "create_first", [CREATED], True),
        ("append_dedup", "update_first", [("update_user", Reply(404, NO_USER_BODY)), CREATED], True),
        ("append", "update_first", [CREATED], True),
        ("append_dedup", "update_first", [("update_user", Reply(200, ANN_PROFILE))], False),
        ("append_dedup", "create_first", [("create_user", Reply(400, TAKEN_BODY)),
                                          ("update_user", Reply(200, ANN_PROFILE))], False),
        # The first create landed but its answer was lost; the retry met "already taken" and the read-back
        # matched: the row is created, but the answer was an uncertain outcome, so nothing is recorded.
        ("append_dedup", "create_first", [("create_user", Reply(400, TAKEN_BODY, after_uncertain=True)),
                                          ("get_user", Reply(200, ANN_PROFILE))], False),
    ],
)
def test_only_a_create_answered_as_done_is_recorded(
    api: FakeApi, mode: str, strategy: str, script: list[Step], recorded: bool
) -> None:
    api.script(*script)
    registry = CreatedMembers()
    writer = users_writer(api, registry, upsert_strategy=strategy)
    outcome = settle(writer, StreamContext(None, "users", mode), ANN)
    assert outcome.kind in (OutcomeKind.CREATED, OutcomeKind.UPDATED)
    assert registry.created("email", "ann@example.com") is recorded


def test_a_created_member_with_a_member_index_is_recorded_too(api: FakeApi, tmp_path: Path) -> None:
    api.script(CREATED)
    registry = CreatedMembers()
    writer = users_writer(api, registry, upsert_strategy="create_first",
                          member_index_path=str(tmp_path / "index.sqlite"))
    assert settle(writer, USERS, ANN).kind is OutcomeKind.CREATED
    writer.close()
    assert registry.created("email", "ann@example.com")


# -- what the Activity Credit writer does with it ------------------------------------------------------------


def test_credits_of_a_member_created_in_this_sync_need_no_history_read_nor_wait(
    api: FakeApi, caplog: pytest.LogCaptureFixture
) -> None:
    api.script(CREATED).always("credit_activity", AWARDED)
    registry = CreatedMembers()
    users = users_writer(api, registry, upsert_strategy="create_first")
    credits = credit_writer(api, registry)
    assert settle(users, USERS, ANN).kind is OutcomeKind.CREATED
    outcomes = [settle(credits, CREDITS, credit(f"e{i}"), seq=i) for i in range(3)]
    assert [o.kind for o in outcomes] == ["credited"] * 3
    assert history_reads(api) == 0
    assert api.waits == []  # no replay read, so no award-queue wait either
    caplog.set_level("INFO")
    credits.close()
    assert any("3 rows credited members created earlier in this sync" in r.getMessage() for r in caplog.records)


def test_a_member_that_existed_is_verified_as_before(api: FakeApi) -> None:
    api.script(("update_user", Reply(200, ANN_PROFILE))).always("credit_activity", AWARDED)
    api.always("activity_history", Reply(200, [{"activity_id": "1001", "extra_data": {DEDUPE_KEY_FIELD: "e0"}}]))
    registry = CreatedMembers()
    users = users_writer(api, registry, upsert_strategy="update_first")
    credits = credit_writer(api, registry)
    assert settle(users, USERS, ANN).kind is OutcomeKind.UPDATED
    kinds = [settle(credits, CREDITS, credit(f"e{i}"), seq=i).kind for i in range(2)]
    assert kinds == ["duplicate", "credited"]  # e0 was credited by an earlier attempt
    assert history_reads(api) == 1
    assert api.waits == [pytest.approx(2.0)]


def test_a_credit_row_before_its_members_profile_row_is_verified(api: FakeApi) -> None:
    # Streams arrive in any order: the credit settles first, while the member is not created yet.
    api.script(CREATED).always("credit_activity", AWARDED).always("activity_history", Reply(200, []))
    registry = CreatedMembers()
    users = users_writer(api, registry, upsert_strategy="create_first")
    credits = credit_writer(api, registry)
    assert settle(credits, CREDITS, credit("e0")).kind is OutcomeKind.CREDITED
    assert history_reads(api) == 1
    assert settle(users, USERS, ANN).kind is OutcomeKind.CREATED
    assert settle(credits, CREDITS, credit("e1"), seq=1).kind is OutcomeKind.CREDITED
    assert history_reads(api) == 1  # the member's read is cached anyway; nothing more


def test_a_lost_credit_answer_for_a_created_member_still_polls_history(api: FakeApi) -> None:
    lost = UncertainOutcome("connection dropped", request_line="POST /v2/users/a***/activities")
    api.expect("credit_activity", lost, AWARDED)
    api.always("activity_history", Reply(200, []))
    registry = CreatedMembers()
    registry.add("email", "ann@example.com")
    credits = credit_writer(api, registry)
    assert settle(credits, CREDITS, credit("e0")).kind is OutcomeKind.CREDITED
    assert history_reads(api) >= 1  # the uncertain outcome was verified before sending again
    assert sum(api.waits) == pytest.approx(2.0)
    assert len(api.to("credit_activity")) == 2


def test_a_pending_ledger_key_of_a_created_member_is_still_verified(api: FakeApi, tmp_path: Path) -> None:
    path = str(tmp_path / "ledger.sqlite")
    seed = CreditLedger(path, scope=ledger_scope(BASE_URL))
    seed.mark_pending(event_key("email", "ann@example.com", "1001", "e0"))
    seed.mark_done("other|key", OutcomeKind.CREDITED)
    seed.close()
    api.always("credit_activity", AWARDED).always("activity_history", Reply(200, []))
    registry = CreatedMembers()
    registry.add("email", "ann@example.com")
    credits = credit_writer(api, registry, ledger_path=path)
    assert settle(credits, CREDITS, credit("e0")).kind is OutcomeKind.CREDITED
    assert history_reads(api) == 1  # pending: a request was sent before; verified whatever the registry says
    credits.close()
