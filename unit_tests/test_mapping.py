"""Tests of record -> CrowdTwist user payload mapping."""

from __future__ import annotations

import dataclasses
import itertools
import time
from datetime import date
from typing import Any

import pytest

from destination_crowdtwist.records.mapping import (
    KNOWN_USER_FIELDS,
    FieldMapping,
    MappedUser,
    MappingOptions,
    Rejection,
    _compile,
    apply_field_mapping,
    create_payload,
    map_user_record,
)
from destination_crowdtwist.records.rejection import Reason
from destination_crowdtwist.records.user_payload import Intent, UserPayloads, user_payloads
from destination_crowdtwist.records.validation import check_user, validate_user

DEFAULT = MappingOptions()
DROP = MappingOptions(unmapped_fields="drop")
SEND_NULLS = MappingOptions(null_values="send")


def mapped(record: dict[str, Any], options: MappingOptions = DEFAULT) -> MappedUser:
    return map_user_record(record, options)


def row_error(record: dict[str, Any], options: MappingOptions = DEFAULT) -> Rejection:
    with pytest.raises(Rejection) as info:
        map_user_record(record, options)
    return info.value


def test_known_fields_are_coerced_to_wire_types() -> None:
    record = {
        "user_id": "jane@example.com",
        "email_address": " Jane@Example.com ",
        "first_name": " Jane ",
        "middle_name": "Q",
        "last_name": "Doe",
        "postal_code": 2134,
        "date_of_birth": "1979-11-29",
        "gender_id": 2,
        "mobile_phone_number": "(212) 555-1234",
        "third_party_id": 12345,
        "username": "janed",
        "password": " s3cret ",
        "lang_pref": "en",
        "receive_email_updates": "yes",
        "email_is_verified": True,
        "is_active": "1",
        "remove_points": 0,
        "send_verify_email": "f",
        "sign_up_channel_id": "2",
        "invite_code": "ABC",
        "extra_data": {"source": "crm", "nested": {"a": [1, 2]}},
    }
    result = mapped(record)
    assert result.user_id == "jane@example.com"
    assert result.dropped_fields == ()
    assert result.payload == {
        "email_address": "jane@example.com",
        "first_name": "Jane",
        "middle_name": "Q",
        "last_name": "Doe",
        "postal_code": "02134",
        "date_of_birth": 312681600,
        "gender_id": "2",
        "mobile_phone_number": "2125551234",
        "third_party_id": "12345",
        "username": "janed",
        "password": " s3cret ",  # never trimmed
        "lang_pref": "en",
        "receive_email_updates": 1,
        "email_is_verified": 1,
        "is_active": 1,
        "remove_points": 0,
        "send_verify_email": 0,
        "sign_up_channel_id": 2,
        "invite_code": "ABC",
        "extra_data": {"source": "crm", "nested": {"a": [1, 2]}},
    }


def test_location_fields_are_coerced() -> None:
    result = mapped({"user_id": "a@b.co", "country_code": " gb ", "city_id": "834694", "city_name": " London "})
    assert result.payload == {"country_code": "GB", "city_id": 834694, "city_name": "London"}


@pytest.mark.parametrize("country", ["US", "us", " Us "])
def test_redundant_us_country_next_to_a_zip_is_left_out(country: str) -> None:
    result = mapped({"user_id": "a@b.co", "postal_code": "94111", "country_code": country})
    assert result.payload == {"postal_code": "94111"}


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"country_code": "US"}, {"country_code": "US"}),  # no ZIP: kept (validation reports it)
        ({"country_code": "US", "postal_code": "K1A 0B1"}, {"country_code": "US", "postal_code": "K1A 0B1"}),
        ({"country_code": "CA", "postal_code": "k1a0b1"}, {"country_code": "CA", "postal_code": "K1A 0B1"}),
        ({"country_code": "DE", "postal_code": "10115"}, {"country_code": "DE", "postal_code": "10115"}),
    ],
)
def test_other_country_combinations_are_kept(record: dict[str, Any], expected: dict[str, Any]) -> None:
    assert mapped({"user_id": "a@b.co", **record}).payload == expected


def test_extra_data_json_string_is_parsed() -> None:
    result = mapped({"user_id": "a@b.co", "extra_data": '{"segment": "vip", "n": 3}'})
    assert result.payload == {"extra_data": {"segment": "vip", "n": 3}}


@pytest.mark.parametrize(
    ("value", "got"),
    [("[1, 2]", "str holding list"), ("not json", "str"), (5, "int"), ([1], "list")],
)
def test_extra_data_must_be_an_object(value: Any, got: str) -> None:
    error = row_error({"user_id": "a@b.co", "extra_data": value})
    assert error.reason == "validation"
    assert error.field == "extra_data"
    assert error.message == f"extra_data: expected a JSON object (or a string holding one), got {got}"


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("date_of_birth", "soon", "a date"),
        ("postal_code", 12.5, "a postal code"),
        ("mobile_phone_number", "call me", "a phone number"),
        ("country_code", "USA", "a 2-letter ISO country code"),
        ("city_id", "London", "an integer"),
        ("receive_email_updates", "maybe", "a flag"),
        ("first_name", {"given": "Jane"}, "a string"),
        ("gender_id", True, "a string"),
    ],
)
def test_coercion_failure_is_a_validation_row_error(field: str, value: Any, expected: str) -> None:
    error = row_error({"user_id": "a@b.co", field: value})
    assert error.reason == "validation"
    assert error.field == field
    assert error.message.startswith(f"{field}: expected {expected}")
    assert error.message.endswith(f"got {type(value).__name__}")
    assert str(error) == error.message
    if isinstance(value, str):
        assert value not in error.message


# --- identifier --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("id_type", "raw", "expected"),
    [
        ("email", "  Jane.Doe@Example.COM ", "jane.doe@example.com"),
        ("mobile_phone_number", "+1 (212) 555-1234", "12125551234"),
        ("mobile_phone_number", 2125551234, "2125551234"),
        ("id", 269654579, "269654579"),
        ("id", "269654579", "269654579"),
        ("id", 269654579.0, "269654579"),
        ("third_party_id", " CRM-0042 ", "CRM-0042"),
        ("third_party_id", 42, "42"),
        ("username", "AlexRewards99", "AlexRewards99"),  # case kept
    ],
)
def test_user_id_is_normalised(id_type: str, raw: Any, expected: str) -> None:
    assert mapped({"user_id": raw}, MappingOptions(id_type=id_type)).user_id == expected


@pytest.mark.parametrize("raw", ["<absent>", None, "", "   "])
def test_missing_user_id(raw: Any) -> None:
    record: dict[str, Any] = {"first_name": "Jane"}
    if raw != "<absent>":
        record["user_id"] = raw
    error = row_error(record)
    assert error.reason == "missing_identifier"
    assert error.field == "user_id"
    assert error.message == "user_id is required: map a source column holding the member's email to user_id"


@pytest.mark.parametrize(
    ("id_type", "raw", "message"),
    [
        ("email", "not-an-email", "user_id: expected an email address for id_type email, got str"),
        ("email", 42, "user_id: expected an email address for id_type email, got int"),
        ("id", "abc", "user_id: expected a positive integer CrowdTwist id for id_type id, got str"),
        ("id", 0, "user_id: expected a positive integer CrowdTwist id for id_type id, got int"),
        ("id", True, "user_id: expected a positive integer CrowdTwist id for id_type id, got bool"),
        ("mobile_phone_number", "n/a", "user_id: expected a phone number for id_type mobile_phone_number, got str"),
        ("username", {"a": 1}, "user_id: expected a string or integer for id_type username, got dict"),
        ("third_party_id", [1], "user_id: expected a string or integer for id_type third_party_id, got list"),
    ],
)
def test_invalid_user_id(id_type: str, raw: Any, message: str) -> None:
    error = row_error({"user_id": raw}, MappingOptions(id_type=id_type))
    assert (error.reason, error.field, error.message) == ("validation", "user_id", message)


def test_user_id_is_not_part_of_the_payload() -> None:
    result = mapped({"user_id": "a@b.co", "first_name": "Jane"})
    assert result.payload == {"first_name": "Jane"}


# --- metadata, unmapped fields, custom_data -------------------------------------------------------------


def test_airbyte_metadata_never_goes_anywhere() -> None:
    record = {
        "user_id": "a@b.co",
        "_airbyte_raw_id": "x",
        "_airbyte_extracted_at": 1700000000000,
        "_airbyte_meta": {"changes": []},
        "_ab_cdc_updated_at": "2024-01-01",
        "_ab_source_file_url": "s3://x",
    }
    for options in (DEFAULT, DROP, SEND_NULLS):
        result = mapped(record, options)
        assert result.payload == {}
        assert result.dropped_fields == ()


def test_unmapped_fields_go_to_custom_data_as_strings() -> None:
    record = {
        "user_id": "a@b.co",
        "first_name": "Jane",
        "opt_in_email": True,
        "opt_out": False,
        "store_loc": 575,
        "ltv": 12.5,
        "visits": 3.0,
        "tier": "gold",
        "joined": date(2024, 1, 31),
    }
    assert mapped(record).payload == {
        "first_name": "Jane",
        "custom_data": {
            "opt_in_email": "true",
            "opt_out": "false",
            "store_loc": "575",
            "ltv": "12.5",
            "visits": "3",
            "tier": "gold",
            "joined": "2024-01-31",
        },
    }


def test_no_custom_data_key_when_nothing_is_unmapped() -> None:
    assert "custom_data" not in mapped({"user_id": "a@b.co", "first_name": "Jane"}).payload


@pytest.mark.parametrize(("value", "got"), [({"a": 1}, "dict"), ([1, 2], "list")])
def test_unmapped_objects_and_arrays_are_row_errors(value: Any, got: str) -> None:
    error = row_error({"user_id": "a@b.co", "prefs": value})
    assert error.reason == "validation"
    assert error.field == "prefs"
    assert error.message == (
        f"prefs: expected a scalar value (string, number, boolean or date) for custom_data, got {got} "
        "(unmapped fields go to custom_data)"
    )


def test_unmapped_fields_dropped_when_configured() -> None:
    record = {"user_id": "a@b.co", "first_name": "Jane", "tier": "gold", "prefs": {"a": 1}, "gone": None}
    result = mapped(record, DROP)
    assert result.payload == {"first_name": "Jane"}
    assert result.dropped_fields == ("tier", "prefs", "gone")


def test_records_own_custom_data_is_merged_and_wins() -> None:
    record = {
        "user_id": "a@b.co",
        "tier": "silver",
        "store_loc": 1,
        "custom_data": {"tier": "gold", "opt_in_email": True, "skip_me": None},
    }
    assert mapped(record).payload == {"custom_data": {"tier": "gold", "store_loc": "1", "opt_in_email": "true"}}


def test_records_own_custom_data_is_kept_when_unmapped_fields_are_dropped() -> None:
    record = {"user_id": "a@b.co", "tier": "silver", "custom_data": {"tier": "gold"}}
    result = mapped(record, DROP)
    assert result.payload == {"custom_data": {"tier": "gold"}}
    assert result.dropped_fields == ("tier",)


def test_records_own_custom_data_as_json_string() -> None:
    assert mapped({"user_id": "a@b.co", "custom_data": '{"tier": "gold", "n": 2}'}).payload == {
        "custom_data": {"tier": "gold", "n": "2"}
    }


@pytest.mark.parametrize(
    ("value", "field", "message"),
    [
        (["x"], "custom_data", "custom_data: expected a JSON object of attribute names to values, got list"),
        ("[1]", "custom_data", "custom_data: expected a JSON object (or a string holding one), got str holding list"),
        ({"prefs": {"a": 1}}, "custom_data.prefs", "custom_data.prefs: expected a scalar value"),
    ],
)
def test_bad_own_custom_data(value: Any, field: str, message: str) -> None:
    error = row_error({"user_id": "a@b.co", "custom_data": value})
    assert (error.reason, error.field) == ("validation", field)
    assert error.message.startswith(message)


# --- nulls ----------------------------------------------------------------------------------------------


def test_nulls_are_skipped_by_default() -> None:
    record = {
        "user_id": "a@b.co",
        "first_name": None,
        "date_of_birth": None,
        "postal_code": "  ",
        "tier": None,
        "custom_data": {"opt_in": None},
    }
    assert mapped(record).payload == {}


def test_nulls_are_sent_when_configured() -> None:
    record = {
        "user_id": "a@b.co",
        "first_name": None,
        "date_of_birth": "",
        "extra_data": None,
        "tier": None,
        "custom_data": {"opt_in": None, "store": 5},
    }
    assert mapped(record, SEND_NULLS).payload == {
        "first_name": None,
        "date_of_birth": None,
        "extra_data": None,
        "custom_data": {"tier": None, "opt_in": None, "store": "5"},
    }


def test_null_own_custom_data_is_ignored() -> None:
    assert mapped({"user_id": "a@b.co", "custom_data": None}, SEND_NULLS).payload == {}


def test_blank_strings_in_custom_data_are_kept() -> None:
    assert mapped({"user_id": "a@b.co", "nickname": ""}).payload == {"custom_data": {"nickname": ""}}


# --- field_mapping --------------------------------------------------------------------------------------


def test_field_mapping_with_dotted_paths() -> None:
    options = MappingOptions(
        field_mapping=(
            FieldMapping("contact.email", "user_id"),
            FieldMapping("contact.email", "email_address"),
            FieldMapping("name.given", "first_name"),
            FieldMapping("name.family", "last_name"),
            FieldMapping("address.geo.zip", "postal_code"),
            FieldMapping("loyalty_tier", "tier"),
        )
    )
    record = {
        "contact": {"email": "Jane@Example.com", "phone": "x"},
        "name": {"given": "Jane", "family": "Doe"},
        "address": {"geo": {"zip": 2134}, "street": "1 Main St"},
        "loyalty_tier": "gold",
        "store": 7,
    }
    result = map_user_record(record, options)
    assert result.user_id == "jane@example.com"
    assert result.payload == {
        "email_address": "jane@example.com",
        "first_name": "Jane",
        "last_name": "Doe",
        "postal_code": "02134",
        # consumed sources (contact, name, address, loyalty_tier) do not travel on as unmapped fields
        "custom_data": {"store": "7", "tier": "gold"},
    }


def test_field_mapping_missing_source_is_absent() -> None:
    options = MappingOptions(
        field_mapping=(
            FieldMapping("email", "user_id"),
            FieldMapping("profile.first", "first_name"),
            FieldMapping("profile.zip.code", "postal_code"),  # goes through a non-object
            FieldMapping("nope", "last_name"),
        )
    )
    result = map_user_record({"email": "a@b.co", "profile": {"zip": "94111"}}, options)
    assert result.payload == {}
    assert result.user_id == "a@b.co"


def test_field_mapping_missing_user_id_source_is_missing_identifier() -> None:
    options = MappingOptions(field_mapping=(FieldMapping("contact.email", "user_id"),))
    error = row_error({"contact": {}}, options)
    assert error.reason == "missing_identifier"


def test_field_mapping_literal_dotted_key_wins_over_path() -> None:
    options = MappingOptions(field_mapping=(FieldMapping("a.b", "first_name"),))
    result = map_user_record({"user_id": "x@y.co", "a.b": "Literal", "a": {"b": "Nested"}}, options)
    assert result.payload["first_name"] == "Literal"


def test_field_mapping_renamed_null_follows_null_policy() -> None:
    options = MappingOptions(null_values="send", field_mapping=(FieldMapping("fname", "first_name"),))
    result = map_user_record({"user_id": "x@y.co", "fname": None}, options)
    assert result.payload == {"first_name": None}


def test_field_mapping_destination_overrides_same_named_column() -> None:
    options = MappingOptions(field_mapping=(FieldMapping("preferred_name", "first_name"),))
    result = map_user_record({"user_id": "x@y.co", "first_name": "Janet", "preferred_name": "Jane"}, options)
    assert result.payload == {"first_name": "Jane"}


def test_record_is_not_modified() -> None:
    record = {"user_id": " A@B.co ", "custom_data": {"x": 1}, "n": {"a": 1}}
    options = MappingOptions(unmapped_fields="drop", field_mapping=(FieldMapping("n.a", "city_id"),))
    snapshot = {"user_id": " A@B.co ", "custom_data": {"x": 1}, "n": {"a": 1}}
    map_user_record(record, options)
    assert record == snapshot


@pytest.mark.parametrize(
    "options",
    [MappingOptions(id_type="facebook"), MappingOptions(unmapped_fields="keep"), MappingOptions(null_values="zero")],
)
def test_bad_options_are_programming_errors(options: MappingOptions) -> None:
    with pytest.raises(ValueError, match="unknown"):
        map_user_record({"user_id": "a@b.co"}, options)


def test_known_user_fields_cover_the_documented_minimum() -> None:
    documented = {
        "email_address", "first_name", "last_name", "middle_name", "postal_code", "date_of_birth", "gender_id",
        "mobile_phone_number", "third_party_id", "username", "lang_pref", "country_code", "city_name", "city_id",
        "receive_email_updates", "email_is_verified", "is_active", "remove_points", "extra_data", "password",
        "invite_code", "send_verify_email", "sign_up_channel_id", "custom_data",
    }  # fmt: skip
    assert documented <= KNOWN_USER_FIELDS
    assert "user_id" not in KNOWN_USER_FIELDS


# --- create_payload ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("id_type", "raw", "field", "placed"),
    [
        ("email", "Jane@Example.com", "email_address", "jane@example.com"),
        ("third_party_id", "CRM-1", "third_party_id", "CRM-1"),
        ("username", "janed", "username", "janed"),
        ("mobile_phone_number", "212-555-1234", "mobile_phone_number", "2125551234"),
    ],
)
def test_create_payload_places_identifier(id_type: str, raw: str, field: str, placed: str) -> None:
    result = mapped({"user_id": raw, "first_name": "Jane"}, MappingOptions(id_type=id_type))
    body = create_payload(result, id_type)
    assert body == {"first_name": "Jane", field: placed}
    assert field not in result.payload  # the update payload is untouched


@pytest.mark.parametrize(
    ("id_type", "record_field", "record_value"),
    [
        ("email", "email_address", " JANE@example.com "),
        ("mobile_phone_number", "mobile_phone_number", "(212) 555 1234"),
        ("third_party_id", "third_party_id", 42),
        ("username", "username", " janed "),
    ],
)
def test_create_payload_accepts_an_agreeing_field(id_type: str, record_field: str, record_value: Any) -> None:
    user_ids = {
        "email": "jane@example.com",
        "mobile_phone_number": "2125551234",
        "third_party_id": "42",
        "username": "janed",
    }
    result = mapped({"user_id": user_ids[id_type], record_field: record_value}, MappingOptions(id_type=id_type))
    assert create_payload(result, id_type) == {record_field: user_ids[id_type]}


@pytest.mark.parametrize(
    ("id_type", "field", "user_id", "other"),
    [
        ("email", "email_address", "jane@example.com", "jane.doe@example.com"),
        ("third_party_id", "third_party_id", "CRM-1", "CRM-2"),
        ("username", "username", "janed", "JaneD"),
        ("mobile_phone_number", "mobile_phone_number", "2125551234", "2125559999"),
    ],
)
def test_create_payload_mismatch_is_a_validation_error(id_type: str, field: str, user_id: str, other: str) -> None:
    result = mapped({"user_id": user_id, field: other}, MappingOptions(id_type=id_type))
    # For updates the explicit field wins: it is how a member's email/username is changed.
    assert result.payload[field] == other
    with pytest.raises(Rejection) as info:
        create_payload(result, id_type)
    error = info.value
    assert (error.reason, error.field) == ("validation", field)
    assert error.message == (
        f"{field} differs from user_id (id_type {id_type}): a new member is created with user_id as its "
        f"{field}, so map the same column to both or leave {field} unmapped"
    )
    assert other not in error.message
    assert user_id not in error.message


def test_create_payload_replaces_a_sent_null() -> None:
    result = mapped({"user_id": "a@b.co", "email_address": None}, SEND_NULLS)
    assert result.payload == {"email_address": None}
    assert create_payload(result, "email") == {"email_address": "a@b.co"}


def test_create_payload_for_crowdtwist_id_places_nothing() -> None:
    result = mapped({"user_id": 269654579, "first_name": "Jane"}, MappingOptions(id_type="id"))
    body = create_payload(result, "id")
    assert body == {"first_name": "Jane"}
    assert body is not result.payload


def test_create_payload_unknown_id_type() -> None:
    with pytest.raises(ValueError, match="unknown id_type"):
        create_payload(MappedUser("x", {}, ()), "facebook")


def test_mapped_create_payload_passes_validation() -> None:
    record = {
        "user_id": "jane@example.com",
        "first_name": "Jane",
        "last_name": "O\u2019Brien",
        "postal_code": 2134,
        "country_code": "US",
        "date_of_birth": "1979-11-29T12:00:00Z",
        "receive_email_updates": "true",
        "mobile_phone_number": "+1 212 555 1234",
        "tier": "gold",
    }
    body = create_payload(mapped(record), "email")
    assert validate_user(body, creating=True, clock=lambda: 1_700_000_000.0) == []


# --- performance ---------------------------------------------------------------------------------------------

TYPICAL_OPTIONS = MappingOptions(
    field_mapping=(FieldMapping("email", "user_id"), FieldMapping("email", "email_address")))
TYPICAL_ROW: dict[str, Any] = {
    "email": "Jane.Doe@Example.com",
    "first_name": "Jane",
    "last_name": "Doe",
    "postal_code": "02134",
    "date_of_birth": "1979-11-29",
    "mobile_phone_number": "(212) 555-1234",
    "receive_email_updates": True,
    "tier": "gold",
    "store_loc": 575,
    "_airbyte_raw_id": "abc",
    "_airbyte_extracted_at": 1_700_000_000_000,
}


def test_the_options_are_compiled_once_not_per_row() -> None:
    # What keeps a row cheap without a clock: the field mapping is parsed once per set of options,
    # and each row only walks the compiled paths. Equal options (a new but equal object) share it.
    map_user_record(TYPICAL_ROW, TYPICAL_OPTIONS)
    before = _compile.cache_info()
    for _ in range(100):
        create_payload(map_user_record(TYPICAL_ROW, dataclasses.replace(TYPICAL_OPTIONS)), "email")
    after = _compile.cache_info()
    assert (after.misses - before.misses, after.hits - before.hits) == (0, 100)


# A measurement (time per row): marker perf, run by `make perf` and CI, not by `make test`
# (unit_tests/test_packaging.py checks the marker).
@pytest.mark.perf
def test_typical_row_maps_well_under_a_tenth_of_a_millisecond() -> None:
    map_user_record(TYPICAL_ROW, TYPICAL_OPTIONS)  # warm the compiled-options cache
    rows = 2000
    start = time.perf_counter()
    for _ in range(rows):
        create_payload(map_user_record(TYPICAL_ROW, TYPICAL_OPTIONS), "email")
    per_row = (time.perf_counter() - start) / rows
    # Typically ~10-15 µs on one core; the bound leaves room for a busy CI machine.
    assert per_row < 100e-6


# --- field_mapping per stream ----------------------------------------------------------------------------


def test_each_stream_gets_its_own_rules_and_the_rules_for_every_stream() -> None:
    from destination_crowdtwist.records.mapping import names_stream, rules_for_stream

    rules = (
        FieldMapping("user_id", "third_party_id", stream="purchases"),  # order does not matter any more
        FieldMapping("id", "third_party_id", stream="users"),
        FieldMapping("name", "first_name"),
        FieldMapping("uid", "third_party_id"),  # for every stream without its own third_party_id rule
    )
    assert rules_for_stream(rules, None, "users") == (rules[2], rules[1])
    assert rules_for_stream(rules, "shop", "purchases") == (rules[2], rules[0])  # a bare name matches any namespace
    assert rules_for_stream(rules, None, "events") == (rules[2], rules[3])
    assert names_stream("shop.purchases", "shop", "purchases") and not names_stream("shop.purchases", None, "purchases")
    users = map_user_record(
        {"id": 7, "user_id": 99, "name": "Ann", "email_address": "a@x.com"},
        MappingOptions(id_type="third_party_id", id_field="third_party_id",
                       field_mapping=rules_for_stream(rules, None, "users")),
    )
    assert users.user_id == "7"
    purchases = map_user_record(
        {"id": 7, "user_id": 99}, MappingOptions(id_type="third_party_id", id_field="third_party_id",
                                                 field_mapping=rules_for_stream(rules, None, "purchases")),
    )
    assert purchases.user_id == "99"


# -- one trip: records/user_payload.py ---------------------------------------------------------------

def _old_two_checks(
    record: dict[str, Any], options: MappingOptions, intent: Intent
) -> tuple[dict[str, Any] | Rejection | None, Rejection | None]:
    """What the User Profile writer decided before user_payloads: both checks, always (create, problem)."""
    mapped_user = map_user_record(record, options)
    update_problem = check_user(mapped_user.payload, creating=False, require_location=True)
    create: dict[str, Any] | Rejection
    if options.id_type == "id":
        create = Rejection(Reason.NOT_FOUND, "by id")
    else:
        try:
            create = create_payload(mapped_user, options.id_type)
        except Rejection as rejection:
            create = rejection
        else:
            create = check_user(create, creating=True, require_location=True) or create
    if intent is Intent.CREATE:
        return create, create if isinstance(create, Rejection) else None
    return (None if intent is Intent.UPDATE else create), update_problem


_GRID = {
    "first_name": [None, "Ann", "A!!"],
    "last_name": [None, "Lee"],
    "email_address": [None, "a@x.com", "other@x.com", "bad"],
    "postal_code": [None, "10001", "ABC"],
    "country_code": [None, "US", "DE"],
    "city_name": [None, "Berlin"],
    "mobile_phone_number": [None, "12"],
}


@pytest.mark.parametrize(
    ("options", "user_id"),
    [(DEFAULT, "a@x.com"), (SEND_NULLS, "a@x.com"), (MappingOptions(id_type="mobile_phone_number"), "12125551234")],
)
@pytest.mark.parametrize("intent", list(Intent))
def test_one_check_decides_an_upsert_as_the_two_checks_did(options: MappingOptions, user_id: str, intent: Intent) -> None:
    # For an upsert a create body CrowdTwist accepts proves the update body acceptable (it holds the same
    # values and the identifier, and creating only adds rules): the update body is checked only when the
    # create cannot be sent. Every combination of the grid decides as checking both always did.
    for values in itertools.product(*_GRID.values()):
        record: dict[str, Any] = {"user_id": user_id}
        record.update({k: v for k, v in zip(_GRID, values, strict=True) if v is not None})
        if options.null_values == "send":
            record.update({k: None for k, v in zip(_GRID, values, strict=True) if v is None})
        payloads = user_payloads(record, options, intent=intent)
        create, problem = _old_two_checks(record, options, intent)
        assert (payloads.create, payloads.problem) == (create, problem), record


def test_user_payloads_give_both_bodies_and_no_create_for_update_rows() -> None:
    record = {"user_id": "Ann@Example.com", "first_name": "Ann", "last_name": "Lee", "postal_code": "10001"}
    upsert = user_payloads(record, DEFAULT, intent=Intent.EITHER)
    assert upsert == UserPayloads("ann@example.com", {"first_name": "Ann", "last_name": "Lee", "postal_code": "10001"},
                                  {"first_name": "Ann", "last_name": "Lee", "postal_code": "10001",
                                   "email_address": "ann@example.com"})
    update = user_payloads(record, DEFAULT, intent=Intent.UPDATE)
    assert (update.update, update.create, update.problem) == (upsert.update, None, None)


def test_a_row_that_cannot_create_its_member_may_still_update_it_but_not_insert_it() -> None:
    record = {"user_id": "a@x.com", "first_name": "Ann"}  # no last name, no location: no create
    upsert = user_payloads(record, DEFAULT, intent=Intent.EITHER)
    assert upsert.problem is None and isinstance(upsert.create, Rejection)
    insert = user_payloads(record, DEFAULT, intent=Intent.CREATE)
    assert insert.problem == upsert.create


def test_custom_fields_outside_the_allow_list_are_the_rows_problem() -> None:
    record = {"user_id": "a@x.com", "first_name": "Ann", "tier": "gold", "shoe": "42"}
    payloads = user_payloads(record, DEFAULT, intent=Intent.UPDATE, custom_attributes=("tier",))
    assert payloads.problem is not None and payloads.problem.reason == "custom_attribute"
    assert payloads.user_id == "a@x.com"  # the row still names its member
    assert user_payloads(record, DEFAULT, intent=Intent.UPDATE, custom_attributes=("tier", "shoe")).problem is None


def test_a_row_that_cannot_be_mapped_raises_its_rejection() -> None:
    with pytest.raises(Rejection, match="user_id is required"):
        user_payloads({"first_name": "Ann"}, DEFAULT, intent=Intent.EITHER)


def test_rows_of_streams_with_different_options_each_map_by_their_own_options() -> None:
    # The compiled options are kept by identity for the next row: rows of two streams in turn (two
    # option objects, as a writer keeps one per stream) must each get their own field_mapping and id.
    users = MappingOptions(field_mapping=(FieldMapping("contact.mail", "email_address"),))
    buyers = MappingOptions(id_type="third_party_id", id_field="buyer", unmapped_fields="drop")
    row = {"user_id": "a@b.co", "buyer": " b-7 ", "contact": {"mail": "A@B.co"}, "tier": "gold"}
    for _ in range(3):
        mapped = map_user_record(row, users)
        assert (mapped.user_id, mapped.payload) == ("a@b.co", {"email_address": "a@b.co", "custom_data": {
            "buyer": " b-7 ", "tier": "gold"}})
        bought = map_user_record(row, buyers)
        assert (bought.user_id, bought.payload, bought.dropped_fields) == ("b-7", {}, ("contact", "tier"))
        assert apply_field_mapping(row, users) == {"user_id": "a@b.co", "buyer": " b-7 ", "tier": "gold",
                                                   "email_address": "A@B.co"}
        assert apply_field_mapping(row, buyers) is row


def test_options_that_are_not_valid_are_refused_every_time() -> None:
    # A refused set of options is never kept as "the last compiled".
    bad = MappingOptions(id_type="nickname")
    for _ in range(2):
        with pytest.raises(ValueError, match="unknown id_type"):
            map_user_record({"user_id": "x"}, bad)
