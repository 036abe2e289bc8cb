"""Table-driven tests of the pre-flight user payload checks."""

from __future__ import annotations

from typing import Any

import pytest

from destination_crowdtwist.records.rejection import Rejection
from destination_crowdtwist.records.validation import (
    LOCATION_REQUIRED_MESSAGE,
    is_us_postal_code,
    is_valid_email,
    is_valid_name,
    problem,
    validate_user,
)

NOW = 1_700_000_000.0


def fixed_clock() -> float:
    return NOW


VALID_CREATE: dict[str, Any] = {
    "first_name": "Jane",
    "last_name": "Doe",
    "email_address": "jane.doe@example.com",
    "postal_code": "94111",
}


def problems_for(payload: dict[str, Any], *, creating: bool = False, **kwargs: Any) -> list[Rejection]:
    return validate_user(payload, creating=creating, clock=fixed_clock, **kwargs)


def fields(problems: list[Rejection]) -> list[tuple[str | None, str]]:
    return [(p.field, p.reason) for p in problems]


def test_valid_create_has_no_problems() -> None:
    assert problems_for(VALID_CREATE, creating=True) == []


def test_empty_update_has_no_problems() -> None:
    assert problems_for({}, creating=False) == []


@pytest.mark.parametrize("field", ["first_name", "last_name", "email_address"])
@pytest.mark.parametrize("value", ["<absent>", None, "", "   "])
def test_create_requires_names_and_email(field: str, value: Any) -> None:
    payload = dict(VALID_CREATE)
    if value == "<absent>":
        del payload[field]
    else:
        payload[field] = value
    problems = problems_for(payload, creating=True)
    assert problems == [
        problem(field, "validation", f"{field} is required to create a member: map a source column to {field}")
    ]


def test_update_does_not_require_names_or_email() -> None:
    assert problems_for({"receive_email_updates": 1}, creating=False) == []


def test_all_problems_are_returned_not_only_the_first() -> None:
    problems = problems_for(
        {"first_name": "J@ne!", "mobile_phone_number": "12", "is_active": 2, "date_of_birth": "x"},
        creating=True,
    )
    assert fields(problems) == [
        ("last_name", "validation"),
        ("email_address", "validation"),
        ("first_name", "validation"),
        ("postal_code", "location"),
        ("date_of_birth", "validation"),
        ("is_active", "validation"),
        ("mobile_phone_number", "validation"),
    ]


@pytest.mark.parametrize(
    "name",
    [
        "Jane",
        "Mary-Jane",
        "O'Brien",
        "O\u2019Brien",
        "de la Cruz",
        "J. R.",
        "Smith, Jr.",
        "user_1@home",
        "Zoë",
        "José",
        "Łukasz",
        "Мария",
        "王小明",
        "محمد",
        "Jane2",
    ],
)
def test_name_regex_accepts(name: str) -> None:
    assert is_valid_name(name)
    for field in ("first_name", "middle_name", "last_name"):
        assert problems_for({field: name}) == []


@pytest.mark.parametrize(
    "name",
    ["", "Jane!", "Jane?", "Ja/ne", "Jane\n", "Jane\u00a0Doe", "Jane😀", "J(ane)", "Jane#1", "Jane٣", "a+b", "x;y"],
)
def test_name_regex_rejects(name: str) -> None:
    assert not is_valid_name(name)


@pytest.mark.parametrize("field", ["first_name", "middle_name", "last_name"])
def test_bad_name_problem_says_what_is_allowed(field: str) -> None:
    problems = problems_for({field: "Jane!"})
    assert problems == [
        problem(
            field,
            "validation",
            f"{field} contains characters CrowdTwist does not accept: use only letters, digits, spaces "
            "and - _ @ . , ' \u2019",
        )
    ]
    assert "Jane" not in problems[0].message


@pytest.mark.parametrize(("value", "message"), [(5, "must be a string"), ("  ", "must not be empty")])
def test_name_type_and_empty(value: Any, message: str) -> None:
    assert problems_for({"middle_name": value}) == [problem("middle_name", "validation", f"middle_name {message}")]


@pytest.mark.parametrize(
    "email",
    [
        "jane@example.com",
        "jane.doe+tag@sub.example.co.uk",
        "o'brien@example.ie",
        "x@xn--p1ai.xn--p1ai",
        "UPPER@EXAMPLE.COM",
        "a_b-c@ex-ample.org",
    ],
)
def test_email_accepts(email: str) -> None:
    assert is_valid_email(email)
    assert problems_for({"email_address": email}) == []


@pytest.mark.parametrize(
    "email",
    [
        "jane",
        "jane@",
        "@example.com",
        "jane@example",
        "jane@@example.com",
        "jane doe@example.com",
        ".jane@example.com",
        "jane.@example.com",
        "ja..ne@example.com",
        "jane@-example.com",
        "jane@example.c",
        "jane@example.123",
        "a" * 250 + "@example.com",
    ],
)
def test_email_rejects(email: str) -> None:
    assert not is_valid_email(email)
    assert problems_for({"email_address": email}) == [
        problem("email_address", "validation", "email_address is not a valid email address (expected name@domain.tld)")
    ]


def test_email_of_wrong_type() -> None:
    assert fields(problems_for({"email_address": 42})) == [("email_address", "validation")]


# --- location -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "location",
    [
        {"postal_code": "94111"},
        {"postal_code": "02134"},
        {"postal_code": "12345-6789"},
        {"postal_code": "123456789"},
        {"country_code": "CA", "postal_code": "K1A 0B1"},
        {"country_code": "CA", "postal_code": "K1A 0B1", "city_id": 5},  # CA city not validated
        {"country_code": "GB", "city_id": 834694},
        {"country_code": "GB", "city_name": "London"},
        {"country_code": "GB", "city_name": "London", "postal_code": "SW1A 1AA"},
        {"country_code": "DE", "city_name": "Berlin", "postal_code": "10115"},  # 5 digits, not a US ZIP
    ],
)
@pytest.mark.parametrize("creating", [True, False])
def test_location_accepts(location: dict[str, Any], creating: bool) -> None:
    payload = {**VALID_CREATE, "postal_code": None, **location}
    assert problems_for(payload, creating=creating) == []


@pytest.mark.parametrize(
    ("location", "field", "message_start"),
    [
        ({"postal_code": "9411"}, "postal_code", "postal_code must be a US ZIP code"),
        ({"postal_code": "941111"}, "postal_code", "postal_code must be a US ZIP code"),
        ({"postal_code": "12345_6789"}, "postal_code", "postal_code must be a US ZIP code"),
        ({"postal_code": "SW1A 1AA"}, "postal_code", "postal_code must be a US ZIP code"),
        ({"postal_code": "94111", "city_name": "San Francisco"}, "city_name", "for US addresses"),
        ({"postal_code": "94111", "city_id": 7}, "city_id", "for US addresses"),
        ({"postal_code": "94111", "country_code": "US"}, "country_code", "for US addresses"),
        ({"country_code": "US"}, "postal_code", "country_code US requires a US ZIP postal_code"),
        ({"country_code": "CA"}, "postal_code", "country_code CA requires a Canadian postal_code"),
        ({"country_code": "CA", "postal_code": "K1A0B1"}, "postal_code", "country_code CA requires"),
        ({"country_code": "CA", "postal_code": "94111"}, "postal_code", "country_code CA requires"),
        ({"country_code": "GB"}, "city_id", "country_code GB requires city_id or city_name"),
        ({"country_code": "GB", "postal_code": "SW1A 1AA"}, "city_id", "country_code GB requires"),
        ({"city_name": "London"}, "country_code", "city_id/city_name need a country_code"),
        ({"city_id": 834694}, "country_code", "city_id/city_name need a country_code"),
    ],
)
@pytest.mark.parametrize("creating", [True, False])
def test_location_rejects(location: dict[str, Any], field: str, message_start: str, creating: bool) -> None:
    payload = {**VALID_CREATE, "postal_code": None, **location}
    problems = problems_for(payload, creating=creating)
    assert len(problems) == 1
    assert problems[0].field == field
    assert problems[0].reason == "location"
    assert problems[0].message.startswith(message_start)


def test_us_zip_with_country_and_city_names_all_extra_fields() -> None:
    problems = problems_for({"postal_code": "94111", "country_code": "US", "city_name": "SF"})
    assert problems == [
        problem(
            "country_code",
            "location",
            "for US addresses CrowdTwist accepts only postal_code: do not send country_code/city_name with a "
            "US ZIP code (map country/city only for non-US members)",
        )
    ]


def test_canadian_postal_without_country_gets_a_hint() -> None:
    (problem,) = problems_for({"postal_code": "K1A 0B1"})
    assert problem.message.endswith("; a Canadian postal code also needs country_code CA")


def test_create_without_location_is_a_location_problem() -> None:
    payload = {k: v for k, v in VALID_CREATE.items() if k != "postal_code"}
    assert problems_for(payload, creating=True) == [
        problem(
            "postal_code",
            "location",
            f"{LOCATION_REQUIRED_MESSAGE}: map postal_code (US members) or country_code with city_id or city_name "
            "(other countries)",
        )
    ]


def test_create_without_location_is_allowed_when_relaxed() -> None:
    payload = {k: v for k, v in VALID_CREATE.items() if k != "postal_code"}
    assert problems_for(payload, creating=True, require_location=False) == []


def test_update_without_location_is_fine() -> None:
    assert problems_for({"first_name": "Jane"}, creating=False) == []


def test_null_location_fields_count_as_absent() -> None:
    payload = {**VALID_CREATE, "country_code": None, "city_id": None, "city_name": None}
    assert problems_for(payload, creating=True) == []


@pytest.mark.parametrize(
    ("location", "field", "message"),
    [
        ({"country_code": "gb", "city_id": 1}, "country_code", "country_code must be a 2-letter upper-case ISO code"),
        ({"country_code": "GBR", "city_id": 1}, "country_code", "country_code must be a 2-letter upper-case ISO code"),
        ({"country_code": "GB", "city_id": "834694"}, "city_id", "city_id must be a positive integer"),
        ({"country_code": "GB", "city_id": 0}, "city_id", "city_id must be a positive integer"),
        ({"country_code": "GB", "city_id": True}, "city_id", "city_id must be a positive integer"),
        ({"country_code": "GB", "city_name": " "}, "city_name", "city_name must be a non-empty string"),
        ({"postal_code": 94111}, "postal_code", "postal_code must be a string"),
    ],
)
def test_location_field_types(location: dict[str, Any], field: str, message: str) -> None:
    problems = problems_for(location)
    assert problems
    assert problems[0].field == field
    assert problems[0].reason == "validation"
    assert problems[0].message.startswith(message)


@pytest.mark.parametrize(
    ("value", "ok"),
    [("94111", True), ("94111-1234", True), ("941111234", True), ("9411", False), (94111, False), (None, False)],
)
def test_is_us_postal_code(value: Any, ok: bool) -> None:
    assert is_us_postal_code(value) is ok


# --- date of birth, flags, phone, objects ----------------------------------------------------------


@pytest.mark.parametrize("value", [312724800, 0, -631152000, int(NOW)])
def test_date_of_birth_accepts(value: int) -> None:
    assert problems_for({"date_of_birth": value}) == []


@pytest.mark.parametrize(
    ("value", "message_start"),
    [
        (int(NOW) + 1, "date_of_birth is in the future"),
        (312724800000, "date_of_birth is in the future"),
        ("312724800", "date_of_birth must be an integer of Unix epoch seconds"),
        (312724800.0, "date_of_birth must be an integer of Unix epoch seconds"),
        (True, "date_of_birth must be an integer of Unix epoch seconds"),
    ],
)
def test_date_of_birth_rejects(value: Any, message_start: str) -> None:
    (problem,) = problems_for({"date_of_birth": value})
    assert (problem.field, problem.reason) == ("date_of_birth", "validation")
    assert problem.message.startswith(message_start)


def test_clock_is_read_only_when_date_of_birth_is_present() -> None:
    def exploding_clock() -> float:
        raise AssertionError("clock must not be read")

    assert validate_user({"first_name": "Jane"}, creating=False, clock=exploding_clock) == []


@pytest.mark.parametrize(
    "field", ["receive_email_updates", "email_is_verified", "is_active", "remove_points", "send_verify_email"]
)
@pytest.mark.parametrize(
    ("value", "ok"), [(0, True), (1, True), (2, False), (-1, False), (True, False), ("1", False), (1.0, False)]
)
def test_flags(field: str, value: Any, ok: bool) -> None:
    expected = [] if ok else [problem(field, "validation", f"{field} must be 0 or 1")]
    assert problems_for({field: value}) == expected


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("2125551234", True),
        ("5551234", True),  # 7 digits
        ("123456789012345", True),  # 15 digits
        ("555123", False),
        ("1234567890123456", False),
        ("212-555-1234", False),
        (2125551234, False),
        ("２１２５５５１２３４", False),
    ],
)
def test_mobile_phone_number(value: Any, ok: bool) -> None:
    problems = problems_for({"mobile_phone_number": value})
    if ok:
        assert problems == []
    else:
        assert problems == [
            problem(
                "mobile_phone_number",
                "validation",
                "mobile_phone_number must be 7 to 15 digits (punctuation is removed during mapping)",
            )
        ]


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"extra_data": {"a": [1, {"b": 2}]}}, []),
        ({"extra_data": "x"}, [("extra_data", "validation")]),
        ({"custom_data": {"tier": "gold", "cleared": None}}, []),
        ({"custom_data": {"tier": 1}}, [("tier", "validation")]),
        ({"custom_data": ["x"]}, [("custom_data", "validation")]),
    ],
)
def test_objects(payload: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    assert fields(problems_for(payload)) == expected


def test_messages_never_echo_values() -> None:
    secret_bits = ["SECRETNAME!", "secret@@mail", "X9X9X9", "secret-phone"]
    payload = {
        "first_name": secret_bits[0],
        "email_address": secret_bits[1],
        "postal_code": secret_bits[2],
        "mobile_phone_number": secret_bits[3],
    }
    problems = problems_for(payload, creating=True)
    assert len(problems) == 5  # last_name required + 4 bad values
    for found in problems:
        for bit in secret_bits:
            assert bit not in found.message
