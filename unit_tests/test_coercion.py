"""Table-driven tests of the pure value coercions."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from destination_crowdtwist.records.coercion import (
    Rejection,
    to_country_code,
    to_custom_value,
    to_epoch_seconds,
    to_flag,
    to_int,
    to_phone,
    to_postal_code,
    to_str,
)

# 1979-11-29 00:00:00 UTC and the Kit's sample 312724800 (1979-11-29 12:00 UTC).
DOB_MIDNIGHT = 312681600
DOB_NOON = 312724800


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1979-11-29", DOB_MIDNIGHT),
        ("  1979-11-29 ", DOB_MIDNIGHT),
        ("1979-11-29T12:00:00Z", DOB_NOON),
        ("1979-11-29T12:00:00z", DOB_NOON),
        ("1979-11-29T12:00:00+00:00", DOB_NOON),
        ("1979-11-29T14:00:00+02:00", DOB_NOON),
        ("1979-11-29T07:00:00-05:00", DOB_NOON),
        ("1979-11-29T12:00:00", DOB_NOON),  # naive -> UTC
        ("1979-11-29 12:00:00", DOB_NOON),
        ("1979-11-29T12:00:00.999Z", DOB_NOON),  # fractions floored
        (datetime(1979, 11, 29, 12, 0, 0), DOB_NOON),
        (datetime(1979, 11, 29, 12, 0, 0, tzinfo=UTC), DOB_NOON),
        (datetime(1979, 11, 29, 13, 0, 0, tzinfo=timezone(timedelta(hours=1))), DOB_NOON),
        (date(1979, 11, 29), DOB_MIDNIGHT),
        (date(1950, 1, 1), -631152000),
        ("1950-01-01", -631152000),
        (DOB_NOON, DOB_NOON),  # epoch seconds
        (str(DOB_NOON), DOB_NOON),
        (float(DOB_NOON), DOB_NOON),
        (DOB_NOON + 0.7, DOB_NOON),
        (Decimal(DOB_NOON), DOB_NOON),
        (DOB_NOON * 1000, DOB_NOON),  # epoch milliseconds
        (DOB_NOON * 1000 + 999, DOB_NOON),
        (str(DOB_NOON * 1000), DOB_NOON),
        (float(DOB_NOON * 1000), DOB_NOON),
        (-631152000000, -631152000),  # negative ms (1950)
        ("-631152000000", -631152000),
        (0, 0),
        ("1.5e9", 1500000000),
        (100_000_000_000, 100_000_000),  # exactly the threshold -> ms
        (99_999_999_999, 99_999_999_999),  # just below -> seconds
    ],
)
def test_to_epoch_seconds_accepts(value: Any, expected: int) -> None:
    result = to_epoch_seconds(value, "date_of_birth")
    assert result == expected
    assert type(result) is int


@pytest.mark.parametrize(
    ("value", "got"),
    [
        ("", "str"),
        ("   ", "str"),
        ("yesterday", "str"),
        ("1979-13-01", "str"),
        ("1979-02-30", "str"),
        ("29/11/1979", "str"),
        (True, "bool"),
        (None, "NoneType"),
        (math.nan, "float"),
        (math.inf, "float"),
        ([1979, 11, 29], "list"),
        ({"y": 1979}, "dict"),
    ],
)
def test_to_epoch_seconds_rejects(value: Any, got: str) -> None:
    with pytest.raises(Rejection) as info:
        to_epoch_seconds(value, "date_of_birth")
    assert str(info.value) == (
        f"date_of_birth: expected a date (ISO date, ISO datetime, epoch seconds or epoch milliseconds), got {got}"
    )
    assert info.value.field == "date_of_birth"
    assert info.value.message.endswith(f"got {got}")


def test_coercion_error_never_contains_the_value() -> None:
    with pytest.raises(Rejection) as info:
        to_epoch_seconds("secret-birthday-1979", "date_of_birth")
    assert "secret" not in str(info.value)
    assert info.value.reason == "validation"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, 1),
        (False, 0),
        (1, 1),
        (0, 0),
        (1.0, 1),
        (0.0, 0),
        (Decimal("1"), 1),
        ("1", 1),
        ("0", 0),
        ("true", 1),
        ("TRUE", 1),
        (" True ", 1),
        ("false", 0),
        ("False", 0),
        ("yes", 1),
        ("YES", 1),
        ("no", 0),
        ("y", 1),
        ("N", 0),
        ("t", 1),
        ("F", 0),
    ],
)
def test_to_flag_accepts(value: Any, expected: int) -> None:
    result = to_flag(value, "receive_email_updates")
    assert result == expected
    assert type(result) is int


@pytest.mark.parametrize("value", [2, -1, 0.5, "2", "maybe", "", "on", None, [1], {"a": 1}])
def test_to_flag_rejects(value: Any) -> None:
    with pytest.raises(Rejection, match=r"^is_active: expected a flag .* got "):
        to_flag(value, "is_active")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (2134, "02134"),
        (501, "00501"),
        (94111, "94111"),
        (94111.0, "94111"),
        (Decimal("2134"), "02134"),
        ("2134", "02134"),
        (" 94111 ", "94111"),
        ("00501", "00501"),
        ("12345-6789", "12345-6789"),
        ("123456789", "123456789"),
        (123456789, "123456789"),
        (21341234, "021341234"),  # ZIP+4 stored as a number lost its leading zero
        ("k1a 0b1", "K1A 0B1"),
        ("K1A0B1", "K1A 0B1"),
        ("k1a-0b1", "K1A 0B1"),
        (" M5V 3L9 ", "M5V 3L9"),
        ("SW1A 1AA", "SW1A 1AA"),  # other countries: trimmed, kept
        (" 75008 Paris ", "75008 Paris"),
        ("1234567", "1234567"),
    ],
)
def test_to_postal_code_accepts(value: Any, expected: str) -> None:
    assert to_postal_code(value, "postal_code") == expected


@pytest.mark.parametrize(
    ("value", "got"),
    [("", "str"), ("  ", "str"), (-1, "int"), (1234567890, "int"), (12.5, "float"), (True, "bool"), (None, "NoneType")],
)
def test_to_postal_code_rejects(value: Any, got: str) -> None:
    with pytest.raises(Rejection) as info:
        to_postal_code(value, "postal_code")
    assert str(info.value) == f"postal_code: expected a postal code (string or integer), got {got}"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2125551234", "2125551234"),
        ("(212) 555-1234", "2125551234"),
        ("+1 212.555.1234", "12125551234"),
        ("212 555 1234\t", "2125551234"),
        (2125551234, "2125551234"),
        (2125551234.0, "2125551234"),
        ("+44 20 7946 0958", "442079460958"),
    ],
)
def test_to_phone_accepts(value: Any, expected: str) -> None:
    assert to_phone(value, "mobile_phone_number") == expected


@pytest.mark.parametrize(
    "value", ["", "()- .", "+", "212-555-1234 ext 5", "call me", "２１２５５５１２３４", -5, 0, 1.5, True, None]
)
def test_to_phone_rejects(value: Any) -> None:
    with pytest.raises(Rejection, match=r"^mobile_phone_number: expected a phone number"):
        to_phone(value, "mobile_phone_number")


@pytest.mark.parametrize(("value", "expected"), [("us", "US"), (" ca ", "CA"), ("Gb", "GB"), ("FR", "FR")])
def test_to_country_code_accepts(value: str, expected: str) -> None:
    assert to_country_code(value, "country_code") == expected


@pytest.mark.parametrize("value", ["USA", "U", "", "1A", "U S", 1, None, True])
def test_to_country_code_rejects(value: Any) -> None:
    with pytest.raises(Rejection, match=r"^country_code: expected a 2-letter ISO country code, got "):
        to_country_code(value, "country_code")


@pytest.mark.parametrize(
    ("value", "expected"),
    [(834694, 834694), ("834694", 834694), (" 2 ", 2), ("-3", -3), (2.0, 2), (Decimal("7"), 7)],
)
def test_to_int_accepts(value: Any, expected: int) -> None:
    result = to_int(value, "city_id")
    assert result == expected
    assert type(result) is int


@pytest.mark.parametrize("value", ["2.5", "abc", "", 2.5, math.nan, True, None, [1]])
def test_to_int_rejects(value: Any) -> None:
    with pytest.raises(Rejection, match=r"^city_id: expected an integer, got "):
        to_int(value, "city_id")


@pytest.mark.parametrize(
    ("value", "expected"),
    [(" Jane ", "Jane"), ("Zoë", "Zoë"), (2, "2"), (2.0, "2"), (2.5, "2.5"), (Decimal("10.50"), "10.50")],
)
def test_to_str_accepts(value: Any, expected: str) -> None:
    assert to_str(value, "gender_id") == expected


def test_to_str_without_strip_keeps_whitespace() -> None:
    assert to_str(" pass word ", "password", strip=False) == " pass word "


@pytest.mark.parametrize(
    ("value", "got"), [(True, "bool"), (None, "NoneType"), ({"a": 1}, "dict"), ([1], "list"), (math.inf, "float")]
)
def test_to_str_rejects(value: Any, got: str) -> None:
    with pytest.raises(Rejection) as info:
        to_str(value, "first_name")
    assert str(info.value) == f"first_name: expected a string, got {got}"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("gold", "gold"),
        ("", ""),
        (True, "true"),
        (False, "false"),
        (575, "575"),
        (575.0, "575"),
        (2.5, "2.5"),
        (Decimal("1.10"), "1.10"),
        (date(2024, 1, 31), "2024-01-31"),
        (datetime(2024, 1, 31, 8, 30), "2024-01-31T08:30:00"),
    ],
)
def test_to_custom_value_accepts(value: Any, expected: str) -> None:
    assert to_custom_value(value, "store_loc") == expected


@pytest.mark.parametrize(
    ("value", "got"), [({"a": 1}, "dict"), ([1, 2], "list"), (math.nan, "float"), (None, "NoneType")]
)
def test_to_custom_value_rejects(value: Any, got: str) -> None:
    with pytest.raises(Rejection) as info:
        to_custom_value(value, "prefs")
    assert str(info.value) == (
        f"prefs: expected a scalar value (string, number, boolean or date) for custom_data, got {got}"
    )
