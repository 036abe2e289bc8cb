"""User Profile writer against the scripted CrowdTwist (tests_support/fake_api.py): which requests each
mode makes, and in what order.

The upsert state machine is the point: each step is tried at most once, "not found" moves an update
to a create, "already taken" moves a create to an update, and a row CrowdTwist would refuse costs no
request at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from destination_crowdtwist.api.errors import ConfigError
from destination_crowdtwist.config import parse_config
from destination_crowdtwist.writers.base import Outcome, Prepared, Row, StreamContext, Writer
from destination_crowdtwist.writers.dry_run import DryRunWriter
from destination_crowdtwist.writers.removal import DeleteRow
from destination_crowdtwist.writers.upsert import UserRow
from destination_crowdtwist.writers.users import UserProfileWriter
from tests_support.fake_api import FakeApi, Reply, Step

OK_USER = {"id": 1, "email_address": "ann@example.com"}
TAKEN_BODY = {"error": "input_error", "message": "Email address already taken."}
NO_USER_BODY = {"error": "not_found", "message": "User does not exist"}

NOT_FOUND: Step = ("update_user", Reply(404, NO_USER_BODY))
TAKEN: Step = ("create_user", Reply(400, TAKEN_BODY))
CREATED: Step = ("create_user", Reply(200, OK_USER))
UPDATED: Step = ("update_user", Reply(200, OK_USER))
FORBIDDEN: Step = ("update_user", Reply(403, {"error": "forbidden", "message": "Invalid API key"}))
GOT: Step = ("get_user", Reply(200, {**OK_USER, "first_name": "Old"}))
NO_USER: Step = ("get_user", Reply(404, NO_USER_BODY))


def writer(api: FakeApi, **config: Any) -> UserProfileWriter:
    raw = {"api_base_url": "https://api1.crowdtwist.com", "credentials": {"api_key": "k"}, **config}
    w = UserProfileWriter(parse_config(raw), api)
    w.start()
    return w


def dry_run(api: FakeApi, **config: Any) -> DryRunWriter[UserRow | DeleteRow]:
    raw = {"api_base_url": "https://api1.crowdtwist.com", "credentials": {"api_key": "k"}, "dry_run": True, **config}
    w = DryRunWriter(UserProfileWriter(parse_config(raw), api))
    w.start()
    return w


def run(w: Writer[Any], data: Mapping[str, Any], mode: str = "append_dedup", **stream: Any) -> Outcome:
    ctx = StreamContext(None, "users", mode, **stream)
    result = w.prepare(Row(stream=ctx, data=dict(data), seq=0))
    return result if isinstance(result, Outcome) else w.apply(result)


def payloads(api: FakeApi) -> list[dict[str, Any]]:
    """The bodies sent, in order."""
    return [call.payload or {} for call in api.calls]


FULL = {"user_id": "Ann@Example.com", "first_name": "Ann", "last_name": "Lee", "postal_code": "10001"}


@pytest.mark.parametrize(
    ("create_first", "script", "kind", "methods"),
    [
        (False, [UPDATED], "updated", ["PUT"]),
        (False, [NOT_FOUND, CREATED], "created", ["PUT", "POST"]),
        (True, [CREATED], "created", ["POST"]),
        (True, [TAKEN, UPDATED], "updated", ["POST", "PUT"]),
        (True, [TAKEN, NOT_FOUND], "rejected", ["POST", "PUT"]),  # each step once: no loop
        (False, [NOT_FOUND, TAKEN], "rejected", ["PUT", "POST"]),
    ],
)
def test_upsert_state_machine(
    api: FakeApi, create_first: bool, script: list[Step], kind: str, methods: list[str]
) -> None:
    api.script(*script)
    w = writer(api, upsert_strategy="create_first" if create_first else "update_first")
    assert run(w, FULL).kind == kind
    assert api.methods() == methods


def test_the_create_body_carries_the_identifier_and_the_update_body_does_not_need_it(api: FakeApi) -> None:
    api.script(NOT_FOUND, CREATED)
    run(writer(api, upsert_strategy="update_first"), FULL)
    update, create = payloads(api)
    assert "email_address" not in update
    assert create["email_address"] == "ann@example.com"


def test_a_row_that_cannot_be_created_goes_update_first_whatever_the_learner_says(api: FakeApi) -> None:
    api.script(NOT_FOUND)
    outcome = run(writer(api, upsert_strategy="create_first"), {"user_id": "a@example.com", "first_name": "A"})
    assert outcome.kind == "rejected" and outcome.reason == "validation"
    assert outcome.message is not None and outcome.message.startswith("The member does not exist and cannot be created")
    assert api.methods() == ["PUT"]


@pytest.mark.parametrize(("script", "kind"), [([GOT], "unchanged"), ([NO_USER], "rejected")])
def test_an_identifier_only_row_that_cannot_create_checks_the_member_with_one_read(
    api: FakeApi, script: list[Step], kind: str
) -> None:
    api.script(*script)
    outcome = run(writer(api, upsert_strategy="create_first"), {"user_id": "a@example.com"})
    assert outcome.kind == kind
    assert api.methods() == ["GET"]


def test_rows_crowdtwist_would_refuse_cost_no_request(api: FakeApi) -> None:
    w = writer(api)
    assert run(w, {"first_name": "A"}).reason == "missing_identifier"
    assert run(w, {**FULL, "email_address": "not-an-email"}).reason == "validation"
    assert run(w, {**FULL, "postal_code": None, "last_name": None}, mode="append").reason in ("validation", "location")
    assert api.calls == []


OTHER: Step = ("get_user", Reply(200, {"id": 9, "email_address": "ann@example.com", "first_name": "Annie",
                                       "last_name": "Lee"}))
SAME: Step = ("get_user", Reply(200, {"id": 9, "email_address": "ann@example.com", "first_name": "Ann",
                                      "last_name": "Lee", "postal_code": "10001"}))


def test_insert_creates_only_and_reports_values_taken_by_someone_else(api: FakeApi) -> None:
    api.script(TAKEN, OTHER)
    outcome = run(writer(api), FULL, mode="append")
    assert (outcome.kind, outcome.reason, outcome.status) == ("rejected", "already_taken", 400)
    assert api.methods() == ["POST", "GET"]


def test_insert_of_a_member_that_already_holds_these_values_is_unchanged_not_rejected(api: FakeApi) -> None:
    # A replayed row whose member the killed attempt created (the fault matrix found it counted as rejected).
    api.script(TAKEN, SAME)
    outcome = run(writer(api), FULL, mode="append")
    assert outcome.kind == "unchanged"


def test_update_never_creates(api: FakeApi) -> None:
    api.script(NOT_FOUND)
    outcome = run(writer(api), FULL, mode="update")
    assert (outcome.reason, outcome.status) == ("not_found", 404)
    assert "never creates members" in (outcome.message or "")


def test_members_cannot_be_created_by_crowdtwist_id(api: FakeApi) -> None:
    api.script(NOT_FOUND)
    outcome = run(writer(api), {"id": 269654579, "first_name": "A", "last_name": "B"}, id_field="id", id_type="id")
    assert outcome.reason == "not_found"
    assert "cannot be created by CrowdTwist id" in (outcome.message or "")
    assert api.methods() == ["PUT"]
    assert payloads(api) == [{"first_name": "A", "last_name": "B"}]  # the matching key is not sent as a field


def test_a_credentials_problem_stops_the_sync_instead_of_rejecting_rows(api: FakeApi) -> None:
    api.script(FORBIDDEN)
    with pytest.raises(ConfigError, match="refused the credentials"):
        run(writer(api, upsert_strategy="update_first"), FULL)


def test_a_wrong_base_url_stops_the_sync_instead_of_rejecting_rows(api: FakeApi) -> None:
    api.script(("update_user", Reply(404, text="<html><body>Not Found</body></html>", html=True)))
    with pytest.raises(ConfigError, match="base URL is probably wrong"):
        run(writer(api, upsert_strategy="update_first"), FULL)


@pytest.mark.parametrize(
    ("mode", "script", "kind", "changes"),
    [
        ("append_dedup", [GOT], "would_update", ("first_name", "last_name", "postal_code")),
        ("append_dedup", [NO_USER], "would_create", None),
        ("update", [NO_USER], "rejected", None),
        ("append", [GOT], "rejected", None),
    ],
)
def test_dry_run_reads_and_never_writes(
    api: FakeApi, mode: str, script: list[Step], kind: str, changes: Any
) -> None:
    api.script(*script)
    outcome = run(dry_run(api), FULL, mode=mode)
    assert outcome.kind == kind
    if changes is not None:
        assert outcome.changes == changes
    assert api.methods() == ["GET"]


def test_prepare_keys_rows_by_identifier_type_and_value(api: FakeApi) -> None:
    w = writer(api)
    prepared = w.prepare(Row(StreamContext(None, "users", "append_dedup"), dict(FULL), 0))
    assert isinstance(prepared, Prepared)
    assert prepared.member == "email:ann@example.com"
    assert prepared.label != "ann@example.com"  # masked unless log_pii


# The first create landed but its answer was lost; the client's retry met "already taken".
TAKEN_AFTER_LOST_ANSWER: Step = ("create_user", Reply(400, TAKEN_BODY, after_uncertain=True))


@pytest.mark.parametrize("mode", ["append", "append_dedup"])
def test_already_taken_after_a_lost_create_answer_is_our_create(api: FakeApi, mode: str) -> None:
    ours = {"id": 7, "email_address": "Ann@example.com", "first_name": "Ann", "last_name": "Lee", "postal_code": "10001"}
    api.script(TAKEN_AFTER_LOST_ANSWER, ("get_user", Reply(200, ours)))
    outcome = run(writer(api, upsert_strategy="create_first"), FULL, mode=mode)
    assert outcome.kind == "created"
    assert api.methods() == ["POST", "GET"]


def test_already_taken_after_a_lost_answer_by_someone_else_is_still_taken(api: FakeApi) -> None:
    theirs = {"id": 8, "email_address": "ann@example.com", "first_name": "Annie", "last_name": "Lee",
              "postal_code": "10001"}
    # insert mode also checks a plain "already taken": a second read
    api.script(TAKEN_AFTER_LOST_ANSWER, ("get_user", Reply(200, theirs)), ("get_user", Reply(200, theirs)))
    outcome = run(writer(api), FULL, mode="append")
    assert (outcome.kind, outcome.reason) == ("rejected", "already_taken")


def test_with_custom_attributes_configured_other_custom_fields_are_rejected_before_any_request(api: FakeApi) -> None:
    w = writer(api, custom_attributes=["tier", "store"])
    outcome = run(w, {**FULL, "tier": "gold", "shoe_size": "42", "favourite": "x"})
    assert (outcome.kind, outcome.reason) == ("rejected", "custom_attribute")
    assert "favourite, shoe_size" in (outcome.message or "")
    assert api.calls == []
    api.script(UPDATED)
    assert run(writer(api, custom_attributes=["tier"], upsert_strategy="update_first"),
               {**FULL, "tier": "gold"}).kind == "updated"
    assert payloads(api)[0]["custom_data"] == {"tier": "gold"}


def test_unknown_custom_field_names_are_the_rows_keys_and_masked_in_masked_outputs(api: FakeApi) -> None:
    w = writer(api, custom_attributes=["tier"])
    outcome = run(w, {**FULL, "tier": "gold", "Ximena Okonkwo (spouse)": "x", "shoe_size": "42"})
    assert outcome.reason == "custom_attribute"
    assert "Ximena Okonkwo (spouse)" in outcome.text(masked=False)
    masked = outcome.text(masked=True)
    assert masked.startswith("custom field(s) ***, shoe_size are not among the configured custom_attributes")
    assert "Ximena" not in masked and "Okonkwo" not in masked


@pytest.mark.parametrize("dry", [True, False])
def test_wiring_wraps_the_writers_of_a_dry_run(dry: bool) -> None:
    from destination_crowdtwist.wiring import client_from_config, make_writer
    from destination_crowdtwist.writers.activities import ActivityCreditWriter
    from destination_crowdtwist.writers.objects import ACTIVITY_CREDIT, USER_PROFILE

    cfg = parse_config({"api_base_url": "https://api1.crowdtwist.com", "credentials": {"api_key": "k"}, "dry_run": dry})
    client = client_from_config(cfg)
    try:
        for name, kind in ((USER_PROFILE, UserProfileWriter), (ACTIVITY_CREDIT, ActivityCreditWriter)):
            made = make_writer(name, cfg, client)
            inner = made.inner if isinstance(made, DryRunWriter) else made
            assert isinstance(made, DryRunWriter) is dry and isinstance(inner, kind)
    finally:
        client.close()
