"""PII masking for logs, error messages and reject files.

Masks keep just enough to recognise a value while debugging (first letter, last digits, TLD) and
never enough to recover it: ``john.doe@example.com -> j***@e***.com``, ``2125551234 -> ***1234``,
``alexrewards99 -> al***99``. Secrets (passwords, tokens, API keys) are always replaced by ``***``.

`mask_record` is deny-by-default: a field name is not a promise about its value (warehouse columns
are called ``telephone``, ``work_email``, ``emailAddress``, ``notes``...), so every string is masked
unless its field is on the short `HARMLESS_FIELDS` allow-list, and even there only a value of a strict
shape stays (an id token such as ``ORD-1001``, an ISO date or time, a short number): free text in an
allow-listed field (``event_id: "refund for Jane Doe, 42 Elm St"``) is masked whole. Known personal
fields (`PII_FIELDS`) keep their recognisable masks (``J***`` for a first name, ``***1234`` for a
phone). Unknown fields become ``***`` (or the email mask when the whole value is one), because even
a first letter gives away enum-like values (``gender: f***``); a digit string there keeps no digit
(``taxpayer_id: "123-45-8762"`` is an SSN, not a phone, and its last four are personal too).
Booleans and numbers stay, except numbers with 7 or more digits (phone, card or id numbers) and
numbers in fields whose name says they are personal (``zip``, ``birth_year``, ``latitude``...).

Object keys come from the row too (``{"Quentin Doe (spouse)": ...}``): a key stays readable only when
it is a field name (`is_schema_key`: a known field name, or a plain lower-case identifier such as
``loyalty_tier``); any other key becomes ``<key N>``, its position in its object, so that a user can
still find it in the source row (a hash would be stable across rows but can be confirmed against a
list of names, and names are few).

`mask_free_text` is for text that came from the row or the server as a whole (CrowdTwist's messages
echo the input: "Invalid postal_code for Jane Doe, 42 Elm St, Springfield"): every word becomes
``***`` except a closed vocabulary of API and field-name words, so the message stays readable as
"Invalid postal_code for *** ***, *** *** ***, ***". `mask_text` (emails and phone numbers only)
is for the connector's own text that may carry a member id (request lines, URLs).

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
    "is_schema_key",
    "mask_email",
    "mask_field_value",
    "mask_free_text",
    "mask_identifier",
    "mask_key",
    "mask_key_path",
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
# that one needs to debug a rejected row. Even here only a value of a strict shape stays: an id token
# (letters, digits and ``_ . : -``, no space, at most 64 characters, no run of 7+ digits that could
# be a phone, card or SSN; with a digit, or all lower case: a capitalised word is a name or a place),
# an ISO date or time, or a number of fewer than 7 digits. Anything else,
# above all free text ("refund for Jane Doe, 42 Elm St, card ***1111"), is masked whole.
#   activity_id   which CrowdTwist activity was credited: program configuration, the same for every
#                 member; the thing to check on an ``invalid_activity`` rejection.
#   num_points    how many points: an amount, meaningless without the (masked) member.
#   activity_date when the activity happened: needed to debug date validation and the replay window.
#   event_id      the source system's id of the event (order or transaction number, the default
#                 ``event_id_field``): finds the row in the warehouse and explains duplicates. A
#                 configured event id field of another name is passed in with ``harmless_fields``.
#   Airbyte metadata columns (ids and timestamps the platform adds; ``_airbyte_data`` is NOT here
#   because in raw tables it holds the whole record).
# Not here on purpose: country_code, tier, status and other custom attributes (coarse, but they are
# still facts about a person, and custom attributes can hold anything); anything with "date" in its
# name (date_of_birth is one); the warehouse's created_at and updated_at (a date there cannot be told
# from a date of birth, "1990-05-17 by Jane Doe" was found in one, and they do not explain a rejection).
HARMLESS_FIELDS: frozenset[str] = frozenset(
    {
        "activity_id",
        "num_points",
        "activity_date",
        "event_id",
        "airbyte_raw_id",
        "airbyte_ab_id",
        "airbyte_extracted_at",
        "airbyte_emitted_at",
        "airbyte_loaded_at",
        "airbyte_generation_id",
        "airbyte_meta",
    }
)

# CrowdTwist's own field names (docs/crowdtwist-api-notes.md §2.5, §3): names of the schema, never data. A
# key that is one of them stays readable in a masked record, and the word stays in masked server
# text. (records/mapping.py's KNOWN_USER_FIELDS is a subset; a unit test keeps it so.)
_CROWDTWIST_FIELDS = frozenset(
    {
        "gender_id", "lang_pref", "country_code", "city_id", "receive_email_updates", "email_is_verified",
        "is_active", "remove_points", "send_verify_email", "sign_up_channel_id", "invite_code",
        "extra_data", "store_id", "sign_up_campaign", "custom_data", "id_type", "dedupe_key",
    }
)  # fmt: skip

# Words of CrowdTwist's and the connector's messages that say what is wrong, never who: the only words
# `mask_free_text` keeps (besides field names). Lower case, matched case-sensitively (a capitalised
# word is kept only where a sentence starts), so a name written as a name ("Will", "Long", "Field")
# never passes. Words that are also common names, streets or places (may, will, long, young, park,
# main, street...) are left out on purpose.
_MESSAGE_WORDS = frozenset(
    """
    a an the and or of for to in on at by with from as per is are was be been being must should can
    cannot not no none only than more less too very this that these those it its there here has have
    had do does did done if when while after before between within without into than also any all
    each every other same new old
    invalid valid missing required unknown unrecognized unrecognised unsupported unexpected not found
    exist exists existing already taken processed duplicate incorrect wrong bad malformed empty blank
    null expected got given received provided provide please use used set setup configured configure
    allowed accepted refused rejected failed error errors warning message request body parameter
    parameters param field fields value values key keys attribute attributes custom format formatted
    length longer shorter characters character chars digits digit number numbers numeric string
    strings integer integers boolean object objects array list type types code codes id ids identifier
    user users member members profile activity activities event events credit credits credited points
    point program client date dates time timestamp timestamps epoch seconds unix future past year
    email address addresses phone mobile postal zip city country countries location domestic
    international combo combination name names letters spaces space only greater less equal maximum
    minimum max min limit limits exceeded exceeds least most between contains contain containing
    character characters one two three four five six seven eight nine ten zero true false yes
    """.split()  # noqa: SIM905 - a word list reads better as words
)
_MESSAGE_ACRONYMS = frozenset({"US", "ZIP", "ID", "API", "HTTP", "JSON", "UNIX", "ISO", "UTC", "CA", "OK"})
# A run of digit groups joined by date/number punctuation ("1990-05-17", "05/17/1990", "4111 1111"):
# masked whole in free text, so that no piece of a date of birth or a card number stays.
_DIGIT_GROUPS_RE = re.compile(r"\d+(?:[\-/.:,]\d+)+|\d+(?: \d+)+")
_WORD_RE = re.compile(r"\w+")
_SENTENCE_BREAKS = frozenset(".;:!?\u2014([")

# An allow-listed value of this shape stays (see HARMLESS_FIELDS).
_TOKEN_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}")
_ISO_DATETIME_RE = re.compile(
    r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+\-]\d{2}:?\d{2})?)?"
)
_ISO_DATE_IN_TEXT_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
# Allow-listed fields that hold a date: only an ISO date or time stays there (an id elsewhere).
_HARMLESS_DATE_FIELDS = frozenset({"activity_date", "airbyte_extracted_at", "airbyte_emitted_at", "airbyte_loaded_at"})
_NAME_CHARS_RE = re.compile(r"[A-Za-z][A-Za-z0-9_\-]*")
# Keys that name a field rather than hold data: a plain identifier that starts lower case (snake_case,
# camelCase, kebab-case) or an upper-case one with an underscore (Snowflake's LOYALTY_TIER). A key with
# a space, a capital first letter alone (a name: "Quentin"), "@", "(" or a leading digit is data.
_SCHEMA_KEY_RE = re.compile(r"_*[a-z][A-Za-z0-9]*(?:[_\-][A-Za-z0-9]+)*|_*[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+")


class _Kind(enum.Enum):
    SECRET = enum.auto()
    EMAIL = enum.auto()
    PHONE = enum.auto()
    IDENTIFIER = enum.auto()
    PII = enum.auto()
    HARMLESS = enum.auto()
    HARMLESS_DATE = enum.auto()
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
        return _Kind.HARMLESS_DATE if name in _HARMLESS_DATE_FIELDS else _Kind.HARMLESS
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
    # 7+ digits may be a phone, a card or an SSN: no digit of it stays (only phone *fields* keep 4).
    return MASK if _has_phone_run(str(value)) else value


def _mask_unknown_text(text: str) -> str:
    if not text.strip():
        return text  # blank reveals nothing, and "it was empty" is often the bug
    if _EMAIL_VALUE_RE.fullmatch(text.strip()):
        return mask_email(text)
    # Digits included: in a field not named as a phone, "123-45-8762" is as likely an SSN, and the
    # last four of an SSN or a card are personal.
    return MASK


def _mask_harmless_text(text: str) -> str:
    """An allow-listed id or amount: kept only as a strict token, else ``***``."""
    if not text.strip():
        return text
    if (
        _TOKEN_RE.fullmatch(text)
        and not _has_phone_run(text)
        and not _ISO_DATE_IN_TEXT_RE.search(text)  # a date in an id field may be a date of birth
        and (_has_digit(text) or text.islower() or text.isupper())
    ):
        # An id such as ORD-1001, signup or NULLED; a capitalised word without a digit reads as a
        # name or a place ("Schenectady") and is masked.
        return text
    return MASK


def _has_digit(text: str) -> bool:
    return any(char.isdigit() for char in text)


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
    # HARMLESS(_DATE) or UNKNOWN: the kind is inherited by list items and by unknown keys of nested objects.
    if isinstance(value, Mapping):
        return _mask_mapping(value, kind, pii, harmless)
    if isinstance(value, list | tuple):
        return [_mask_node(item, kind, pii, harmless) for item in value]
    if isinstance(value, int | float | Decimal):
        return _mask_number(value)
    text = value if isinstance(value, str) else str(value)
    if kind is _Kind.HARMLESS_DATE:
        return text if not text.strip() or _ISO_DATETIME_RE.fullmatch(text) else MASK
    return _mask_harmless_text(text) if kind is _Kind.HARMLESS else _mask_unknown_text(text)


def is_schema_key(key: str, known: Iterable[str] = ()) -> bool:
    """Whether an object key names a field (kept readable when masking) rather than holding data.

    True for known field names (`PII_FIELDS`, `HARMLESS_FIELDS`, secrets, CrowdTwist's fields, and
    ``known``), and for plain identifiers: lower-case first (``loyalty_tier``, ``orderRef``,
    ``x-api-key``) or upper-case snake (``LOYALTY_TIER``), without a run of 7+ digits. False for
    anything that reads like data: ``Quentin Doe (spouse)``, ``Jane``, ``jane@example.com``,
    ``2125551234``. A lower-case single word can still be a name written in lower case; the value
    under it is masked all the same.
    """
    name = _normalise_key(key)
    vocabulary = PII_FIELDS | HARMLESS_FIELDS | _CROWDTWIST_FIELDS
    if name in vocabulary or name in {_normalise_key(k) for k in known}:
        return bool(name)
    if len(key) > 64 or _has_phone_run(key):
        return False
    # A secret-looking name (X-API-Key) is a field name too, if it is made of name characters only:
    # "a00@cookie0.com" contains "cookie" but is an email.
    return bool(_SCHEMA_KEY_RE.fullmatch(key)) or (_is_secret_key(name) and bool(_NAME_CHARS_RE.fullmatch(key)))


def mask_key(key: str, position: int, known: Iterable[str] = ()) -> str:
    """``key`` if it names a field (`is_schema_key`), else ``<key N>``: its 1-based position in its object.

    The position (not a hash) because a hash of a name can be confirmed against a list of names,
    while the position still lets a user find the key in the source row.
    """
    return key if is_schema_key(key, known) else f"<key {position}>"


def mask_key_path(path: str) -> str:
    """A dotted field path (``custom_data.Quentin Doe (spouse)``) with each name that does not name a
    field masked: ``custom_data.***`` (in text there is no object to number the key in).
    """
    return ".".join(part if not part or is_schema_key(part) else MASK for part in path.split("."))


def _unique_keys(items: Iterable[tuple[str, Any]], known: Iterable[str] = ()) -> dict[str, Any]:
    """Keys masked by `mask_key`; two keys that end alike (1 and "1") both stay, numbered."""
    known = tuple(known)
    out: dict[str, Any] = {}
    for position, (key, value) in enumerate(items, start=1):
        masked = mask_key(key, position, known)
        candidate, n = masked, 1
        while candidate in out:
            n += 1
            candidate = f"{masked} #{n}"
        out[candidate] = value
    return out


def mask_field_value(field: str, value: Any) -> Any:
    """One value as `mask_record` masks it under the key ``field`` (for values quoted in messages)."""
    kind = _field_kind(field, PII_FIELDS, HARMLESS_FIELDS)
    return _mask_node(value, kind, PII_FIELDS, HARMLESS_FIELDS)


def _keep_word(word: str, text: str, start: int, known: frozenset[str]) -> bool:
    if word.isdigit():
        return len(word) == 1  # "5 or 9 digits"; longer numbers may be a house number or part of an id
    if word in _MESSAGE_WORDS or word in _MESSAGE_ACRONYMS or word in known:
        return True
    if _normalise_key(word) in PII_FIELDS | HARMLESS_FIELDS | _CROWDTWIST_FIELDS and "_" in word:
        return True  # a field name such as postal_code, written by the server
    lowered = word.lower()
    # A capitalised message word is kept only where a sentence starts ("Invalid postal_code ...").
    return (
        word[:1].isupper()
        and word[1:].islower()
        and lowered in _MESSAGE_WORDS
        and _starts_sentence(text, start)
    )


def _starts_sentence(text: str, start: int) -> bool:
    i = start - 1
    while i >= 0 and text[i].isspace():
        i -= 1
    return i < 0 or text[i] in _SENTENCE_BREAKS


def mask_free_text(text: str, known_words: Iterable[str] = ()) -> str:
    """Text that came from a row or a server, with every word masked but a closed vocabulary.

    Kept: the words of error messages (``invalid``, ``for``, ``must``, ``digits``...), field names
    (``postal_code``), ``known_words`` (e.g. the connector's configured field names), single digits
    and punctuation. Everything else, names, streets, cities, dates, ids, card numbers and emails
    alike, becomes ``***``: ``"Invalid postal_code for Jane Doe, 42 Elm St; DOB 1990-05-17"`` ->
    ``"Invalid postal_code for *** ***, *** *** ***; *** ***"``. Idempotent.
    """
    known = frozenset(known_words)
    text = _DIGIT_GROUPS_RE.sub(MASK, text)

    def word(match: re.Match[str]) -> str:
        return match.group(0) if _keep_word(match.group(0), text, match.start(), known) else MASK

    return _WORD_RE.sub(word, text)


def _mask_mapping(
    mapping: Mapping[Any, Any], inherited: _Kind, pii: frozenset[str], harmless: frozenset[str]
) -> dict[str, Any]:
    def masked_items() -> Iterable[tuple[str, Any]]:
        for raw_key, item in mapping.items():
            key = str(raw_key)
            kind = _field_kind(key, pii, harmless)
            yield key, _mask_node(item, inherited if kind is _Kind.UNKNOWN else kind, pii, harmless)

    return _unique_keys(masked_items(), pii | harmless)


def mask_record(
    record: Mapping[str, Any], extra_pii_fields: Iterable[str] = (), harmless_fields: Iterable[str] = ()
) -> dict[str, Any]:
    """A copy of ``record`` safe to write to a reject file or a log, recursively.

    Keys are normalised (case, camelCase, separators) and matched against `PII_FIELDS` plus
    ``extra_pii_fields`` (masked by type: ``j***@e***.com``, ``***1234``, ``al***99``, ``J***``), and
    against `HARMLESS_FIELDS` plus ``harmless_fields`` (kept when of a strict shape: an id token, an
    ISO date, a short number; else ``***``). Every other string becomes ``***``, or the email mask
    when it is one; numbers and booleans stay unless they have 7+ digits or the field name says
    personal (``zip``, ``birth``...). Passwords, tokens, API keys and secrets are always ``***``.
    Keys that do not name a field (`is_schema_key`) become ``<key N>``. The input is not modified.
    """
    pii = PII_FIELDS | frozenset(_normalise_key(name) for name in extra_pii_fields)
    harmless = HARMLESS_FIELDS | frozenset(_normalise_key(name) for name in harmless_fields)
    return _mask_mapping(record, _Kind.UNKNOWN, pii, harmless)
