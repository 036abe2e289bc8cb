"""Tests of PII masking for logs and reject files."""

from __future__ import annotations

from typing import Any

import pytest

from destination_crowdtwist.records.masking import (
    MASK,
    PII_FIELDS,
    SECRET_FIELDS,
    mask_email,
    mask_identifier,
    mask_phone,
    mask_record,
    mask_text,
    mask_value,
)


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
        "receive_email_updates": 1,  # not PII: unchanged
        "activity_id": 123,
        "tier": "gold",
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
        "contact": {"email": "j***@e***.com", "phone": "***1234", "kind": "home"},
        "people": [{"first_name": "J***"}, {"first_name": "J***", "role": "spouse"}],
        "custom_data": {"password_hint": MASK, "tier": "gold"},
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
        "tier": "gold",
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
