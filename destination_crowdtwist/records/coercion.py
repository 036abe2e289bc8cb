"""Pure value coercions from warehouse values to CrowdTwist wire types.

Every function takes the raw value and the name of the field it belongs to, and either returns
the wire value or raises a `Rejection` (reason ``validation``). Error messages name the field and the *type* of the
value, never the value itself: they end up in logs and reject files, and the values are often
personal data (dates of birth, phone numbers, postal codes).

Wire types follow docs/crowdtwist-api-notes.md §2.5: dates are Unix epoch **seconds**, flags are the
integers 0/1, postal codes and phone numbers are strings.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from destination_crowdtwist.records.rejection import Reason, Rejection
from destination_crowdtwist.records.rejection import key as quoted_key

__all__ = [
    "EPOCH_MILLIS_THRESHOLD",
    "Rejection",
    "coercion_error",
    "to_country_code",
    "to_custom_value",
    "to_epoch_seconds",
    "to_flag",
    "to_int",
    "to_phone",
    "to_postal_code",
    "to_str",
]

# abs(value) >= 1e11 is read as epoch *milliseconds*. 1e11 seconds is the year 5138, far beyond any
# real date, while 1e11 milliseconds is 1973-03-03. The known blind spot: a millisecond value between
# 1969-12-31 and 1973-03-03 (|ms| < 1e11) is read as seconds and lands centuries in the future, which
# validation then reports for date_of_birth ("in the future").
EPOCH_MILLIS_THRESHOLD = 1e11

_DATE_EXPECTED = "a date (ISO date, ISO datetime, epoch seconds or epoch milliseconds)"
_FLAG_EXPECTED = "a flag (true/false, yes/no, y/n, t/f or 1/0)"
_POSTAL_EXPECTED = "a postal code (string or integer)"
_PHONE_EXPECTED = "a phone number (digits, optionally with + ( ) - . and spaces)"
_COUNTRY_EXPECTED = "a 2-letter ISO country code"
_INT_EXPECTED = "an integer"
_STR_EXPECTED = "a string"
_CUSTOM_EXPECTED = "a scalar value (string, number, boolean or date) for custom_data"

_ISO_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_NUMERIC_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_INTEGER_RE = re.compile(r"[+-]?\d+")
_US_ZIP4_RE = re.compile(r"\d{5}-?\d{4}")
_CA_POSTAL_RE = re.compile(r"([A-Za-z]\d[A-Za-z])[ -]?(\d[A-Za-z]\d)")
# Separators people put in phone numbers; anything else (letters, "ext", "#") is an error rather
# than silently dropped, so "212-555-1234 ext 5" is not turned into a different number.
_PHONE_SEPARATORS_RE = re.compile(r"[+().\-\s]")
_COUNTRY_RE = re.compile(r"[A-Z]{2}")

_FLAG_WORDS: dict[str, int] = {
    "1": 1,
    "0": 0,
    "true": 1,
    "false": 0,
    "yes": 1,
    "no": 0,
    "y": 1,
    "n": 0,
    "t": 1,
    "f": 0,
}

_EPOCH_DATE_ORDINAL = date(1970, 1, 1).toordinal()


def coercion_error(field: str, expected: str, got_type: str) -> Rejection:
    """The rejection for a value that cannot be turned into the wire type of its field.

    The message names the field, what was expected and the value's type, never the value. The field
    may be a column or custom_data key of the row (a key can be data: "Quentin Doe (spouse)"), so it
    is quoted and masked in masked outputs unless it names a field.
    """
    return Rejection(Reason.VALIDATION, (quoted_key(field), f": expected {expected}, got {got_type}"), field=field)


def _type_name(value: Any) -> str:
    return type(value).__name__


def _is_number(value: Any) -> bool:
    # bool is an int subclass; True/False are never accepted where a number is meant.
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def _integral(value: int | float | Decimal) -> int | None:
    """The value as an int when it is a whole number, else None (also for NaN/inf)."""
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value.is_integer() else None
    if value.is_finite() and value == value.to_integral_value():
        return int(value)
    return None


def _epoch_from_number(value: int | float | Decimal, field: str, got_type: str) -> int:
    if isinstance(value, float) and not math.isfinite(value):
        raise coercion_error(field, _DATE_EXPECTED, got_type)
    if isinstance(value, Decimal) and not value.is_finite():
        raise coercion_error(field, _DATE_EXPECTED, got_type)
    if abs(float(value)) >= EPOCH_MILLIS_THRESHOLD:
        # Integer division keeps exactness for big ints; floor so that pre-1970 values with a
        # fractional second round towards the earlier second, like datetime does.
        if isinstance(value, int):
            return value // 1000
        return math.floor(value / 1000)
    return math.floor(value)


def _epoch_from_datetime(value: datetime) -> int:
    # Naive datetimes are taken as UTC: warehouses mostly store UTC without an offset, and using
    # the machine's local zone would make the result depend on where the connector runs.
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return math.floor(value.timestamp())


def _epoch_from_date(value: date) -> int:
    return (value.toordinal() - _EPOCH_DATE_ORDINAL) * 86400


def to_epoch_seconds(value: Any, field: str) -> int:
    """Epoch seconds (int) from an ISO date/datetime string, a date/datetime, or an epoch number.

    - ``"1979-11-29"`` and `date` objects mean midnight UTC of that day;
    - ISO datetimes with an offset or ``Z`` are converted; naive ones are UTC;
    - numbers (and numeric strings) with ``abs >= 1e11`` are epoch milliseconds, others seconds;
      fractions are floored.
    """
    if isinstance(value, datetime):
        return _epoch_from_datetime(value)
    if isinstance(value, date):
        return _epoch_from_date(value)
    if _is_number(value):
        return _epoch_from_number(value, field, _type_name(value))
    if isinstance(value, str):
        text = value.strip()
        if _ISO_DATE_RE.fullmatch(text):
            try:
                return _epoch_from_date(date.fromisoformat(text))
            except ValueError:
                raise coercion_error(field, _DATE_EXPECTED, "str") from None
        if _NUMERIC_RE.fullmatch(text):
            number: int | float = int(text) if _INTEGER_RE.fullmatch(text) else float(text)
            return _epoch_from_number(number, field, "str")
        if text:
            # fromisoformat accepts "Z" but not a lowercase "z" (RFC 3339 allows both): normalise either.
            if text[-1] in "Zz":
                text = text[:-1] + "+00:00"
            try:
                return _epoch_from_datetime(datetime.fromisoformat(text))
            except ValueError:
                pass
    raise coercion_error(field, _DATE_EXPECTED, _type_name(value))


def to_flag(value: Any, field: str) -> int:
    """0/1 from a bool, 0/1 number, or one of 1/0, true/false, yes/no, y/n, t/f (any case)."""
    if isinstance(value, bool):
        return int(value)
    if _is_number(value):
        whole = _integral(value)
        if whole in (0, 1):
            return int(whole)  # int() narrows the type for mypy; whole is 0 or 1 here
    elif isinstance(value, str):
        flag = _FLAG_WORDS.get(value.strip().lower())
        if flag is not None:
            return flag
    raise coercion_error(field, _FLAG_EXPECTED, _type_name(value))


def to_postal_code(value: Any, field: str) -> str:
    """A postal code string.

    - integers and numeric strings of at most 5 digits are zero-padded to 5 (``2134 -> "02134"``):
      warehouses often store ZIP codes as numbers and lose the leading zero;
    - integers of 6 to 9 digits are ZIP+4 codes that lost leading zeros and are padded to 9;
    - US ZIP+4 strings ``"12345-6789"`` / ``"123456789"`` are kept as given;
    - Canadian codes are upper-cased and normalised to ``"A1A 1A1"``;
    - any other string is trimmed and kept (foreign postal codes have many formats).
    """
    if _is_number(value):
        whole = _integral(value)
        if whole is not None and 0 <= whole <= 999_999_999:
            return str(whole).zfill(5 if whole <= 99_999 else 9)
        raise coercion_error(field, _POSTAL_EXPECTED, _type_name(value))
    if isinstance(value, str):
        text = value.strip()
        if text.isascii() and text.isdigit() and len(text) <= 5:
            return text.zfill(5)
        if _US_ZIP4_RE.fullmatch(text):
            return text
        ca = _CA_POSTAL_RE.fullmatch(text)
        if ca:
            return f"{ca.group(1).upper()} {ca.group(2).upper()}"
        if text:
            return text
    raise coercion_error(field, _POSTAL_EXPECTED, _type_name(value))


def to_phone(value: Any, field: str) -> str:
    """Digits only: ``+``, ``( )``, ``-``, ``.`` and whitespace are removed; integers allowed.

    The format CrowdTwist expects is NOT FOUND in its docs (docs/crowdtwist-api-notes.md §2.5); the Kit's
    samples are bare 10-digit strings, so that is the normal form chosen here.
    """
    if _is_number(value):
        whole = _integral(value)
        if whole is not None and whole > 0:
            return str(whole)
        raise coercion_error(field, _PHONE_EXPECTED, _type_name(value))
    if isinstance(value, str):
        digits = _PHONE_SEPARATORS_RE.sub("", value)
        if digits and digits.isascii() and digits.isdigit():
            return digits
    raise coercion_error(field, _PHONE_EXPECTED, _type_name(value))


def to_country_code(value: Any, field: str) -> str:
    """A trimmed, upper-cased, 2-letter ISO country code."""
    if isinstance(value, str):
        code = value.strip().upper()
        if _COUNTRY_RE.fullmatch(code):
            return code
    raise coercion_error(field, _COUNTRY_EXPECTED, _type_name(value))


def to_int(value: Any, field: str) -> int:
    """An int from an int, a whole float/Decimal, or an integer string (``"834694"``, ``" 2 "``)."""
    if _is_number(value):
        whole = _integral(value)
        if whole is not None:
            return whole
    elif isinstance(value, str):
        text = value.strip()
        if _INTEGER_RE.fullmatch(text):
            return int(text)
    raise coercion_error(field, _INT_EXPECTED, _type_name(value))


def to_str(value: Any, field: str, *, strip: bool = True) -> str:
    """A string from a string or a number (whole floats lose their ``.0``: ``2.0 -> "2"``).

    Strings are trimmed unless ``strip=False`` (passwords are sent exactly as given).
    Booleans, objects and arrays are refused: their string form is ambiguous.
    """
    if isinstance(value, str):
        return value.strip() if strip else value
    if _is_number(value):
        return _number_to_str(value, field)
    raise coercion_error(field, _STR_EXPECTED, _type_name(value))


def _number_to_str(value: int | float | Decimal, field: str) -> str:
    whole = _integral(value)
    if whole is not None:
        return str(whole)
    if isinstance(value, float) and not math.isfinite(value):
        raise coercion_error(field, _STR_EXPECTED, _type_name(value))
    if isinstance(value, Decimal) and not value.is_finite():
        raise coercion_error(field, _STR_EXPECTED, _type_name(value))
    return str(value)


def to_custom_value(value: Any, field: str) -> str:
    """The string CrowdTwist stores for a custom attribute (its custom_data values are strings).

    bool -> ``"true"``/``"false"`` (the Kit's profile shows ``"opt_in_email": "true"``); numbers ->
    their decimal form (whole floats without ``.0``, so a ZIP-like 575.0 becomes ``"575"``);
    dates/datetimes -> ISO 8601; strings unchanged. Objects and arrays are refused: custom_data is
    a flat key -> string map (docs/crowdtwist-api-notes.md §2.7).
    """
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if _is_number(value):
        try:
            return _number_to_str(value, field)
        except Rejection:
            raise coercion_error(field, _CUSTOM_EXPECTED, _type_name(value)) from None
    if isinstance(value, date):  # datetime is a date subclass
        return value.isoformat()
    raise coercion_error(field, _CUSTOM_EXPECTED, _type_name(value))
