"""User Profile writer with a scripted fake client: which requests each mode makes, and in what order.

The upsert state machine is the point: each step is tried at most once, "not found" moves an update
to a create, "already taken" moves a create to an update, and a row CrowdTwist would refuse costs no
request at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from destination_crowdtwist.api.errors import ConfigError
from destination_crowdtwist.api.response import ApiResponse
from destination_crowdtwist.config import parse_config
from destination_crowdtwist.writers.base import Outcome, Prepared, Row, StreamContext
from destination_crowdtwist.writers.users import UserProfileWriter

OK_USER = {"id": 1, "email_address": "ann@example.com"}


def answer(status: int, data: Any, endpoint: str) -> ApiResponse:
    """A CrowdTwist answer as the client returns it (classified by its endpoint's path)."""
    return ApiResponse(status, data, {"Content-Type": "application/json"}, endpoint=endpoint)


NOT_FOUND = ("PUT", 404, {"error": "not_found", "message": "User does not exist"})
TAKEN = ("POST", 400, {"error": "input_error", "message": "Email address already taken."})
CREATED = ("POST", 200, OK_USER)
UPDATED = ("PUT", 200, OK_USER)
FORBIDDEN = ("PUT", 403, {"error": "forbidden", "message": "Invalid API key"})
GOT = ("GET", 200, {**OK_USER, "first_name": "Old"})
NO_USER = ("GET", 404, {"error": "not_found", "message": "User does not exist"})

ENDPOINTS = {"PUT": "PUT /v2/users/{user_id}", "POST": "POST /v2/users", "GET": "GET /v2/users/{user_id}"}


class FakeClient:
    """Answers from a script of (method, status, body); fails on any request the script did not expect."""

    def __init__(self, *script: tuple[str, int, Any]) -> None:
        self.script = list(script)
        self.calls: list[tuple[str, Any]] = []

    def _next(self, method: str, payload: Any) -> ApiResponse:
        self.calls.append((method, payload))
        assert self.script, f"unexpected {method}"
        expected, status, body = self.script.pop(0)
        assert expected == method, f"expected {expected}, got {method}"
        return answer(status, body, ENDPOINTS[method])

    def update_user(self, user_id: str, id_type: str, payload: Mapping[str, Any]) -> ApiResponse:
        return self._next("PUT", dict(payload))

    def create_user(self, payload: Mapping[str, Any]) -> ApiResponse:
        return self._next("POST", dict(payload))

    def get_user(self, user_id: str, id_type: str) -> ApiResponse:
        return self._next("GET", None)


def writer(client: FakeClient, **config: Any) -> UserProfileWriter:
    raw = {"api_base_url": "https://api1.crowdtwist.com", "credentials": {"api_key": "k"}, **config}
    w = UserProfileWriter(parse_config(raw), client)  # type: ignore[arg-type]
    w.start()
    return w


def run(w: UserProfileWriter, data: Mapping[str, Any], mode: str = "append_dedup", **stream: Any) -> Outcome:
    ctx = StreamContext(None, "users", mode, **stream)
    result = w.prepare(Row(stream=ctx, data=dict(data), seq=0))
    return result if isinstance(result, Outcome) else w.apply(result)


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
def test_upsert_state_machine(create_first: bool, script: list[Any], kind: str, methods: list[str]) -> None:
    client = FakeClient(*script)
    w = writer(client, upsert_strategy="create_first" if create_first else "update_first")
    assert run(w, FULL).kind == kind
    assert [m for m, _ in client.calls] == methods
    assert client.script == []


def test_the_create_body_carries_the_identifier_and_the_update_body_does_not_need_it() -> None:
    client = FakeClient(NOT_FOUND, CREATED)
    run(writer(client, upsert_strategy="update_first"), FULL)
    (_, update), (_, create) = client.calls
    assert "email_address" not in update
    assert create["email_address"] == "ann@example.com"


def test_a_row_that_cannot_be_created_goes_update_first_whatever_the_learner_says() -> None:
    client = FakeClient(NOT_FOUND)
    outcome = run(writer(client, upsert_strategy="create_first"), {"user_id": "a@example.com", "first_name": "A"})
    assert outcome.kind == "rejected" and outcome.reason == "validation"
    assert outcome.message is not None and outcome.message.startswith("The member does not exist and cannot be created")
    assert [m for m, _ in client.calls] == ["PUT"]


@pytest.mark.parametrize(("script", "kind"), [([GOT], "unchanged"), ([NO_USER], "rejected")])
def test_an_identifier_only_row_that_cannot_create_checks_the_member_with_one_read(
    script: list[Any], kind: str
) -> None:
    client = FakeClient(*script)
    outcome = run(writer(client, upsert_strategy="create_first"), {"user_id": "a@example.com"})
    assert outcome.kind == kind
    assert [m for m, _ in client.calls] == ["GET"]


def test_rows_crowdtwist_would_refuse_cost_no_request() -> None:
    client = FakeClient()
    w = writer(client)
    assert run(w, {"first_name": "A"}).reason == "missing_identifier"
    assert run(w, {**FULL, "email_address": "not-an-email"}).reason == "validation"
    assert run(w, {**FULL, "postal_code": None, "last_name": None}, mode="append").reason in ("validation", "location")
    assert client.calls == []


OTHER = ("GET", 200, {"id": 9, "email_address": "ann@example.com", "first_name": "Annie", "last_name": "Lee"})
SAME = ("GET", 200, {"id": 9, "email_address": "ann@example.com", "first_name": "Ann", "last_name": "Lee",
                     "postal_code": "10001"})


def test_insert_creates_only_and_reports_values_taken_by_someone_else() -> None:
    client = FakeClient(TAKEN, OTHER)
    outcome = run(writer(client), FULL, mode="append")
    assert (outcome.kind, outcome.reason, outcome.status) == ("rejected", "already_taken", 400)
    assert [m for m, _ in client.calls] == ["POST", "GET"]


def test_insert_of_a_member_that_already_holds_these_values_is_unchanged_not_rejected() -> None:
    # A replayed row whose member the killed attempt created (the fault matrix found it counted as rejected).
    client = FakeClient(TAKEN, SAME)
    outcome = run(writer(client), FULL, mode="append")
    assert outcome.kind == "unchanged"


def test_update_never_creates() -> None:
    client = FakeClient(NOT_FOUND)
    outcome = run(writer(client), FULL, mode="update")
    assert outcome.reason == "not_found"
    assert "never creates members" in (outcome.message or "")


def test_members_cannot_be_created_by_crowdtwist_id() -> None:
    client = FakeClient(NOT_FOUND)
    outcome = run(writer(client), {"id": 269654579, "first_name": "A", "last_name": "B"}, id_field="id", id_type="id")
    assert outcome.reason == "not_found"
    assert "cannot be created by CrowdTwist id" in (outcome.message or "")
    assert [m for m, _ in client.calls] == ["PUT"]
    assert client.calls[0][1] == {"first_name": "A", "last_name": "B"}  # the matching key is not sent as a field


def test_a_credentials_problem_stops_the_sync_instead_of_rejecting_rows() -> None:
    with pytest.raises(ConfigError):
        run(writer(FakeClient(FORBIDDEN), upsert_strategy="update_first"), FULL)


@pytest.mark.parametrize(
    ("mode", "script", "kind", "changes"),
    [
        ("append_dedup", [GOT], "would_update", ("first_name", "last_name", "postal_code")),
        ("append_dedup", [NO_USER], "would_create", None),
        ("update", [NO_USER], "rejected", None),
        ("append", [GOT], "rejected", None),
    ],
)
def test_dry_run_reads_and_never_writes(mode: str, script: list[Any], kind: str, changes: Any) -> None:
    client = FakeClient(*script)
    outcome = run(writer(client, dry_run=True), FULL, mode=mode)
    assert outcome.kind == kind
    if changes is not None:
        assert outcome.changes == changes
    assert [m for m, _ in client.calls] == ["GET"]


def test_prepare_keys_rows_by_identifier_type_and_value() -> None:
    w = writer(FakeClient())
    prepared = w.prepare(Row(StreamContext(None, "users", "append_dedup"), dict(FULL), 0))
    assert isinstance(prepared, Prepared)
    assert prepared.member == "email:ann@example.com"
    assert prepared.label != "ann@example.com"  # masked unless log_pii


def answer_after_uncertain(status: int, data: Any, endpoint: str) -> ApiResponse:
    return ApiResponse(status, data, {"Content-Type": "application/json"}, endpoint=endpoint, after_uncertain=True)


class LostCreateClient(FakeClient):
    """The first create landed but its answer was lost; the client's retry met "already taken"."""

    def __init__(self, profile: dict[str, Any]) -> None:
        super().__init__(("GET", 200, profile))
        self.creates = 0

    def create_user(self, payload: Mapping[str, Any]) -> ApiResponse:
        self.creates += 1
        self.calls.append(("POST", dict(payload)))
        return answer_after_uncertain(*TAKEN[1:], ENDPOINTS["POST"])


@pytest.mark.parametrize("mode", ["append", "append_dedup"])
def test_already_taken_after_a_lost_create_answer_is_our_create(mode: str) -> None:
    ours = {"id": 7, "email_address": "Ann@example.com", "first_name": "Ann", "last_name": "Lee", "postal_code": "10001"}
    client = LostCreateClient(ours)
    outcome = run(writer(client, upsert_strategy="create_first"), FULL, mode=mode)
    assert outcome.kind == "created"
    assert [m for m, _ in client.calls] == ["POST", "GET"]


def test_already_taken_after_a_lost_answer_by_someone_else_is_still_taken() -> None:
    theirs = {"id": 8, "email_address": "ann@example.com", "first_name": "Annie", "last_name": "Lee",
              "postal_code": "10001"}
    client = LostCreateClient(theirs)
    client.script.append(("GET", 200, theirs))  # insert mode also checks a plain "already taken"
    outcome = run(writer(client), FULL, mode="append")
    assert (outcome.kind, outcome.reason) == ("rejected", "already_taken")


def test_with_custom_attributes_configured_other_custom_fields_are_rejected_before_any_request() -> None:
    client = FakeClient()
    w = writer(client, custom_attributes=["tier", "store"])
    outcome = run(w, {**FULL, "tier": "gold", "shoe_size": "42", "favourite": "x"})
    assert (outcome.kind, outcome.reason) == ("rejected", "custom_attribute")
    assert "favourite, shoe_size" in (outcome.message or "")
    assert client.calls == []
    client = FakeClient(UPDATED)
    assert run(writer(client, custom_attributes=["tier"], upsert_strategy="update_first"),
               {**FULL, "tier": "gold"}).kind == "updated"
    assert client.calls[0][1]["custom_data"] == {"tier": "gold"}


def test_unknown_custom_field_names_are_the_rows_keys_and_masked_in_masked_outputs() -> None:
    w = writer(FakeClient(), custom_attributes=["tier"])
    outcome = run(w, {**FULL, "tier": "gold", "Ximena Okonkwo (spouse)": "x", "shoe_size": "42"})
    assert outcome.reason == "custom_attribute"
    assert "Ximena Okonkwo (spouse)" in outcome.text(masked=False)
    masked = outcome.text(masked=True)
    assert masked.startswith("custom field(s) ***, shoe_size are not among the configured custom_attributes")
    assert "Ximena" not in masked and "Okonkwo" not in masked
