"""Pure pre-flight checks of a user payload against CrowdTwist's documented rules.

Running these before any request means a row CrowdTwist would refuse costs no API quota and gets a
message that says what to fix. The rules come from docs/crowdtwist-api-notes.md §2.5/§2.6 and the reference
connector documentation; where the API's exact behaviour is NOT FOUND the choice made here is
written next to the rule. `validate_user` returns *every* problem, not only the first.

Location rules as implemented (docs/crowdtwist-api-notes.md §2.6):

- *Domestic* means ``country_code`` absent or ``"US"``. A domestic ``postal_code`` must be a US
  ZIP (5 digits, or 9 digits with or without ``-``). The API refuses other location fields next to a
  US postal code ("for domestic addresses ONLY postal_code can be provided"), so ``country_code``,
  ``city_id`` or ``city_name`` next to a US ZIP is a problem -- ``country_code == "US"`` included,
  as the docs word it and as the sandbox implements it. (`mapping` drops a redundant
  ``country_code == "US"`` next to a US ZIP, so warehouse rows with a country column still pass.)
  ``country_code == "US"`` without a postal code is a problem too.
- ``country_code == "CA"`` requires a postal code formatted ``A1A 1A1``; city fields are allowed
  (the API does not validate ``city_id`` for Canada).
- Any other country needs ``city_id`` or ``city_name`` (the API page asks for ``city_id``; the
  reference connector doc accepts either, and so do we). Its postal code is not checked: a
  5-digit code next to ``country_code == "DE"`` is a German code, not a US one, so a "US-looking"
  postal code is *not* refused when a non-US country is given.
- City fields without any ``country_code`` and without a postal code are a problem (the API needs
  the country to resolve a city).
- On create, with ``require_location=True`` (the default), a payload without a postal code and
  without a country/city is refused with the reference doc's text "US zip code or country/city
  combo is required". CrowdTwist's 2026-04 release made country/city optional on create
  (defaulting to "unknown"); pass ``require_location=False`` for programs on that release.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from typing import Any

from destination_crowdtwist.records.rejection import Quoted, Reason, Rejection
from destination_crowdtwist.records.rejection import key as quoted_key

__all__ = [
    "FLAG_FIELDS",
    "LOCATION_REQUIRED_MESSAGE",
    "is_us_postal_code",
    "is_valid_email",
    "is_valid_name",
    "problem",
    "validate_user",
]

VALIDATION = "validation"
LOCATION = "location"

LOCATION_REQUIRED_MESSAGE = "US zip code or country/city combo is required"

FLAG_FIELDS: tuple[str, ...] = (
    "receive_email_updates",
    "email_is_verified",
    "is_active",
    "remove_points",
    "send_verify_email",
)
_NAME_FIELDS: tuple[str, ...] = ("first_name", "middle_name", "last_name")
CREATE_REQUIRED: tuple[str, ...] = ("first_name", "last_name", "email_address")

# CrowdTwist's name regex is /^[-\’ \p{L}0-9- _@\.,]+$/u (docs/crowdtwist-api-notes.md §2.5). Python's `re` has
# no \p{L}; ASCII names take the fast regex, others a per-character check with str.isalpha(), which
# is exactly the Unicode letter categories (L*) that \p{L} means. Whether the ASCII apostrophe is
# allowed is NOT FOUND (the page shows U+2019); both are accepted.
_NAME_ASCII_RE = re.compile(r"[A-Za-z0-9 \-_@.,'\u2019]+")
_NAME_EXTRA_CHARS = frozenset("0123456789 -_@.,'\u2019")

# Pragmatic email check (CrowdTwist's own regex is NOT FOUND): an ASCII local part without leading,
# trailing or doubled dots, and a domain of dot-separated labels ending in an alphabetic or
# punycode TLD.
_EMAIL_RE = re.compile(
    r"(?!\.)(?!.*\.\.)[A-Za-z0-9!#$%&'*+/=?^_`{|}~.\-]{1,64}(?<!\.)"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+(?:[A-Za-z]{2,63}|xn--[A-Za-z0-9\-]{1,59})"
)
_EMAIL_MAX_LENGTH = 254

_US_POSTAL_RE = re.compile(r"\d{5}(?:-?\d{4})?")
_CA_POSTAL_RE = re.compile(r"[A-Z]\d[A-Z] \d[A-Z]\d")
_COUNTRY_RE = re.compile(r"[A-Z]{2}")

_PHONE_MIN_DIGITS = 7
_PHONE_MAX_DIGITS = 15  # E.164 maximum


def problem(field: str, reason: str, message: str) -> Rejection:
    """One reason CrowdTwist would refuse the payload, as a `Rejection` naming its field.

    ``reason`` is ``validation`` or ``location``; ``message`` says what to fix and never contains the
    offending value.
    """
    return Rejection(Reason(reason), message, field=field)


def is_valid_name(value: str) -> bool:
    """True when the name matches CrowdTwist's name character set (and is not empty)."""
    if _NAME_ASCII_RE.fullmatch(value):
        return True
    if not value or value.isascii():
        return False
    return all(ch.isalpha() or ch in _NAME_EXTRA_CHARS for ch in value)


def is_us_postal_code(value: Any) -> bool:
    """True for a US ZIP string: 5 digits, or 9 digits with or without a hyphen after the fifth."""
    return isinstance(value, str) and _US_POSTAL_RE.fullmatch(value) is not None


def is_valid_email(value: str) -> bool:
    """True for a plausible email address (pragmatic check, see `_EMAIL_RE`)."""
    return len(value) <= _EMAIL_MAX_LENGTH and _EMAIL_RE.fullmatch(value) is not None


def _present(payload: Mapping[str, Any], field: str) -> bool:
    # A null (sent with null_values="send") counts as absent for every rule here.
    return payload.get(field) is not None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_user(
    payload: Mapping[str, Any],
    *,
    creating: bool,
    require_location: bool = True,
    clock: Callable[[], float] = time.time,
) -> list[Rejection]:
    """All problems with a user payload (coerced wire values), in field order of the rules.

    ``creating`` adds the create-only rules (required names/email, location required).
    ``require_location`` only matters when creating (see the module docstring).
    ``clock`` returns the current epoch seconds; it is read only when ``date_of_birth`` is present.
    """
    problems: list[Rejection] = []
    if creating:
        for field in CREATE_REQUIRED:
            value = payload.get(field)
            if value is None or (isinstance(value, str) and not value.strip()):
                problems.append(
                    problem(
                        field,
                        VALIDATION,
                        f"{field} is required to create a member: map a source column to {field}",
                    )
                )
    _check_names(payload, problems, creating=creating)
    _check_email(payload, problems)
    _check_location(payload, problems, creating=creating, require_location=require_location)
    _check_date_of_birth(payload, problems, clock)
    _check_flags(payload, problems)
    _check_phone(payload, problems)
    _check_objects(payload, problems)
    return problems


def _check_names(payload: Mapping[str, Any], problems: list[Rejection], *, creating: bool) -> None:
    for field in _NAME_FIELDS:
        value = payload.get(field)
        if value is None:
            continue
        if not isinstance(value, str):
            problems.append(problem(field, VALIDATION, f"{field} must be a string"))
        elif not value.strip():
            if creating and field in CREATE_REQUIRED:
                continue  # already reported as required
            problems.append(problem(field, VALIDATION, f"{field} must not be empty"))
        elif not is_valid_name(value):
            problems.append(
                problem(
                    field,
                    VALIDATION,
                    f"{field} contains characters CrowdTwist does not accept: use only letters, digits, "
                    "spaces and - _ @ . , ' \u2019",
                )
            )


def _check_email(payload: Mapping[str, Any], problems: list[Rejection]) -> None:
    value = payload.get("email_address")
    if value is None or (isinstance(value, str) and not value.strip()):
        return  # emptiness is the create-required rule's business
    if not isinstance(value, str) or not is_valid_email(value):
        problems.append(
            problem(
                "email_address",
                VALIDATION,
                "email_address is not a valid email address (expected name@domain.tld)",
            )
        )


def _check_location(  # noqa: C901 - CrowdTwist's location rules (docs/crowdtwist-api-notes.md §2.6), one branch each
    payload: Mapping[str, Any], problems: list[Rejection], *, creating: bool, require_location: bool
) -> None:
    postal = payload.get("postal_code")
    country = payload.get("country_code")
    has_city_id = _present(payload, "city_id")
    has_city = has_city_id or _present(payload, "city_name")

    if postal is not None and not isinstance(postal, str):
        problems.append(problem("postal_code", VALIDATION, "postal_code must be a string"))
        postal = None
    if country is not None and (not isinstance(country, str) or not _COUNTRY_RE.fullmatch(country)):
        problems.append(
            problem(
                "country_code",
                VALIDATION,
                "country_code must be a 2-letter upper-case ISO code (e.g. US, CA, GB)",
            )
        )
        return  # the remaining rules depend on the country
    if has_city_id and not (_is_int(payload["city_id"]) and payload["city_id"] > 0):
        problems.append(
            problem("city_id", VALIDATION, "city_id must be a positive integer (a CrowdTwist city id)")
        )
    city_name = payload.get("city_name")
    if city_name is not None and (not isinstance(city_name, str) or not city_name.strip()):
        problems.append(problem("city_name", VALIDATION, "city_name must be a non-empty string"))

    if country == "CA":
        if postal is None or not _CA_POSTAL_RE.fullmatch(postal):
            problems.append(
                problem(
                    "postal_code",
                    LOCATION,
                    "country_code CA requires a Canadian postal_code formatted A1A 1A1 (e.g. K1A 0B1)",
                )
            )
        return
    if country is not None and country != "US":
        if not has_city:
            problems.append(
                problem(
                    "city_id",
                    LOCATION,
                    f"country_code {country} requires city_id or city_name: map a city column "
                    "(US addresses take only a 5-digit postal_code)",
                )
            )
        return

    # Domestic: country_code absent or "US".
    if postal is not None:
        if not is_us_postal_code(postal):
            hint = (
                "; a Canadian postal code also needs country_code CA"
                if _CA_POSTAL_RE.fullmatch(postal)
                else "; for addresses outside the US also map country_code and city_id or city_name"
            )
            problems.append(
                problem(
                    "postal_code",
                    LOCATION,
                    f"postal_code must be a US ZIP code (5 digits, or ZIP+4 as 12345-6789){hint}",
                )
            )
        elif has_city or country is not None:
            extra = [name for name in ("country_code", "city_id", "city_name") if _present(payload, name)]
            problems.append(
                problem(
                    extra[0],
                    LOCATION,
                    "for US addresses CrowdTwist accepts only postal_code: do not send "
                    f"{'/'.join(extra)} with a US ZIP code (map country/city only for non-US members)",
                )
            )
        return
    if country == "US":
        problems.append(
            problem(
                "postal_code",
                LOCATION,
                "country_code US requires a US ZIP postal_code: map a ZIP code column",
            )
        )
    elif has_city:
        problems.append(
            problem(
                "country_code",
                LOCATION,
                "city_id/city_name need a country_code: map a country column (ISO-2 code)",
            )
        )
    elif creating and require_location:
        problems.append(
            problem(
                "postal_code",
                LOCATION,
                f"{LOCATION_REQUIRED_MESSAGE}: map postal_code (US members) or country_code with "
                "city_id or city_name (other countries)",
            )
        )


def _check_date_of_birth(
    payload: Mapping[str, Any], problems: list[Rejection], clock: Callable[[], float]
) -> None:
    value = payload.get("date_of_birth")
    if value is None:
        return
    if not _is_int(value):
        problems.append(
            problem("date_of_birth", VALIDATION, "date_of_birth must be an integer of Unix epoch seconds")
        )
    elif value > clock():
        problems.append(
            problem(
                "date_of_birth",
                VALIDATION,
                "date_of_birth is in the future: check the column (epoch milliseconds before 1973 "
                "are read as seconds; send an ISO date instead)",
            )
        )


def _check_flags(payload: Mapping[str, Any], problems: list[Rejection]) -> None:
    for field in FLAG_FIELDS:
        value = payload.get(field)
        if value is not None and not (_is_int(value) and value in (0, 1)):
            problems.append(problem(field, VALIDATION, f"{field} must be 0 or 1"))


def _check_phone(payload: Mapping[str, Any], problems: list[Rejection]) -> None:
    value = payload.get("mobile_phone_number")
    if value is None:
        return
    if not (
        isinstance(value, str)
        and value.isascii()
        and value.isdigit()
        and _PHONE_MIN_DIGITS <= len(value) <= _PHONE_MAX_DIGITS
    ):
        problems.append(
            problem(
                "mobile_phone_number",
                VALIDATION,
                f"mobile_phone_number must be {_PHONE_MIN_DIGITS} to {_PHONE_MAX_DIGITS} digits "
                "(punctuation is removed during mapping)",
            )
        )


def _check_objects(payload: Mapping[str, Any], problems: list[Rejection]) -> None:
    extra = payload.get("extra_data")
    if extra is not None and not isinstance(extra, Mapping):
        problems.append(problem("extra_data", VALIDATION, "extra_data must be a JSON object"))
    custom = payload.get("custom_data")
    if custom is None:
        return
    if not isinstance(custom, Mapping):
        problems.append(problem("custom_data", VALIDATION, "custom_data must be a JSON object"))
        return
    for key, value in custom.items():
        if value is not None and not isinstance(value, str):
            problems.append(
                Rejection(
                    Reason.VALIDATION,
                    # The key is the row's (it can be data): quoted, so masked outputs mask it.
                    ("custom_data value ", quoted_key(str(key)), " must be a string "
                     "(CrowdTwist stores custom attributes as strings)"),
                    field=str(key),
                )
            )


def as_rejection(problems: list[Rejection], *, prefix: str = "") -> Rejection | None:
    """All of a payload's problems as one rejection (None when there are none).

    The reason is ``location`` when every problem is about the location, else ``validation``;
    messages that do not start with their field name get it put in front.
    """
    if not problems:
        return None
    reason = Reason.LOCATION if all(p.reason is Reason.LOCATION for p in problems) else Reason.VALIDATION
    parts: list[str | Quoted] = [prefix]
    for n, p in enumerate(problems):
        if n:
            parts.append("; ")
        if p.field is not None and not p.message.startswith(p.field):
            parts.extend((quoted_key(p.field), ": "))
        parts.extend(p.parts)
    return Rejection(reason, parts)


def check_user(
    payload: Mapping[str, Any], *, creating: bool, require_location: bool, prefix: str = ""
) -> Rejection | None:
    """`validate_user` folded into one rejection, or None when CrowdTwist would accept the payload."""
    return as_rejection(validate_user(payload, creating=creating, require_location=require_location), prefix=prefix)
