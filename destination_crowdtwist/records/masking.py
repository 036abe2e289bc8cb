"""PII masking for logs, error messages and reject files.

Masks keep just enough to recognise a value while debugging (first letter, last digits, TLD) and
never enough to recover it: ``john.doe@example.com -> j***@e***.com``, ``2125551234 -> ***1234``,
``alexrewards99 -> al***99``. Secrets (passwords, tokens, API keys) are always replaced by ``***``.

`mask_record` is deny-by-default: a field name is not a promise about its value (warehouse columns
are called ``telephone``, ``work_email``, ``emailAddress``, ``notes``...), so every string is masked
unless its field is on the short `HARMLESS_FIELDS` allow-list, and even there (and in every key,
nested object and list) anything that looks like an email or a phone number is masked by
`mask_text`. Known personal fields (`PII_FIELDS`) keep their recognisable masks (``J***`` for a
first name). Unknown fields become ``***`` (or the email/phone mask when the whole value is one),
because even a first letter gives away enum-like values (``gender: f***``). Booleans and numbers
stay, except numbers with 7 or more digits (they may be phone numbers) and numbers in fields whose
name says they are personal (``zip``, ``birth_year``, ``latitude``...).

This module is about *personal data*. Credentials in URLs and headers are `redaction`'s job.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import unquote

__all__ = [
    "HARMLESS_FIELDS",
    "MASK",
    "PII_FIELDS",
    "SECRET_FIELDS",
    "mask_email",
    "mask_identifier",
    "mask_phone",
    "mask_record",
    "mask_text",
    "mask_value",
]

MASK = "***"

# Field names below are compared after `_normalise_key` (lower snake case: "emailAddress" and
# "Email-Address" both become "email_address").
_EMAIL_FIELDS = frozenset(
    {"email_address", "email", "e_mail", "work_email", "personal_email", "home_email", "secondary_email"}
)
_PHONE_FIELDS = frozenset(
    {
        "mobile_phone_number",
        "phone",
        "phone_number",
        "mobile",
        "mobile_phone",
        "telephone",
        "telephone_number",
        "home_phone",
        "work_phone",
        "cell_phone",
        "fax",
        "fax_number",
    }
)
_IDENTIFIER_FIELDS = frozenset(
    {
        "user_id",
        "username",
        "third_party_id",
        "facebook_user_id",
        "twitter_user_id",
        "inst_user_id",
        "inst_username",
        "pinterest_user_id",
    }
)
# Always fully masked, wherever they appear (nested or not, listed as PII or not).
SECRET_FIELDS: frozenset[str] = frozenset(
    {
        "password",
        "salt",
        "facebook_access_token",
        "inst_access_token",
        "pinterest_access_token",
        "twitter_oauth_token",
        "twitter_oauth_token_secret",
    }
)
# Substrings that make any key a secret (e.g. a custom "api_token" column), matched against the key
# without separators so that "apiKey", "api_key" and "API-KEY" all hit "apikey".
_SECRET_KEY_PARTS = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "apikey",
    "privatekey",
    "accesskey",
    "signingkey",
    "credential",
    "authorization",
    "cookie",
)

PII_FIELDS: frozenset[str] = (
    _EMAIL_FIELDS
    | _PHONE_FIELDS
    | _IDENTIFIER_FIELDS
    | SECRET_FIELDS
    | {
        "first_name",
        "last_name",
        "middle_name",
        "full_name",
        "name",
        "date_of_birth",
        "birth_date",
        "birthdate",
        "dob",
        "postal_code",
        "zip",
        "zip_code",
        "city_name",
        "city",
        "street",
        "street_address",
        "street_address_1",
        "street_address_2",
        "address",
        "ip_address",
        "ssn",
        "social_security_number",
    }
)
# A field whose name contains one of these words holds personal data even when its value is a short
# number that would otherwise stay (a ZIP code as 94111, a birth year, a house number, coordinates).
_PII_NAME_WORDS = frozenset(
    {
        "ssn",
        "dob",
        "birth",
        "birthday",
        "birthdate",
        "zip",
        "zipcode",
        "postal",
        "postcode",
        "street",
        "address",
        "house",
        "lat",
        "latitude",
        "lon",
        "lng",
        "longitude",
        "gps",
        "age",
    }
)

# The allow-list for `mask_record`: values that describe the *event or the sync*, not the person, and
# that one needs to debug a rejected row. Their strings still go through `mask_text`, so an email or
# a phone number pasted into them is masked all the same.
#   activity_id   which CrowdTwist activity was credited: program configuration, the same for every
#                 member; the thing to check on an ``invalid_activity`` rejection.
#   num_points    how many points: an amount, meaningless without the (masked) member.
#   activity_date when the activity happened: needed to debug date validation and the replay window.
#   event_id      the source system's id of the event (order or transaction number, the default
#                 ``event_id_field``): finds the row in the warehouse and explains duplicates. A
#                 configured event id field of another name is passed in with ``harmless_fields``.
#   created_at, updated_at: row bookkeeping timestamps from the warehouse.
#   Airbyte metadata columns (ids and timestamps the platform adds; ``_airbyte_data`` is NOT here
#   because in raw tables it holds the whole record).
# Not here on purpose: country_code, tier, status and other custom attributes (coarse, but they are
# still facts about a person, and custom attributes can hold anything); anything with "date" in its
# name (date_of_birth is one).
HARMLESS_FIELDS: frozenset[str] = frozenset(
    {
        "activity_id",
        "num_points",
        "activity_date",
        "event_id",
        "created_at",
        "updated_at",
        "airbyte_raw_id",
        "airbyte_ab_id",
        "airbyte_extracted_at",
        "airbyte_emitted_at",
        "airbyte_loaded_at",
        "airbyte_generation_id",
        "airbyte_meta",
    }
)


class _Kind(enum.Enum):
    SECRET = enum.auto()
    EMAIL = enum.auto()
    PHONE = enum.auto()
    IDENTIFIER = enum.auto()
    PII = enum.auto()
    HARMLESS = enum.auto()
    UNKNOWN = enum.auto()


# -- shapes ------------------------------------------------------------------------------------------

# An email in free text. "@" may be percent-encoded once or twice (alice%40example.com), as a server
# echoing a URL writes it. The local part leaves out "/", "?", "=" and "&" although RFC 5322 allows
# them: they are rare in real addresses and common right before one in echoed URLs (users/a@b.co,
# ?email=a@b.co), where taking them in would swallow the URL. \w makes it Unicode-aware. Lengths are
# bounded (64 is the RFC limit of a local part, 63 of a domain label) so that a long text with an "@"
# costs linear time, not quadratic; of a longer (invalid) local part only the last 64 are masked.
_EMAIL_RE = re.compile(
    r"(?P<local>[\w!#$%'*+.\-^`{|}~]{1,64})(?P<at>@|%40|%2540)(?P<domain>[\w\-]{1,63}(?:\.[\w\-]{1,63})+)",
)
# A whole value that is meant as an email (looser: any domain, e.g. x@localhost).
_EMAIL_VALUE_RE = re.compile(r"(?P<local>[^\s@]+?)(?P<at>@|%40|%2540)(?P<domain>[^\s@%]+)", re.IGNORECASE)
_TLD_RE = re.compile(r"[^\W\d_]{1,24}")

# A run of digits joined by what people and URL encoders put between phone digit groups:
# "+1 (212) 555-1234", "212.555.1234", "+44 20 7946 0958", "%2B1%20%28212%29%20555-1234".
# Percent-encoded: space, "+", "(", ")", "-", ".", "/", ":" and a UTF-8 no-break space.
_SEP = r"(?:[ \u00a0.\-()/+:]|%(?i:2[0bde89f]|3a|c2%a0))"
_DIGIT_SPAN_RE = re.compile(rf"(?:\+|%2[Bb])?(?:\(|%28)?\d(?:{_SEP}{{0,3}}\d)*")
# 7 digits is the shortest subscriber number in common use; shorter runs (HTTP statuses, counts,
# years, points) are kept so that messages stay readable.
_MIN_PHONE_DIGITS = 7
# ISO dates and times are the long digit runs that are plainly not phone numbers; they are kept in
# text ("activity_date 2024-01-31 is in the future"). Only a span that is *exactly* one is kept, so a
# phone number next to a date is still masked (with the date).
_TIME = r"\d{1,2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:\s?[+\-]\d{2}(?::?\d{2})?)?"
_DATE = r"\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])"
_DATETIME_RE = re.compile(rf"{_DATE}(?: {_TIME})?|{_TIME}")
_NON_DIGITS_RE = re.compile(r"\D")

_CAMEL_RE = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_NON_ALNUM_RE = re.compile(r"[^0-9A-Za-z]+")


def _digit_count(text: str) -> int:
    return sum(char.isdigit() for char in text)


def _is_phone_span(span: str) -> bool:
    """Whether a `_DIGIT_SPAN_RE` match must be masked: 7+ digits once decoded, and not a date/time."""
    decoded = unquote(span)
    return _digit_count(decoded) >= _MIN_PHONE_DIGITS and not _DATETIME_RE.fullmatch(decoded)


def _is_phone_value(text: str) -> bool:
    stripped = text.strip()
    return bool(_DIGIT_SPAN_RE.fullmatch(stripped)) and _is_phone_span(stripped)


def _has_phone_run(text: str) -> bool:
    return any(_is_phone_span(match.group(0)) for match in _DIGIT_SPAN_RE.finditer(text))


# -- single values -----------------------------------------------------------------------------------


def _mask_middle(text: str) -> str:
    """Keep the first and last 2 characters of long values, 1 of medium ones, none of short ones."""
    if len(text) >= 8:
        return f"{text[:2]}{MASK}{text[-2:]}"
    if len(text) >= 5:
        return f"{text[:1]}{MASK}{text[-1:]}"
    return MASK


def _mask_email_parts(local: str, at: str, domain: str) -> str:
    host, dot, tld = domain.rpartition(".")
    if not dot or not host:
        return f"{local[0]}{MASK}{at}{MASK}"
    # Real TLDs are letters; anything else after the last dot could be data.
    return f"{local[0]}{MASK}{at}{host[0]}{MASK}.{tld if _TLD_RE.fullmatch(tld) else MASK}"


def mask_email(email: str) -> str:
    """``john.doe@example.com -> j***@e***.com``; a value that is not one email is masked as a whole.

    A percent-encoded ``@`` (``alice%40example.com``) is recognised and kept as it was written.
    """
    match = _EMAIL_VALUE_RE.fullmatch(email.strip())
    if match is None:
        return _mask_middle(email.strip())
    return _mask_email_parts(match["local"], match["at"], match["domain"])


def mask_phone(phone: str) -> str:
    """``2125551234 -> ***1234``: the last 4 digits at most, and never more than half of them."""
    digits = _NON_DIGITS_RE.sub("", unquote(phone))
    keep = min(4, (len(digits) - 1) // 2) if digits else 0
    return f"{MASK}{digits[-keep:]}" if keep > 0 else MASK


def mask_identifier(value: Any, id_type: str) -> str:
    """A member identifier masked for its ``id_type`` (email, mobile_phone_number, id, ...).

    Emails and phones as above; CrowdTwist ids, third-party ids and usernames keep their first and
    last 2 characters when at least 8 long (``269654579 -> 26***79``, ``tp123442 -> tp***42``), 1
    when 5 to 7 long (``janed -> j***d``), and nothing when shorter (``abcd -> ***``). A value of any
    id_type that is an email is masked as an email, so that no more than its first letter shows.
    """
    text = "" if value is None else str(value)
    if id_type == "email" or _EMAIL_VALUE_RE.fullmatch(text.strip()):
        return mask_email(text)
    if id_type == "mobile_phone_number":
        return mask_phone(text)
    return _mask_middle(text.strip())


def mask_value(value: Any) -> Any:
    """A generic PII value masked by type: strings keep their first character, numbers vanish.

    ``None`` and booleans are kept (they reveal nothing and help debugging); objects and arrays are
    masked element by element (object keys by `mask_text`).
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        if _EMAIL_VALUE_RE.fullmatch(value.strip()):
            return mask_email(value)
        return f"{value[0]}{MASK}" if len(value) >= 2 else MASK
    if isinstance(value, Mapping):
        return _unique_keys((str(key), mask_value(item)) for key, item in value.items())
    if isinstance(value, list | tuple):
        return [mask_value(item) for item in value]
    return MASK


def mask_text(text: str) -> str:
    """Free text with every email and phone-like number masked, whatever surrounds them.

    Emails (also with a percent-encoded ``@``) become ``j***@e***.com``; runs of 7 or more digits,
    alone or grouped like phone numbers (``+1 (212) 555-1234``, percent-encoded too), become
    ``***1234``. ISO dates and times and shorter numbers are kept. Idempotent.
    """
    if "@" in text or "%40" in text or "%2540" in text:
        text = _EMAIL_RE.sub(lambda m: _mask_email_parts(m["local"], m["at"], m["domain"]), text)
    return _DIGIT_SPAN_RE.sub(lambda m: mask_phone(m.group(0)) if _is_phone_span(m.group(0)) else m.group(0), text)


# -- records -----------------------------------------------------------------------------------------


def _normalise_key(key: str) -> str:
    """``emailAddress``, ``Email-Address`` and ``EMAIL_ADDRESS`` all become ``email_address``."""
    return _NON_ALNUM_RE.sub("_", _CAMEL_RE.sub("_", key)).strip("_").lower()


def _is_secret_key(normalised: str) -> bool:
    compact = normalised.replace("_", "")
    return normalised in SECRET_FIELDS or any(part in compact for part in _SECRET_KEY_PARTS)


def _field_kind(key: str, pii: frozenset[str], harmless: frozenset[str]) -> _Kind:
    name = _normalise_key(key)
    if _is_secret_key(name):
        return _Kind.SECRET
    if name in pii:
        if name in _EMAIL_FIELDS:
            return _Kind.EMAIL
        if name in _PHONE_FIELDS:
            return _Kind.PHONE
        if name in _IDENTIFIER_FIELDS:
            return _Kind.IDENTIFIER
        return _Kind.PII
    if name in harmless:
        return _Kind.HARMLESS
    if not _PII_NAME_WORDS.isdisjoint(name.split("_")):
        return _Kind.PII
    return _Kind.UNKNOWN


def _mask_auto_identifier(value: Any) -> Any:
    # The id_type of a bare "user_id" column is not known here: guess from the value's shape.
    if isinstance(value, Mapping | list | tuple):
        return mask_value(value)
    text = str(value).strip()
    return mask_email(text) if _EMAIL_VALUE_RE.fullmatch(text) else _mask_middle(text)


def _mask_number(value: int | float | Decimal) -> Any:
    text = str(value)
    return mask_phone(text) if _has_phone_run(text) else value


def _mask_unknown_text(text: str) -> str:
    if not text.strip():
        return text  # blank reveals nothing, and "it was empty" is often the bug
    if _EMAIL_VALUE_RE.fullmatch(text.strip()):
        return mask_email(text)
    if _is_phone_value(text):
        return mask_phone(text)
    return MASK


def _mask_node(value: Any, kind: _Kind, pii: frozenset[str], harmless: frozenset[str]) -> Any:  # noqa: PLR0911 - one return per kind of value, read as a table
    if kind is _Kind.SECRET:
        return None if value is None else MASK
    if value is None or isinstance(value, bool):
        return value
    if kind is _Kind.EMAIL:
        return mask_email(value) if isinstance(value, str) else mask_value(value)
    if kind is _Kind.PHONE:
        return mask_phone(str(value)) if isinstance(value, str | int) else mask_value(value)
    if kind is _Kind.IDENTIFIER:
        return _mask_auto_identifier(value)
    if kind is _Kind.PII:
        return mask_value(value)
    # HARMLESS or UNKNOWN: the kind is inherited by list items and by unknown keys of nested objects.
    if isinstance(value, Mapping):
        return _mask_mapping(value, kind, pii, harmless)
    if isinstance(value, list | tuple):
        return [_mask_node(item, kind, pii, harmless) for item in value]
    if isinstance(value, int | float | Decimal):
        return _mask_number(value)
    text = value if isinstance(value, str) else str(value)
    return mask_text(text) if kind is _Kind.HARMLESS else _mask_unknown_text(text)


def _unique_keys(items: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """Keys masked by `mask_text`; two keys that mask alike (a***@e***.com) both stay, numbered."""
    out: dict[str, Any] = {}
    for key, value in items:
        masked = mask_text(key)
        candidate, n = masked, 1
        while candidate in out:
            n += 1
            candidate = f"{masked} #{n}"
        out[candidate] = value
    return out


def _mask_mapping(
    mapping: Mapping[Any, Any], inherited: _Kind, pii: frozenset[str], harmless: frozenset[str]
) -> dict[str, Any]:
    def masked_items() -> Iterable[tuple[str, Any]]:
        for raw_key, item in mapping.items():
            key = str(raw_key)
            kind = _field_kind(key, pii, harmless)
            yield key, _mask_node(item, inherited if kind is _Kind.UNKNOWN else kind, pii, harmless)

    return _unique_keys(masked_items())


def mask_record(
    record: Mapping[str, Any], extra_pii_fields: Iterable[str] = (), harmless_fields: Iterable[str] = ()
) -> dict[str, Any]:
    """A copy of ``record`` safe to write to a reject file or a log, recursively.

    Keys are normalised (case, camelCase, separators) and matched against `PII_FIELDS` plus
    ``extra_pii_fields`` (masked by type: ``j***@e***.com``, ``***1234``, ``al***99``, ``J***``), and
    against `HARMLESS_FIELDS` plus ``harmless_fields`` (kept, with emails and phone numbers in them
    masked). Every other string becomes ``***``, or the email/phone mask when it is one; numbers and
    booleans stay unless they have 7+ digits or the field name says personal (``zip``, ``birth``...).
    Passwords, tokens, API keys and secrets are always ``***``. Emails and phone numbers in keys are
    masked too. The input is not modified.
    """
    pii = PII_FIELDS | frozenset(_normalise_key(name) for name in extra_pii_fields)
    harmless = HARMLESS_FIELDS | frozenset(_normalise_key(name) for name in harmless_fields)
    return _mask_mapping(record, _Kind.UNKNOWN, pii, harmless)
