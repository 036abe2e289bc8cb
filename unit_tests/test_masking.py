"""Tests of PII masking for logs and reject files."""

from __future__ import annotations

from typing import Any

import pytest

from destination_crowdtwist.records.coercion import to_custom_value
from destination_crowdtwist.records.mapping import KNOWN_USER_FIELDS
from destination_crowdtwist.records.masking import (
    HARMLESS_FIELDS,
    MASK,
    PII_FIELDS,
    SECRET_FIELDS,
    is_schema_key,
    mask_email,
    mask_free_text,
    mask_identifier,
    mask_phone,
    mask_record,
    mask_text,
    mask_value,
)
from destination_crowdtwist.records.rejection import Reason, Rejection, key, server, value
from destination_crowdtwist.records.validation import check_user


@pytest.mark.parametrize(
    ("email", "masked"),
    [
        ("john.doe@example.com", "j***@e***.com"),
        ("a@b.co.uk", "a***@b***.uk"),
        (" Jane@Example.ORG ", "J***@E***.ORG"),
        ("x@localhost", "x***@***"),
        ("not-an-email", "no***il"),  # no @: masked as a whole
        ("@example.com", "@e***om"),
        ("abc", "***"),
        ("alice%40example.com", "a***%40e***.com"),  # percent-encoded @ kept as written
        ("alice%2540example.com", "a***%2540e***.com"),
        ("alice@example.c0m2125551234", "a***@e***.***"),  # not a TLD: masked too
        ("alice@example.com 2125551234", "al***34"),  # not one email: masked as a whole
        ("jöhn@exämple.de", "j***@e***.de"),
    ],
)
def test_mask_email(email: str, masked: str) -> None:
    assert mask_email(email) == masked


@pytest.mark.parametrize(
    ("phone", "masked"),
    [
        ("2125551234", "***1234"),
        ("+1 (212) 555-1234", "***1234"),
        ("442079460958", "***0958"),
        ("555123456", "***3456"),  # 9 digits
        ("55512345", "***345"),  # 8 digits: 3 kept
        ("5551234", "***234"),  # 7 digits: 3 kept
        ("12345", "***45"),
        ("1234", "***4"),
        ("123", "***3"),
        ("12", "***"),
        ("1", "***"),
        ("", "***"),
        ("n/a", "***"),
    ],
)
def test_mask_phone(phone: str, masked: str) -> None:
    assert mask_phone(phone) == masked


@pytest.mark.parametrize(
    ("value", "id_type", "masked"),
    [
        ("john.doe@example.com", "email", "j***@e***.com"),
        ("2125551234", "mobile_phone_number", "***1234"),
        (2125551234, "mobile_phone_number", "***1234"),
        (269654579, "id", "26***79"),
        ("269654579", "id", "26***79"),
        ("CRM-000042", "third_party_id", "CR***42"),
        ("alexrewards99", "username", "al***99"),
        ("janed", "username", "j***d"),  # 5-7 chars: 1 each side
        ("1234567", "id", "1***7"),
        ("abcd", "third_party_id", "***"),  # short: fully masked
        ("tp123442", "third_party_id", "tp***42"),  # 8+: 2 kept each side, still useful in a summary
        ("abcdefgh", "username", "ab***gh"),
        ("abcdefg", "username", "a***g"),  # 7
        ("abcde", "username", "a***e"),  # 5
        ("jane@example.com", "third_party_id", "j***@e***.com"),  # an email is masked as one, any id_type
        ("jane%40example.com", "username", "j***%40e***.com"),
        ("", "id", "***"),
        (None, "id", "***"),
    ],
)
def test_mask_identifier(value: Any, id_type: str, masked: str) -> None:
    assert mask_identifier(value, id_type) == masked


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("Jane", "J***"),
        ("J", "***"),
        ("", "***"),
        ("jane@example.com", "j***@e***.com"),
        (312724800, "***"),
        (12.5, "***"),
        (None, None),
        (True, True),
        ({"a": "Jane", "b": 5}, {"a": "J***", "b": "***"}),
        (["Jane", None], ["J***", None]),
    ],
)
def test_mask_value(value: Any, masked: Any) -> None:
    assert mask_value(value) == masked


def test_pii_fields_cover_the_documented_minimum() -> None:
    assert {
        "email_address", "first_name", "last_name", "middle_name", "mobile_phone_number", "date_of_birth",
        "postal_code", "username", "city_name", "user_id", "password", "third_party_id",
    } <= PII_FIELDS  # fmt: skip
    assert "password" in SECRET_FIELDS


def test_mask_record_masks_each_pii_field_by_type() -> None:
    record = {
        "user_id": "john.doe@example.com",
        "email_address": "john.doe@example.com",
        "first_name": "John",
        "last_name": "Doe",
        "middle_name": None,
        "mobile_phone_number": "2125551234",
        "date_of_birth": 312724800,
        "postal_code": "94111",
        "city_name": "London",
        "username": "alexrewards99",
        "third_party_id": "CRM-000042",
        "password": "hunter2",
        "facebook_access_token": "EAAB-token",
        "receive_email_updates": 1,
        "activity_id": 123,
        "tier": "gold",
    }
    assert mask_record(record) == {
        "user_id": "j***@e***.com",
        "email_address": "j***@e***.com",
        "first_name": "J***",
        "last_name": "D***",
        "middle_name": None,
        "mobile_phone_number": "***1234",
        "date_of_birth": "***",
        "postal_code": "9***",
        "city_name": "L***",
        "username": "al***99",
        "third_party_id": "CR***42",
        "password": MASK,
        "facebook_access_token": MASK,
        "receive_email_updates": 1,  # a short number in a field not named personal: unchanged
        "activity_id": 123,  # allow-listed
        "tier": MASK,  # unknown string: masked whole (a first letter would give an enum away)
    }


@pytest.mark.parametrize(
    ("user_id", "masked"),
    [("2125551234", "21***34"), (269654579, "26***79"), ("alexrewards99", "al***99"), ("ab", "***")],
)
def test_mask_record_user_id_without_known_id_type(user_id: Any, masked: str) -> None:
    assert mask_record({"user_id": user_id}) == {"user_id": masked}


def test_mask_record_is_recursive() -> None:
    record = {
        "contact": {"email": "jane@example.com", "phone": "212-555-1234", "kind": "home"},
        "people": [{"first_name": "Jane"}, {"first_name": "Joe", "role": "spouse"}],
        "custom_data": {"password_hint": "dog", "tier": "gold"},
        "extra_data": [[{"Last_Name": "Doe"}]],
    }
    assert mask_record(record) == {
        "contact": {"email": "j***@e***.com", "phone": "***1234", "kind": MASK},
        "people": [{"first_name": "J***"}, {"first_name": "J***", "role": MASK}],
        "custom_data": {"password_hint": MASK, "tier": MASK},
        "extra_data": [[{"Last_Name": "D***"}]],  # keys match case-insensitively
    }


def test_mask_record_pii_key_holding_an_object_masks_all_leaves() -> None:
    assert mask_record({"address": {"street": "1 Main St", "zip": 94111, "apt": None}}) == {
        "address": {"street": "1***", "zip": "***", "apt": None}
    }


@pytest.mark.parametrize("key", ["password", "Password", "api_token", "client_secret", "twitter_oauth_token_secret"])
def test_secrets_are_always_fully_masked(key: str) -> None:
    assert mask_record({key: "value-123"}) == {key: MASK}
    assert mask_record({"nested": [{key: 123}]}) == {"nested": [{key: MASK}]}
    assert mask_record({key: None}) == {key: None}


def test_mask_record_extra_pii_fields() -> None:
    record = {"loyalty_card": "6012345678901234", "Favourite_Store": "Soho", "tier": "gold"}
    assert mask_record(record, extra_pii_fields=("loyalty_card", "favourite_store")) == {
        "loyalty_card": "6***",
        "Favourite_Store": "S***",
        "tier": MASK,
    }


def test_mask_record_does_not_modify_its_input() -> None:
    record = {"first_name": "Jane", "nested": {"email": "j@x.co"}, "list": [{"phone": "2125551234"}]}
    snapshot = {"first_name": "Jane", "nested": {"email": "j@x.co"}, "list": [{"phone": "2125551234"}]}
    masked = mask_record(record)
    assert record == snapshot
    assert masked is not record


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("User does not exist.", "User does not exist."),
        ("email_address john.doe@example.com already taken.", "email_address j***@e***.com already taken."),
        ("a@b.co and c.d@e-f.org", "a***@b***.co and c***@e***.org"),
        ("phone 2125551234 invalid", "phone ***1234 invalid"),
        ("call (212) 555-1234 now", "call ***1234 now"),
        ("call 212-555-1234 or 212.555.1234", "call ***1234 or ***1234"),
        ("+1 212 555 1234", "***1234"),
        ("PUT /v2/users/12125551234?id_type=mobile_phone_number", "PUT /v2/users/***1234?id_type=mobile_phone_number"),
        ("HTTP 404 after 3 tries, code 123456", "HTTP 404 after 3 tries, code 123456"),  # short numbers kept
        ("date 2024-01-31", "date 2024-01-31"),
        ("", ""),
    ],
)
def test_mask_text(text: str, masked: str) -> None:
    assert mask_text(text) == masked


@pytest.mark.parametrize(
    "text", ["x john.doe@example.com 2125551234", "PUT /v2/users/j***@e***.com?id_type=email", "***1234 26***79"]
)
def test_mask_text_is_idempotent(text: str) -> None:
    once = mask_text(text)
    assert mask_text(once) == once
    assert "john" not in once
    assert "2125551234" not in once


# -- issue 12 D16: values that reached the rejected-records file unmasked ------------------------------


@pytest.mark.parametrize(
    ("record", "masked"),
    [
        ({"telephone": "212-555-1234"}, {"telephone": "***1234"}),
        ({"work_email": "jane@work.example.com"}, {"work_email": "j***@w***.com"}),
        ({"home_phone": "+44 20 7946 0958"}, {"home_phone": "***0958"}),
        ({"ssn": "123-45-6789"}, {"ssn": "1***"}),
        ({"street": "1 Main St"}, {"street": "1***"}),
        ({"api_key": "ak_live_0123456789abcdef"}, {"api_key": MASK}),
        ({"apiKey": "ak_live_0123456789abcdef"}, {"apiKey": MASK}),
        ({"X-API-Key": "ak_live_0123456789abcdef"}, {"X-API-Key": MASK}),
        ({"contact": {"emailAddress": "jane@example.com"}}, {"contact": {"emailAddress": "j***@e***.com"}}),
        ({"notes": "call Jane at 212-555-1234 or jane@example.com"}, {"notes": MASK}),
    ],
)
def test_reported_leaks_are_masked(record: dict[str, Any], masked: dict[str, Any]) -> None:
    assert mask_record(record) == masked


@pytest.mark.parametrize(
    ("record", "masked"),
    [
        # Unknown fields: emails keep their recognisable mask, other strings vanish, digits included
        # (a phone-shaped value there may as well be an SSN or a card number: no last four).
        ({"contact_info": "jane@example.com"}, {"contact_info": "j***@e***.com"}),
        ({"secondary": "alice%40example.com"}, {"secondary": "a***%40e***.com"}),
        ({"other": "(212) 555-1234"}, {"other": MASK}),
        ({"taxpayer_id": "123-45-8762"}, {"taxpayer_id": MASK}),
        ({"other": 2125551234}, {"other": MASK}),  # a number with 7+ digits may be a phone or a card
        ({"other": 2125551234.0}, {"other": MASK}),
        ({"gender": "female"}, {"gender": MASK}),
        ({"notes": ""}, {"notes": ""}),  # blank reveals nothing
        ({"notes": "  "}, {"notes": "  "}),
        # Lists and nesting: every element judged by its shape.
        ({"emails": ["a.b@example.com", "2125551234", "x"]}, {"emails": ["a***@e***.com", MASK, MASK]}),
        ({"a": [{"b": {"c": "jane@example.com"}}]}, {"a": [{"b": {"c": "j***@e***.com"}}]}),
        # Booleans and short numbers stay, unless the field name says personal.
        (
            {"points_balance": 1200, "is_vip": True, "ratio": 0.5},
            {"points_balance": 1200, "is_vip": True, "ratio": 0.5},
        ),
        (
            {"zipcode": 94111, "birth_year": 1980, "home_latitude": 51.5},
            {"zipcode": MASK, "birth_year": MASK, "home_latitude": MASK},
        ),
        # Keys are masked too unless they name a field: a map keyed by email, phone or name.
        ({"jane@example.com": "primary"}, {"<key 1>": MASK}),
        ({"2125551234": 1}, {"<key 1>": 1}),
        ({"alice@example.com": 1, "adam@example.com": 2}, {"<key 1>": 1, "<key 2>": 2}),
        ({"tier": "gold", "Quentin Doe (spouse)": "x"}, {"tier": MASK, "<key 2>": MASK}),
        ({"household": {"Quentin": "spouse", "LOYALTY_TIER": 2}}, {"household": {"<key 1>": MASK, "LOYALTY_TIER": 2}}),
    ],
)
def test_unknown_fields_are_masked_by_shape(record: dict[str, Any], masked: dict[str, Any]) -> None:
    assert mask_record(record) == masked


@pytest.mark.parametrize(
    ("record", "masked"),
    [
        ({"activity_id": "signup", "num_points": 100}, {"activity_id": "signup", "num_points": 100}),
        ({"ActivityId": 42}, {"ActivityId": 42}),  # names are normalised
        ({"activity_date": "2024-01-31T10:00:00Z"}, {"activity_date": "2024-01-31T10:00:00Z"}),
        ({"event_id": "ORD-1001"}, {"event_id": "ORD-1001"}),
        (
            {"activity_date": "2024-01-31 10:00:00", "event_id": None},
            {"activity_date": "2024-01-31 10:00:00", "event_id": None},
        ),
        # Allow-listed fields keep only strict shapes: free text, emails and long digit runs are masked whole.
        ({"event_id": "order-for-jane@example.com"}, {"event_id": MASK}),
        ({"event_id": "call 2125551234"}, {"event_id": MASK}),
        ({"event_id": 2125551234}, {"event_id": MASK}),
        ({"event_id": "refund for Jane Doe, 42 Elm St, card ***1111"}, {"event_id": MASK}),
        ({"event_id": "4111-1111-1111-1111"}, {"event_id": MASK}),
        ({"created_at": "1990-05-17 by Jane Doe"}, {"created_at": MASK}),
        ({"created_at": "2024-01-31 10:00:00"}, {"created_at": MASK}),  # not allow-listed: a DOB looks the same
        ({"event_id": "Schenectady"}, {"event_id": MASK}),  # a capitalised word without a digit: a name or place
        ({"activity_id": "purchase_bonus"}, {"activity_id": "purchase_bonus"}),
        ({"activity_date": 1706659200}, {"activity_date": MASK}),  # an epoch is not told from a phone
        # Airbyte metadata: kept (as a tree); the raw-table record column is not metadata.
        (
            {"_airbyte_meta": {"changes": [{"field": "email", "change": "NULLED", "reason": "SOURCE_ERROR"}]}},
            {"_airbyte_meta": {"changes": [{"field": "email", "change": "NULLED", "reason": "SOURCE_ERROR"}]}},
        ),
        (
            {"_airbyte_data": {"first_name": "Jane", "tier": "gold"}},
            {"_airbyte_data": {"first_name": "J***", "tier": MASK}},
        ),
        # A harmless parent does not unmask personal or secret children.
        (
            {"_airbyte_meta": {"email": "jane@example.com", "token": "t0k3n-abcdef"}},
            {"_airbyte_meta": {"email": "j***@e***.com", "token": MASK}},
        ),
    ],
)
def test_harmless_fields_stay_readable_but_not_their_emails_or_phones(
    record: dict[str, Any], masked: dict[str, Any]
) -> None:
    assert mask_record(record) == masked


def test_harmless_fields_documented_choice() -> None:
    assert {"activity_id", "num_points", "activity_date", "event_id"} <= HARMLESS_FIELDS
    assert not HARMLESS_FIELDS & PII_FIELDS
    assert "airbyte_data" not in HARMLESS_FIELDS  # holds the whole record in raw tables
    assert not any("birth" in name or "email" in name or "phone" in name for name in HARMLESS_FIELDS)


def test_mask_record_harmless_fields_argument() -> None:
    record = {"order_ref": "ORD-1001", "orderRef": "ORD-1002", "tier": "gold"}
    assert mask_record(record) == {"order_ref": MASK, "orderRef": MASK, "tier": MASK}
    assert mask_record(record, harmless_fields=("order_ref",)) == {
        "order_ref": "ORD-1001",
        "orderRef": "ORD-1002",
        "tier": MASK,
    }
    # Known personal fields cannot be declared harmless.
    assert mask_record({"email": "jane@example.com"}, harmless_fields=("email",)) == {"email": "j***@e***.com"}


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("GET /v2/users/alice%40example.com?id_type=email", "GET /v2/users/a***%40e***.com?id_type=email"),
        ("users/alice%2540example.com", "users/a***%2540e***.com"),  # encoded twice
        ("?email=jane@example.com&x=1", "?email=j***@e***.com&x=1"),
        ("write to jöhn@exämple.de.", "write to j***@e***.de."),
        ("call +44 20 7946 0958 today", "call ***0958 today"),
        ("q=%2B1%20%28212%29%20555-1234&x=1", "q=***1234&x=1"),
        ("tel:2125551234", "tel:***1234"),
        ("ID2125551234x", "ID***1234x"),
        ("at 2024-01-31 10:00:00 ok", "at 2024-01-31 10:00:00 ok"),
        ("at 2024-01-31T10:00:00.123456+00:00", "at 2024-01-31T10:00:00.123456+00:00"),
        ("on 2024-01-31 2125551234", "on ***1234"),  # a phone next to a date: masked with it
        ("version 1.2.3, code 404", "version 1.2.3, code 404"),
    ],
)
def test_mask_text_catches_encoded_and_international_forms(text: str, masked: str) -> None:
    assert mask_text(text) == masked
    assert mask_text(masked) == masked


# -- issue 21 item 2: free text, keys and server messages ----------------------------------------------


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        # The audited server's echo: every name, street, city, date and number goes, the words stay.
        (
            "Invalid postal_code for Jane Doe, 42 Elm St, Springfield; DOB 1990-05-17 and card 4111 1111 1111 1111",
            "Invalid postal_code for *** ***, *** *** ***, ***; *** *** and *** ***",
        ),
        ("Unrecognized attribute name: Quentin Doe (spouse)", "Unrecognized attribute name: *** *** (***)"),
        ("SSN 123-45-8762 of jane.doe@example.com", "*** *** of ***.***@***.***"),
        ("User does not exist.", "User does not exist."),
        ("Event already processed", "Event already processed"),
        ("US zip code or country/city combo is required", "US zip code or country/city combo is required"),
        ("expected 5 or 9 digits", "expected 5 or 9 digits"),
        # A capitalised message word passes only where a sentence starts: a name never does.
        ("Field is required. Will Long invalid", "Field is required. *** *** invalid"),
        ("", ""),
    ],
)
def test_mask_free_text(text: str, masked: str) -> None:
    assert mask_free_text(text) == masked
    assert mask_free_text(masked) == masked


def test_mask_free_text_keeps_known_words_it_is_given() -> None:
    assert mask_free_text("Unrecognized attribute name: tier", known_words=("tier",)) == (
        "Unrecognized attribute name: tier"
    )


@pytest.mark.parametrize(
    ("key", "kept"),
    [
        ("first_name", True), ("emailAddress", True), ("loyalty_tier", True), ("orderRef", True),
        ("LOYALTY_TIER", True), ("_airbyte_meta", True), ("x-api-key", True), ("EVENT_ID", True),
        ("Quentin Doe (spouse)", False), ("Quentin", False), ("jane@example.com", False), ("2125551234", False),
        ("42 Elm St", False), ("id2125551234", False), ("", False), ("X-API-Key", True),
        ("a00@cookie0.com", False),  # "cookie" makes a secret name, but this is an email
    ],
)  # fmt: skip
def test_is_schema_key(key: str, kept: bool) -> None:
    assert is_schema_key(key) is kept


def test_every_crowdtwist_field_name_is_a_schema_key_and_a_kept_word() -> None:
    assert all(is_schema_key(name) for name in KNOWN_USER_FIELDS)
    words = [name for name in KNOWN_USER_FIELDS if "_" in name]
    assert mask_free_text(" ".join(words)) == " ".join(words)


def test_a_rejection_masks_only_what_came_from_the_row_or_the_server() -> None:
    rejection = Rejection(
        Reason.VALIDATION,
        ("custom_data value ", key("Ximena Okonkwo (spouse)"), " must be a string; activity_id ",
         value("refund for Jane Doe", "activity_id"), " / ", value("ORD-1001", "activity_id"), ": ",
         server("Invalid name Jane Doe"), " — postal_code must be a US ZIP code (5 digits, or ZIP+4 as 12345-6789)"),
        field="custom_data.Ximena Okonkwo (spouse)",
    )  # fmt: skip
    assert rejection.message == (
        "custom_data value Ximena Okonkwo (spouse) must be a string; activity_id refund for Jane Doe / ORD-1001: "
        "Invalid name Jane Doe — postal_code must be a US ZIP code (5 digits, or ZIP+4 as 12345-6789)"
    )
    assert rejection.text(masked=False) == rejection.message
    assert rejection.text(masked=True) == (
        "custom_data value *** must be a string; activity_id *** / ORD-1001: Invalid name *** *** — "
        "postal_code must be a US ZIP code (5 digits, or ZIP+4 as 12345-6789)"
    )
    assert rejection.masked_field == "custom_data.***"
    prefixed = rejection.with_prefix("Cannot create: ").with_suffix(" (x)")
    assert prefixed.text(masked=True).startswith("Cannot create: custom_data value *** must")
    assert prefixed.text(masked=True).endswith("12345-6789) (x)")


def test_field_names_from_the_row_are_quoted_by_coercion_and_validation() -> None:
    with pytest.raises(Rejection) as caught:
        to_custom_value({"a": 1}, "custom_data.Quentin Doe (spouse)")
    assert caught.value.text(masked=True) == (
        "custom_data.***: expected a scalar value (string, number, boolean or date) for custom_data, got dict"
    )
    combined = check_user({"custom_data": {"Quentin Doe (spouse)": 5}}, creating=False, require_location=False)
    assert combined is not None
    assert "Quentin" in combined.message
    assert "Quentin" not in combined.text(masked=True)
    assert "must be a string (CrowdTwist stores custom attributes as strings)" in combined.text(masked=True)
