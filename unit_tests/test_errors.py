"""The status / CrowdTwist error -> action table, tested as a table, and the error classes."""

from __future__ import annotations

import pytest
from airbyte_cdk.models import FailureType
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from destination_crowdtwist.api.errors import (
    RULES,
    Action,
    ConfigError,
    CrowdTwistError,
    RecordRejected,
    TransientError,
    UncertainOutcome,
    classify_response,
    error_from_resolution,
)
from destination_crowdtwist.sync.protocol import traced

# (id, status, error_code, message, is_html, path, action, reason_class, words the hint must contain)
ROWS = [
    ("200", 200, None, None, False, None, Action.OK, None, ()),
    ("204", 204, None, None, False, None, Action.OK, None, ()),
    ("301 redirect", 301, None, None, True, None, Action.CONFIG, "redirect", ("https",)),
    ("401 clock", 401, "invalid_signature", "Timestamp outside the allowed window", False, None,
     Action.CONFIG, "authentication", ("clock",)),
    ("401 signature", 401, "invalid_signature", "Signature mismatch", False, None,
     Action.CONFIG, "authentication", ("HMAC", "keys")),
    ("403 key", 403, None, "Invalid API key", False, None, Action.CONFIG, "authentication", ("API key",)),
    ("408", 408, None, None, False, None, Action.RETRY, "timeout", ()),
    ("429", 429, None, None, False, None, Action.RETRY, "throttled", ()),
    ("503 html", 503, None, None, True, None, Action.RETRY, "maintenance", ("maintenance",)),
    ("500", 500, "internal_error", "Something went wrong on our end.", False, None,
     Action.RETRY, "server_error", ()),
    ("502", 502, None, None, True, None, Action.RETRY, "server_error", ()),
    ("503 json", 503, None, None, False, None, Action.RETRY, "server_error", ()),
    ("504", 504, None, None, False, None, Action.RETRY, "server_error", ()),
    ("other 5xx", 507, None, None, False, None, Action.RETRY, "server_error", ()),
    ("404 html", 404, None, None, True, "/v2/users/{user_id}", Action.CONFIG, "wrong_base_url", ("base URL",)),
    ("event processed", 400, None, "Event already processed", False, None,
     Action.REJECT, "duplicate_event", ("already processed",)),
    ("already taken", 400, "input_error", "email_address already taken.", False, None,
     Action.REJECT, "already_taken", ("upsert", "another member")),
    ("no custom attrs", 400, None, "No custom attributes setup for client", False, None,
     Action.REJECT, "custom_attribute", ("Control Center", "unmapped_fields=drop")),
    ("unrecognized attr", 400, None, "Unrecognized attribute name: Store_Loc", False, None,
     Action.REJECT, "custom_attribute", ("case-sensitive",)),
    ("location", 400, None, "US zip code or country/city combo is required", False, None,
     Action.REJECT, "location", ("postal_code", "country_code")),
    ("invalid activity", 400, None, "Invalid activity", False, None,
     Action.REJECT, "invalid_activity", ("activity_id",)),
    ("invalid activity 404", 404, None, "Invalid activity id", False, "/v2/users/{user_id}/activities",
     Action.REJECT, "invalid_activity", ()),
    ("user does not exist", 404, "page_not_found", "User does not exist.", False, "/v2/users/{user_id}",
     Action.REJECT, "not_found", ("id_type",)),
    ("user does not exist, no path", 404, None, "User does not exist.", False, None,
     Action.REJECT, "not_found", ()),
    ("404 json non-user path", 404, "page_not_found", "Page not found", False, "/v2/activities",
     Action.CONFIG, "wrong_base_url", ("base URL",)),
    ("404 page_not_found user path", 404, "page_not_found", None, False, "/v2/users/{user_id}",
     Action.REJECT, "not_found", ()),
    ("404 unknown json, no path", 404, None, "Member not found", False, None, Action.REJECT, "not_found", ()),
    ("400 validation", 400, "param_error", "Missing the user_id parameter", False, None,
     Action.REJECT, "validation", ("field",)),
    ("422", 422, None, None, False, None, Action.REJECT, "validation", ()),
    ("other 4xx", 409, None, "Conflict", False, None, Action.REJECT, "rejected_by_api", ()),
    ("410", 410, None, None, False, None, Action.REJECT, "rejected_by_api", ()),
    ("unknown status", 199, None, None, False, None, Action.REJECT, "rejected_by_api", ()),
]


@pytest.mark.parametrize(
    ("status", "code", "message", "html", "path", "action", "reason", "words"),
    [row[1:] for row in ROWS],
    ids=[row[0] for row in ROWS],
)
def test_table_row(status: int, code: str | None, message: str | None, html: bool, path: str | None,
                   action: Action, reason: str | None, words: tuple[str, ...]) -> None:
    resolution = classify_response(status, code, message, is_html=html, path=path)
    assert resolution.action is action
    assert resolution.reason_class == reason
    for word in words:
        assert word.lower() in resolution.hint.lower()
    if action is not Action.OK:
        assert resolution.hint  # every non-OK row says what to do


def test_every_rule_is_reachable_from_some_row() -> None:
    used = set()
    for row in ROWS:
        _, status, code, message, html, path, *_ = row
        kind = None if path is None else ("user" if "/users/" in path else "other")
        used.add(next(i for i, rule in enumerate(RULES) if rule.matches(status, code, message, html, kind)))
    assert used == set(range(len(RULES)))


def test_messages_match_case_insensitively() -> None:
    assert classify_response(400, None, "USERNAME ALREADY TAKEN.").reason_class == "already_taken"


def test_error_hierarchy_and_failure_types() -> None:
    assert issubclass(UncertainOutcome, TransientError)
    for cls in (ConfigError, TransientError, UncertainOutcome, RecordRejected):
        assert issubclass(cls, CrowdTwistError)
    assert ConfigError("x").failure_type == "config_error"
    assert TransientError("x").failure_type == "transient_error"
    assert UncertainOutcome("x").failure_type == "transient_error"


def test_str_and_repr_carry_context() -> None:
    err = RecordRejected(
        "Fix the location.", reason_class="location", status=400, error_code="input_error",
        api_message="US zip code or country/city combo is required", request_line="POST /v2/users",
    )
    assert str(err) == (
        "Fix the location. (POST /v2/users, HTTP 400, error=input_error, "
        "message='US zip code or country/city combo is required')"
    )
    assert repr(err).startswith("RecordRejected(message='Fix the location.', status=400")
    assert "reason_class='location'" in repr(err)
    assert str(ConfigError("Only a message.")) == "Only a message."


def test_long_api_messages_are_shortened_in_str() -> None:
    err = TransientError("Down.", api_message="x" * 1000)
    assert len(str(err)) < 400
    assert err.api_message == "x" * 1000


def test_to_traced_exception() -> None:
    err = ConfigError("Check the API key.", status=403, request_line="GET /v2/activities")
    exc = traced(err)
    assert isinstance(exc, AirbyteTracedException)
    assert exc.failure_type is FailureType.config_error
    assert exc.message == "Check the API key."
    assert exc.internal_message == "Check the API key. (GET /v2/activities, HTTP 403)"
    message = exc.as_airbyte_message()
    assert message.trace.error.failure_type is FailureType.config_error


def test_error_from_resolution() -> None:
    reject = error_from_resolution(classify_response(400, None, "Invalid activity"), status=400)
    assert isinstance(reject, RecordRejected)
    assert reject.reason_class == "invalid_activity"
    assert isinstance(error_from_resolution(classify_response(403, None, None)), ConfigError)
    assert isinstance(error_from_resolution(classify_response(503, None, None)), TransientError)
    with pytest.raises(ValueError, match="OK"):
        error_from_resolution(classify_response(200, None, None))
