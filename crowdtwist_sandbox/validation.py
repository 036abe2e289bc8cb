"""Pure request validation with CrowdTwist's documented rules (docs/crowdtwist-api-notes.md §2.5-2.7, §3).

Every rule raises `ApiError` carrying the HTTP status and the `{"error", "message"}` envelope.
Where the real message or status is NOT FOUND in any source, the text here is simulator-defined and
marked "assumed".
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from crowdtwist_sandbox.errors import ApiError

REQUIRED_ON_CREATE = ("first_name", "last_name", "email_address")
NAME_FIELDS = ("first_name", "middle_name", "last_name")
# 0/1 flags documented as "boolean as 0/1" (§2.5, §2.3).
FLAG_FIELDS = ("email_is_verified", "receive_email_updates", "is_active", "remove_points", "send_verify_email")
LOCATION_FIELDS = ("postal_code", "country_code", "city_id", "city_name")
# Plain string fields. Identifier-like ones also accept numbers (stored as text) because warehouses
# often hold them as integers; whether CrowdTwist accepts numbers there is NOT FOUND (assumed lenient).
STRING_FIELDS = (
    "username",
    "password",
    "lang_pref",
    "invite_code",
    "sign_up_campaign",
    "facebook_access_token",
    "facebook_user_id",
    "inst_access_token",
    "inst_username",
    "inst_user_id",
)
ID_LIKE_FIELDS = ("third_party_id", "mobile_phone_number", "gender_id", "sign_up_channel_id", "store_id")
UNIQUE_FIELDS = ("email_address", "username", "third_party_id")

# Name rule from UserCreate.html: /^[-\’ \p{L}0-9- _@\.,]+$/u. ASCII ' is NOT FOUND; accepted (assumed).
_NAME_EXTRA_CHARS = frozenset("-\u2019' _@.,")
# Email regex is NOT FOUND ("User Formatting Rules" unreadable); a conventional pragmatic check.
_EMAIL_RE = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$"
)
# US: 5 digits, or 9 with or without hyphen (only the first 5 are "validated" upstream).
_US_ZIP_RE = re.compile(r"^\d{5}(?:-?\d{4})?$")
# Canada: letter-digit-letter space digit-letter-digit. Case-insensitivity is assumed.
_CA_POSTAL_RE = re.compile(r"^[A-Za-z]\d[A-Za-z] \d[A-Za-z]\d$")
# Anything this large cannot be epoch seconds (year 5138); it is almost surely milliseconds.
_MAX_EPOCH_SECONDS = 10**11

LOCATION_REQUIRED_MESSAGE = "US zip code or country/city combo is required"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def missing(field_name: str) -> ApiError:
    """400 param_error in the documented "Missing the user_id parameter" style."""
    return ApiError(400, "param_error", f"Missing the {field_name} parameter")


def invalid(message: str) -> ApiError:
    """400 input_error (documented code; the individual messages are assumed)."""
    return ApiError(400, "input_error", message)


def is_valid_name(value: str) -> bool:
    """Letters of any script, digits 0-9, space and ``-’'_@.,`` (the documented character set)."""
    if not value:
        return False
    for ch in value:
        if ch in _NAME_EXTRA_CHARS or "0" <= ch <= "9":
            continue
        if not unicodedata.category(ch).startswith("L"):
            return False
    return True


def is_valid_email(value: str) -> bool:
    """Pragmatic email syntax check (CrowdTwist's exact rule is NOT FOUND)."""
    return len(value) <= 254 and _EMAIL_RE.match(value) is not None


def validate_location(location: Mapping[str, Any], *, required: bool) -> dict[str, Any]:  # noqa: C901 - rule list
    """Check the location group (§2.6) and return it normalised (country_code upper-case).

    - US: ``postal_code`` only (5 or 9 digits); city/country fields must not accompany it.
    - Canada: ``country_code`` CA needs a postal code formatted ``A1A 1A1``; ``city_id`` not validated.
    - Elsewhere: ``country_code`` plus ``city_id`` or ``city_name`` (postal code optional, free text —
      assumed). ``required`` False (relaxed mode) only allows an entirely absent location.
    """
    postal = location.get("postal_code")
    country = location.get("country_code")
    city_id = location.get("city_id")
    city_name = location.get("city_name")
    if postal is not None and not isinstance(postal, str):
        raise invalid("postal_code must be a string")
    if country is not None and (not isinstance(country, str) or len(country) != 2 or not country.isalpha()):
        raise invalid("country_code must be a two-letter ISO country code")
    if city_id is not None and not (_is_int(city_id) or (isinstance(city_id, str) and city_id.isdigit())):
        raise invalid("city_id must be a number")
    if city_name is not None and not isinstance(city_name, str):
        raise invalid("city_name must be a string")
    country_u = country.upper() if country else None
    normalised = {
        "postal_code": postal,
        "country_code": country_u,
        "city_id": int(city_id) if city_id is not None else None,
        "city_name": city_name,
    }
    if country_u == "CA":
        if postal is None or not _CA_POSTAL_RE.match(postal):
            raise invalid("Invalid Canadian postal code; expected format A1A 1A1")
        normalised["postal_code"] = postal.upper()
        return normalised
    if postal is not None and country_u is None:
        if city_id is not None or city_name is not None:
            raise invalid("For domestic addresses only postal_code can be provided")
        if not _US_ZIP_RE.match(postal):
            raise invalid("Invalid US zip code; expected 5 or 9 digits")
        return normalised
    if postal is not None and country_u == "US":
        # "for domestic addresses ONLY postal_code can be provided" [DOC] - country_code included.
        raise invalid("For domestic addresses only postal_code can be provided")
    if country_u is not None and country_u != "US":
        if city_id is None and not city_name:
            raise invalid(LOCATION_REQUIRED_MESSAGE)
        return normalised
    if required or any(v is not None for v in (country, city_id, city_name)):
        # Text from the reference connector doc; not confirmed in any CrowdTwist source (assumed).
        raise invalid(LOCATION_REQUIRED_MESSAGE)
    return normalised


def validate_custom_data(value: Any, allowed: Collection[str]) -> dict[str, Any]:
    """Validate ``custom_data`` against the program's allow-list (messages assumed, §2.7)."""
    if not isinstance(value, Mapping):
        raise invalid("custom_data must be an object")
    if not allowed:
        raise invalid("No custom attributes setup for client")
    for key, item in value.items():
        if key not in allowed:
            raise invalid(f"Unrecognized attribute name: {key}")
        if isinstance(item, Mapping | list):
            raise invalid(f"custom_data.{key} must be a scalar value")
    return dict(value)


def validate_user_payload(  # noqa: C901, PLR0912 - one branch per documented rule (docs §2)
    payload: Mapping[str, Any],
    *,
    creating: bool,
    custom_attributes: Collection[str],
    strict_location: bool,
    now: float,
) -> dict[str, Any]:
    """Validate a create (``creating``) or partial-update body; return the normalised changes.

    The returned dict holds only the fields the request set (``None`` = clear, on update); unknown
    top-level keys are ignored, as a tolerant PHP API would (assumed). Location keys, when present, come
    back as the whole normalised location group (see `validate_location`).
    """
    changes: dict[str, Any] = {}
    for name in REQUIRED_ON_CREATE:
        if (creating and payload.get(name) is None) or (name in payload and payload[name] is None):
            # A PUT cannot clear a required field either (assumed).
            raise missing(name)
    for name in NAME_FIELDS:
        if name in payload and payload[name] is not None:
            value = payload[name]
            if not isinstance(value, str) or not is_valid_name(value):
                raise invalid(f"{name} contains invalid characters")
        if name in payload:
            changes[name] = payload[name]
    if "email_address" in payload:
        email = payload["email_address"]
        if not isinstance(email, str) or not is_valid_email(email):
            raise invalid("email_address is not a valid email address")
        changes["email_address"] = email
    for name in STRING_FIELDS:
        if name in payload:
            if payload[name] is not None and not isinstance(payload[name], str):
                raise invalid(f"{name} must be a string")
            changes[name] = payload[name]
    for name in ID_LIKE_FIELDS:
        if name in payload:
            value = payload[name]
            if value is not None and not (isinstance(value, str) or _is_int(value)):
                raise invalid(f"{name} must be a string")
            changes[name] = None if value is None else str(value)
    for name in FLAG_FIELDS:
        if name in payload and payload[name] is not None:
            # Documented as 0/1; JSON true/false is refused (assumed strict, it catches coercion bugs).
            if not _is_int(payload[name]) or payload[name] not in (0, 1):
                raise invalid(f"{name} must be 0 or 1")
            changes[name] = payload[name]
    if "date_of_birth" in payload:
        dob = payload["date_of_birth"]
        if dob is not None and (not _is_int(dob) or dob > now):
            # Epoch seconds per §2.5; a future/ms value is refused (exact upstream rule assumed).
            raise invalid("date_of_birth must be a UNIX timestamp in seconds")
        changes["date_of_birth"] = dob
    if "extra_data" in payload:
        if payload["extra_data"] is not None and not isinstance(payload["extra_data"], Mapping):
            raise invalid("extra_data must be an object")
        changes["extra_data"] = payload["extra_data"]
    if payload.get("custom_data") is not None:
        changes["custom_data"] = validate_custom_data(payload["custom_data"], custom_attributes)
    if creating or any(name in payload for name in LOCATION_FIELDS):
        # A PUT carrying any location key replaces the whole location group (assumed: keeps the
        # "postal code XOR country/city" rule checkable without merging half-old, half-new addresses).
        changes.update(validate_location(payload, required=strict_location))
    return changes


@dataclass(frozen=True)
class CreditRequest:
    """A validated activity-credit body."""

    activity_id: str
    num_points: int | None
    activity_date: int | None
    extra_data: dict[str, Any] | None


def validate_credit_payload(payload: Mapping[str, Any], activity_ids: Collection[str]) -> CreditRequest:
    """Validate ``POST /v2/users/{id}/activities`` (§3); ``activity_id`` may be a string or a number."""
    raw_id = payload.get("activity_id")
    if raw_id is None:
        raise missing("activity_id")
    if not (isinstance(raw_id, str) or _is_int(raw_id)) or str(raw_id).strip() not in activity_ids:
        # The connector doc only says "a generic error"; this body is assumed.
        raise invalid("Invalid activity id")
    num_points = payload.get("num_points")
    if num_points is not None and not _is_int(num_points):
        raise invalid("num_points must be an integer")
    activity_date = payload.get("activity_date")
    if activity_date is not None and (not _is_int(activity_date) or abs(activity_date) >= _MAX_EPOCH_SECONDS):
        raise invalid("activity_date must be a UNIX timestamp in seconds")
    extra_data = payload.get("extra_data")
    if extra_data is not None and not isinstance(extra_data, Mapping):
        raise invalid("extra_data must be an object")
    return CreditRequest(
        activity_id=str(raw_id).strip(),
        num_points=num_points,
        activity_date=activity_date,
        extra_data=dict(extra_data) if extra_data is not None else None,
    )
