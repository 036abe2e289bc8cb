"""The status / CrowdTwist error -> action table, tested as a table, and the error classes."""

from __future__ import annotations

import pytest
from airbyte_cdk.models import FailureType
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from destination_crowdtwist.api.errors import (
    ANSWERED,
    NOT_RUN,
    REDIRECT,
    RULES,
    THROTTLED,
    TROUBLE,
    UNAVAILABLE,
    Action,
    Bound,
    ConfigError,
    CrowdTwistError,
    Meaning,
    Pace,
    Rule,
    TransientError,
    UncertainOutcome,
    classify_response,
    status_rule,
)
from destination_crowdtwist.records.rejection import Reason
from destination_crowdtwist.sync.protocol import traced

R = Reason
# body: "json" (or empty), "html" (an HTML page, not JSON), "text" (not JSON, not HTML).
# tag: the Reason for REJECT rows, the cause string for the others.
# (id, status, error_code, message, body, path, action, tag, words the hint must contain)
ROWS = [
    ("200", 200, None, None, "json", None, Action.OK, None, ()),
    ("204", 204, None, None, "json", None, Action.OK, None, ()),
    ("200 html page", 200, None, None, "html", None, Action.RETRY, "not_json", ("not JSON",)),
    ("200 plain text", 200, None, None, "text", None, Action.RETRY, "not_json", ("not JSON",)),
    ("301 redirect", 301, None, None, "html", None, Action.CONFIG, "redirect", ("https",)),
    ("401 clock", 401, "invalid_signature", "Timestamp outside the allowed window", "json", None,
     Action.CONFIG, "authentication", ("clock",)),
    ("401 signature", 401, "invalid_signature", "Signature mismatch", "json", None,
     Action.CONFIG, "authentication", ("HMAC", "keys")),
    ("403 key", 403, None, "Invalid API key", "json", None, Action.CONFIG, "authentication", ("API key",)),
    ("408", 408, None, None, "json", None, Action.RETRY, "timeout", ()),
    ("429", 429, None, None, "json", None, Action.RETRY, "throttled", ()),
    ("503 html", 503, None, None, "html", None, Action.RETRY, "maintenance", ("maintenance",)),
    ("500", 500, "internal_error", "Something went wrong on our end.", "json", None,
     Action.RETRY, "server_error", ()),
    ("502", 502, None, None, "html", None, Action.RETRY, "server_error", ()),
    ("503 json", 503, None, None, "json", None, Action.RETRY, "server_error", ()),
    ("504", 504, None, None, "json", None, Action.RETRY, "server_error", ()),
    ("other 5xx", 507, None, None, "text", None, Action.RETRY, "server_error", ()),
    ("404 html", 404, None, None, "html", "/v2/users/{user_id}", Action.CONFIG, "wrong_base_url", ("base URL",)),
    ("event processed", 400, None, "Event already processed", "json", None,
     Action.REJECT, R.DUPLICATE_EVENT, ("already processed",)),
    ("already taken", 400, "input_error", "email_address already taken.", "json", None,
     Action.REJECT, R.ALREADY_TAKEN, ("upsert", "another member")),
    ("no custom attrs", 400, None, "No custom attributes setup for client", "json", None,
     Action.REJECT, R.CUSTOM_ATTRIBUTE, ("Control Center", "unmapped_fields=drop")),
    ("unrecognized attr", 400, None, "Unrecognized attribute name: Store_Loc", "json", None,
     Action.REJECT, R.CUSTOM_ATTRIBUTE, ("case-sensitive",)),
    ("location", 400, None, "US zip code or country/city combo is required", "json", None,
     Action.REJECT, R.LOCATION, ("postal_code", "country_code")),
    ("invalid activity", 400, None, "Invalid activity", "json", None,
     Action.REJECT, R.INVALID_ACTIVITY, ("activity_id",)),
    ("invalid activity 404", 404, None, "Invalid activity id", "json", "/v2/users/{user_id}/activities",
     Action.REJECT, R.INVALID_ACTIVITY, ()),
    ("erase inactive with points", 400, "input_error", "Member is inactive but has redeemable points", "json",
     "/v2/users/{user_id}", Action.REJECT, R.CANNOT_ERASE, ("remove_points", "points first")),
    ("erase unable", 400, "input_error", "Unable to initiate deletion", "json", "/v2/users/{user_id}",
     Action.REJECT, R.CANNOT_ERASE, ("delete_behaviour deactivate",)),
    ("user does not exist", 404, "page_not_found", "User does not exist.", "json", "/v2/users/{user_id}",
     Action.REJECT, R.NOT_FOUND, ("id_type",)),
    ("user does not exist, no path", 404, None, "User does not exist.", "json", None,
     Action.REJECT, R.NOT_FOUND, ()),
    ("404 json non-user path", 404, "page_not_found", "Page not found", "json", "/v2/activities",
     Action.CONFIG, "wrong_base_url", ("base URL",)),
    ("404 page_not_found user path", 404, "page_not_found", None, "json", "/v2/users/{user_id}",
     Action.REJECT, R.NOT_FOUND, ()),
    ("404 unknown json, no path", 404, None, "Member not found", "json", None, Action.REJECT, R.NOT_FOUND, ()),
    ("400 validation", 400, "param_error", "Missing the user_id parameter", "json", None,
     Action.REJECT, R.VALIDATION, ("field",)),
    ("400 text page", 400, None, None, "text", None, Action.REJECT, R.VALIDATION, ()),
    ("422", 422, None, None, "json", None, Action.REJECT, R.VALIDATION, ()),
    ("other 4xx", 409, None, "Conflict", "json", None, Action.REJECT, R.REJECTED_BY_API, ()),
    ("410", 410, None, None, "json", None, Action.REJECT, R.REJECTED_BY_API, ()),
    ("unknown status", 199, None, None, "json", None, Action.REJECT, R.REJECTED_BY_API, ()),
    ("status beyond HTTP's", 600, None, None, "json", None, Action.REJECT, R.REJECTED_BY_API, ()),
]


@pytest.mark.parametrize(
    ("status", "code", "message", "body", "path", "action", "tag", "words"),
    [row[1:] for row in ROWS],
    ids=[row[0] for row in ROWS],
)
def test_table_row(status: int, code: str | None, message: str | None, body: str, path: str | None,
                   action: Action, tag: Reason | str | None, words: tuple[str, ...]) -> None:
    resolution = classify_response(status, code, message, is_html=body == "html", not_json=body != "json", path=path)
    assert resolution.action is action
    if action is Action.REJECT:
        assert (resolution.reason, resolution.cause) == (tag, None)
        assert isinstance(resolution.reason, Reason)
    else:
        assert (resolution.cause, resolution.reason) == (tag, None)
    for word in words:
        assert word.lower() in resolution.hint.lower()
    if action is not Action.OK:
        assert resolution.hint  # every non-OK row says what to do


def test_every_rule_is_reachable_from_some_row() -> None:
    used = set()
    for row in ROWS:
        _, status, code, message, body, path, *_ = row
        kind = None if path is None else ("user" if "/users/" in path else "other")
        used.add(next(i for i, rule in enumerate(RULES)
                      if rule.matches(status, code, message, is_html=body == "html", path_kind=kind,
                                     not_json=body != "json")))
    assert used == set(range(len(RULES)))


def test_reject_rules_carry_a_reason_and_only_they_do() -> None:
    for rule in RULES:
        assert (rule.action is Action.REJECT) == isinstance(rule.reason, Reason)
    with pytest.raises(ValueError, match="needs a Reason"):
        Rule(lambda status: True, Action.REJECT, "hint")
    with pytest.raises(ValueError, match="needs a Reason"):
        Rule(lambda status: True, Action.RETRY, "hint", reason=Reason.VALIDATION)
    with pytest.raises(ValueError, match="not by a cause"):
        Rule(lambda status: True, Action.REJECT, "hint", reason=Reason.VALIDATION, cause="x")


# What each status means for the request, whatever its body says: (statuses, meaning).
MEANINGS = [
    ((200, 204, 400, 401, 403, 404, 409, 410, 422, 199), ANSWERED),
    ((408,), NOT_RUN),
    ((429,), THROTTLED),
    ((503,), UNAVAILABLE),
    ((301, 302, 500, 502, 504, 507, 600), TROUBLE),
]


@pytest.mark.parametrize(("statuses", "meaning"), MEANINGS)
def test_each_status_means_one_thing_whatever_the_body(statuses: tuple[int, ...], meaning: Meaning) -> None:
    for status in statuses:
        assert status_rule(status).meaning == meaning
        for body in ("json", "html", "text"):
            for message in (None, "User does not exist.", "already taken"):
                resolution = classify_response(status, None, message, is_html=body == "html", not_json=body != "json",
                                               path="/v2/users/1")
                assert resolution.meaning == meaning, (status, body, message)


def test_every_row_of_a_status_carries_the_same_meaning() -> None:
    # The status line alone decides what an unusable answer (too large, cut off) is retried as, and what
    # the rate budget hears: that holds only if no row of a status says otherwise.
    for status in range(100, 1000):
        meanings = set()
        for rule in RULES:
            if rule.statuses(status):
                meanings.add(rule.meaning)
                if (rule.error_code, rule.message, rule.html, rule.not_json, rule.path_kind) == (None,) * 5:
                    break  # matches every answer of this status: the rows below are never reached for it
        assert len(meanings) == 1, (status, meanings)


def test_what_the_meanings_say() -> None:
    # processed False: a repeat is safe even for a credit; bound: what limits the retries; pace: the budget.
    assert (NOT_RUN.processed, NOT_RUN.bound, NOT_RUN.pace) == (False, Bound.COUNT, Pace.CLIMB)
    assert (THROTTLED.processed, THROTTLED.bound, THROTTLED.pace) == (False, Bound.THROTTLE, Pace.SLOW_DOWN)
    assert (UNAVAILABLE.processed, UNAVAILABLE.bound, UNAVAILABLE.pace) == (True, Bound.UNAVAILABLE, Pace.HOLD)
    assert (TROUBLE.processed, TROUBLE.bound, TROUBLE.pace) == (True, Bound.COUNT, Pace.HOLD)
    assert (ANSWERED.processed, ANSWERED.bound, ANSWERED.pace) == (True, Bound.COUNT, Pace.CLIMB)


def test_a_redirect_is_told_by_its_status_line_and_names_its_target() -> None:
    head = status_rule(302)
    assert (head.action, head.cause) == (Action.CONFIG, REDIRECT)
    assert head.advice("https://elsewhere.example/x") == (
        "The API base URL redirects to https://elsewhere.example/x; use the final https URL as the base URL."
    )
    assert "{location}" not in classify_response(302, None, None).hint
    assert status_rule(200).cause != REDIRECT and status_rule(404).cause != REDIRECT


def test_only_ok_and_reject_answers_did_the_work() -> None:
    for rule in RULES:
        assert rule.resolution().did_work == (rule.action in (Action.OK, Action.REJECT))


def test_messages_match_case_insensitively() -> None:
    assert classify_response(400, None, "USERNAME ALREADY TAKEN.").reason is Reason.ALREADY_TAKEN


def test_error_hierarchy_and_failure_types() -> None:
    assert issubclass(UncertainOutcome, TransientError)
    for cls in (ConfigError, TransientError, UncertainOutcome):
        assert issubclass(cls, CrowdTwistError)
    assert ConfigError("x").failure_type == "config_error"
    assert TransientError("x").failure_type == "transient_error"
    assert UncertainOutcome("x").failure_type == "transient_error"


def test_str_and_repr_carry_context() -> None:
    err = TransientError(
        "Try later.", status=500, error_code="internal_error",
        api_message="Something went wrong on our end.", request_line="POST /v2/users",
    )
    assert str(err) == (
        "Try later. (POST /v2/users, HTTP 500, error=internal_error, message='Something went wrong on our end.')"
    )
    assert repr(err).startswith("TransientError(message='Try later.', status=500")
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
    assert message.trace is not None and message.trace.error is not None
    assert message.trace.error.failure_type is FailureType.config_error
