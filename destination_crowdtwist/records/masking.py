"""PII masking for logs, error messages and reject files.

Masks keep just enough to recognise a value while debugging (first letter, last digits, TLD) and
never enough to recover it: ``john.doe@example.com -> j***@e***.com``, ``2125551234 -> ***1234``,
``alexrewards99 -> al***99``. Secrets (passwords, tokens) are always replaced by ``***``.

This module is about *personal data*. Credentials in URLs and headers are `redaction`'s job.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
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

_EMAIL_FIELDS = frozenset({"email_address", "email"})
_PHONE_FIELDS = frozenset({"mobile_phone_number", "phone", "phone_number", "mobile", "mobile_phone"})
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
# Substrings that make any key a secret (e.g. a custom "api_token" column).
_SECRET_KEY_PARTS = ("password", "secret", "token")

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
        "street_address_1",
        "street_address_2",
        "address",
        "ip_address",
    }
)

_EMAIL_RE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+")
# Long digit runs (phones, ids, card-like numbers) and phone numbers written with separators.
_DIGITS_RE = re.compile(r"(?<!\d)\d{7,}(?!\d)")
_FORMATTED_PHONE_RE = re.compile(r"(?<![\w])(?:\+\d{1,3}[ .\-]?)?\(?\d{3}\)?[ .\-]\d{3}[ .\-]\d{4}(?!\d)")
_NON_DIGITS_RE = re.compile(r"\D")


def _mask_middle(text: str) -> str:
    """Keep the first and last 2 characters of long values, 1 of medium ones, none of short ones."""
    if len(text) >= 8:
        return f"{text[:2]}{MASK}{text[-2:]}"
    if len(text) >= 5:
        return f"{text[:1]}{MASK}{text[-1:]}"
    return MASK


def mask_email(email: str) -> str:
    """``john.doe@example.com -> j***@e***.com``; a value without ``@`` is masked as a whole."""
    local, at, domain = email.strip().rpartition("@")
    if not at or not local or not domain:
        return _mask_middle(email)
    host, dot, tld = domain.rpartition(".")
    if not dot or not host:
        return f"{local[0]}{MASK}@{MASK}"
    return f"{local[0]}{MASK}@{host[0]}{MASK}.{tld}"


def mask_phone(phone: str) -> str:
    """``2125551234 -> ***1234``: the last 4 digits at most, and never more than half of them."""
    digits = _NON_DIGITS_RE.sub("", phone)
    keep = min(4, (len(digits) - 1) // 2) if digits else 0
    return f"{MASK}{digits[-keep:]}" if keep > 0 else MASK


def mask_identifier(value: Any, id_type: str) -> str:
    """A member identifier masked for its ``id_type`` (email, mobile_phone_number, id, ...).

    Emails and phones as above; CrowdTwist ids, third-party ids and usernames keep their first and
    last 2 characters when at least 8 long (``269654579 -> 26***79``), less when shorter.
    """
    text = "" if value is None else str(value)
    if id_type == "email":
        return mask_email(text)
    if id_type == "mobile_phone_number":
        return mask_phone(text)
    return _mask_middle(text.strip())


def mask_value(value: Any) -> Any:
    """A generic PII value masked by type: strings keep their first character, numbers vanish.

    ``None`` and booleans are kept (they reveal nothing and help debugging); objects and arrays are
    masked element by element.
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        if "@" in value and _EMAIL_RE.fullmatch(value.strip()):
            return mask_email(value)
        return f"{value[0]}{MASK}" if len(value) >= 2 else MASK
    if isinstance(value, Mapping):
        return {key: mask_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [mask_value(item) for item in value]
    return MASK


def _mask_auto_identifier(value: Any) -> Any:
    # The id_type of a bare "user_id" column is not known here: guess from the value's shape.
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, Mapping | list | tuple):
        return mask_value(value)
    text = str(value)
    if "@" in text:
        return mask_email(text)
    return _mask_middle(text.strip())


def _is_secret_key(key: str) -> bool:
    return key in SECRET_FIELDS or any(part in key for part in _SECRET_KEY_PARTS)


def _mask_field(key: str, value: Any, pii: frozenset[str]) -> Any:
    lowered = key.lower()
    if _is_secret_key(lowered):
        return None if value is None else MASK
    if lowered in pii:
        if value is None or isinstance(value, bool):
            return value
        if lowered in _EMAIL_FIELDS and isinstance(value, str):
            return mask_email(value)
        if lowered in _PHONE_FIELDS and isinstance(value, str | int):
            return mask_phone(str(value))
        if lowered in _IDENTIFIER_FIELDS:
            return _mask_auto_identifier(value)
        return mask_value(value)
    return _mask_tree(value, pii)


def _mask_tree(value: Any, pii: frozenset[str]) -> Any:
    if isinstance(value, Mapping):
        return {key: _mask_field(str(key), item, pii) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_mask_tree(item, pii) for item in value]
    return value


def mask_record(record: Mapping[str, Any], extra_pii_fields: Iterable[str] = ()) -> dict[str, Any]:
    """A copy of ``record`` with PII values masked, recursively (nested objects and arrays too).

    Keys are matched case-insensitively against `PII_FIELDS` plus ``extra_pii_fields`` (e.g. custom
    attributes a program treats as personal). Passwords, tokens and secrets are always ``***``.
    Non-PII values are returned unchanged. The input is not modified.
    """
    extra = frozenset(name.lower() for name in extra_pii_fields)
    pii = PII_FIELDS | extra if extra else PII_FIELDS
    return {key: _mask_field(str(key), value, pii) for key, value in record.items()}


def mask_text(text: str) -> str:
    """Free text (e.g. an API error message echoing values) with emails and long numbers masked."""
    if "@" in text:
        text = _EMAIL_RE.sub(lambda m: mask_email(m.group(0)), text)
    text = _FORMATTED_PHONE_RE.sub(lambda m: mask_phone(m.group(0)), text)
    return _DIGITS_RE.sub(lambda m: mask_phone(m.group(0)), text)
