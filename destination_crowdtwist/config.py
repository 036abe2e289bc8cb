"""Typed connector configuration, parsed and validated from the config mapping.

`spec.json` (top level) is the single source of truth: every enum, default, minimum and maximum
below is read from it, never restated here. What Python needs in addition is only the *types*:
fields with a fixed set of values are typed as ``Literal`` aliases so mypy catches a typo such as
``upsert_strategy="update-first"`` (and, with mypy's ``strict_equality``, ``cfg.object_type ==
"activity_credits"``); unit_tests/test_config.py fails when an alias, a field or a type disagrees
with the spec. This module turns the user's JSON into a frozen
:class:`ConnectorConfig` and refuses anything a sync could not run with, with a
:class:`~destination_crowdtwist.api.errors.ConfigError` that names the field and what to fix (and
never echoes a secret).
"""

from __future__ import annotations

import ipaddress
import json
import math
import pkgutil
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal
from urllib.parse import urlsplit

from destination_crowdtwist.api.errors import ConfigError
from destination_crowdtwist.records.identifiers import ID_TYPES, IdType
from destination_crowdtwist.records.mapping import FieldMapping, MappingOptions

__all__ = [
    "ID_TYPES",
    "INTERNAL_FIELDS",
    "ApiKeyCredentials",
    "ConnectorConfig",
    "Credentials",
    "CreditVerification",
    "HmacCredentials",
    "IdType",
    "NullValues",
    "ObjectType",
    "UnmappedFields",
    "UpsertStrategy",
    "load_spec",
    "normalize_base_url",
    "parse_config",
]

# The value sets themselves are the `enum`s of spec.json; these aliases only give mypy the same list.
ObjectType = Literal["user_profile", "activity_credit"]
UnmappedFields = Literal["custom_data", "drop"]
NullValues = Literal["skip", "send"]
CreditVerification = Literal["every_row", "replay_window", "none"]
UpsertStrategy = Literal["auto", "update_first", "create_first"]

# Fields of ConnectorConfig that are deliberately not in spec.json: knobs for tests and tools, not
# user settings. Described here in the spec's own vocabulary so they are parsed the same way.
_INTERNAL_PROPERTIES: dict[str, dict[str, Any]] = {
    # How often the progress line is logged (tests shorten it).
    "progress_interval_seconds": {"type": "number", "default": 10, "minimum": 0, "maximum": 3600},
}
INTERNAL_FIELDS: frozenset[str] = frozenset(_INTERNAL_PROPERTIES)


@cache
def load_spec() -> dict[str, Any]:
    """The connector specification (the packaged copy of the top-level spec.json)."""
    raw = pkgutil.get_data("destination_crowdtwist", "spec.json")
    if raw is None:  # pragma: no cover - packaging error
        raise RuntimeError("spec.json is missing from the destination_crowdtwist package")
    spec: dict[str, Any] = json.loads(raw)
    return spec


def _prop(name: str, *types: str) -> Mapping[str, Any]:
    """The spec property `name` (or internal one), checked to be of one of `types`.

    A missing property or a type mismatch is a programming error (the code and spec.json drifted
    apart), so it raises RuntimeError rather than a ConfigError the user could not act on.
    """
    props = load_spec()["connectionSpecification"]["properties"]
    prop = props.get(name) or _INTERNAL_PROPERTIES.get(name)
    if prop is None:
        raise RuntimeError(f"spec.json has no property {name!r}")
    if types and prop.get("type") not in types:
        raise RuntimeError(f"spec.json property {name!r} has type {prop.get('type')!r}, expected one of {types}")
    return prop


def _default(name: str) -> Any:
    """The spec default of `name` in the form ConnectorConfig holds it (None when the spec has none).

    Arrays become tuples (the config is frozen and hashable) and numbers take the spec's type, so
    ``"default": 10`` of a ``number`` property is ``10.0``.
    """
    prop = _prop(name)
    value = prop.get("default")
    if value is None:
        return None
    kind = prop.get("type")
    if kind == "array":
        return tuple(value)
    if kind == "number":
        return float(value)
    return value


# Every property's default, spec and internal ones (None where there is none), read once at import.
# The dataclass below takes its defaults from here; a name missing from the spec fails the import.
_DEFAULTS: Mapping[str, Any] = {
    name: _default(name)
    for name in (*load_spec()["connectionSpecification"]["properties"], *_INTERNAL_PROPERTIES)
}


@dataclass(frozen=True)
class ApiKeyCredentials:
    """API-key authentication: the key travels as the `api_key` query parameter."""

    api_key: str = field(repr=False)

    def __repr__(self) -> str:
        return "ApiKeyCredentials(api_key=****)"


@dataclass(frozen=True)
class HmacCredentials:
    """HMAC-SHA256 request signing with a public/private key pair."""

    public_key: str
    private_key: str = field(repr=False)

    def __repr__(self) -> str:
        return f"HmacCredentials(public_key={self.public_key!r}, private_key=****)"


Credentials = ApiKeyCredentials | HmacCredentials


@dataclass(frozen=True)
class ConnectorConfig:
    """Everything a sync needs, validated. Field names, defaults and ranges are those of spec.json.

    Defaults are read from the spec, not written here, so the two cannot drift apart; the meaning
    of each field is its spec description (and docs/crowdtwist.md, Configuration).
    """

    api_base_url: str
    credentials: Credentials
    user_identifier_type: IdType = _DEFAULTS["user_identifier_type"]
    object_type: ObjectType = _DEFAULTS["object_type"]
    unmapped_fields: UnmappedFields = _DEFAULTS["unmapped_fields"]
    null_values: NullValues = _DEFAULTS["null_values"]
    field_mapping: tuple[FieldMapping, ...] = _DEFAULTS["field_mapping"]
    custom_attributes: tuple[str, ...] = _DEFAULTS["custom_attributes"]
    dry_run: bool = _DEFAULTS["dry_run"]
    rejected_records_path: str | None = _DEFAULTS["rejected_records_path"]
    rejected_records_include_pii: bool = _DEFAULTS["rejected_records_include_pii"]
    log_pii: bool = _DEFAULTS["log_pii"]
    require_location: bool = _DEFAULTS["require_location"]
    event_id_field: str = _DEFAULTS["event_id_field"]
    credit_verification: CreditVerification = _DEFAULTS["credit_verification"]
    credit_history_days: int = _DEFAULTS["credit_history_days"]
    ledger_path: str | None = _DEFAULTS["ledger_path"]
    award_queue_delay_seconds: float = _DEFAULTS["award_queue_delay_seconds"]
    upsert_strategy: UpsertStrategy = _DEFAULTS["upsert_strategy"]
    member_index_path: str | None = _DEFAULTS["member_index_path"]
    skip_unchanged: bool = _DEFAULTS["skip_unchanged"]
    max_concurrency: int = _DEFAULTS["max_concurrency"]
    max_requests_per_minute: int = _DEFAULTS["max_requests_per_minute"]
    max_retries: int = _DEFAULTS["max_retries"]
    request_timeout_seconds: float = _DEFAULTS["request_timeout_seconds"]
    # Guards against hostile or mistaken input and answers: limits on rows, points, waits, and when
    # to give up on a sync whose rows are almost all rejected (sync/, writers/ and api/ apply them).
    default_activity_id: str | None = _DEFAULTS["default_activity_id"]
    max_points_per_credit: int = _DEFAULTS["max_points_per_credit"]
    allow_negative_points: bool = _DEFAULTS["allow_negative_points"]
    max_record_bytes: int = _DEFAULTS["max_record_bytes"]
    max_nesting_depth: int = _DEFAULTS["max_nesting_depth"]
    reject_stop_sample: int = _DEFAULTS["reject_stop_sample"]
    reject_stop_share: float = _DEFAULTS["reject_stop_share"]
    max_retry_wait_seconds: float = _DEFAULTS["max_retry_wait_seconds"]
    server_unavailable_wait_seconds: float = _DEFAULTS["server_unavailable_wait_seconds"]
    # Internal (not in the spec, see INTERNAL_FIELDS).
    progress_interval_seconds: float = _DEFAULTS["progress_interval_seconds"]

    @property
    def secrets(self) -> tuple[str, ...]:
        """Secret values that must never be printed."""
        if isinstance(self.credentials, ApiKeyCredentials):
            return (self.credentials.api_key,)
        return (self.credentials.private_key,)

    def mapping_options(self) -> MappingOptions:
        """Options of the pure record mapping."""
        return MappingOptions(
            id_type=self.user_identifier_type,
            unmapped_fields=self.unmapped_fields,
            null_values=self.null_values,
            field_mapping=self.field_mapping,
        )


def normalize_base_url(value: Any) -> str:
    """Validate `api_base_url` and return it without a trailing slash."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError("api_base_url is required, e.g. https://api123.crowdtwist.com")
    url = value.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigError(
            "api_base_url must be a full URL such as https://api123.crowdtwist.com "
            f"(got a value without an https:// scheme or host, {len(url)} characters)"
        )
    if parts.username is not None or parts.password is not None:
        # Never echo the value: it holds credentials.
        raise ConfigError("api_base_url must not contain credentials (user:password@); put the API key in credentials")
    if parts.query or parts.fragment:
        raise ConfigError(
            "api_base_url must not contain a query string or fragment; use e.g. https://api123.crowdtwist.com"
        )
    if parts.path not in ("", "/"):
        raise ConfigError(
            f"api_base_url must not contain a path (found {parts.path!r}); use only the host, "
            "e.g. https://api123.crowdtwist.com — the connector adds /v2/... itself"
        )
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ConfigError(
            "api_base_url must use https:// (CrowdTwist only serves TLS); plain http:// is accepted only for a "
            "local sandbox on 127.0.0.1 or localhost"
        )
    return f"{parts.scheme}://{parts.netloc}"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _shown(value: Any) -> str:
    # A short printable string is quoted (it is a typo the user needs to see); anything else is only
    # named by type, so a huge or binary value never floods the message or the log line.
    if isinstance(value, str) and len(value) <= 40 and value.isprintable():
        return repr(value)
    return f"a value of type {type(value).__name__}"


def _choice(raw: Mapping[str, Any], name: str) -> Any:
    # Returns one of the spec's enum values; the caller's field type is the matching Literal alias.
    prop = _prop(name, "string")
    allowed: list[str] = prop["enum"]
    value = raw.get(name)
    if value is None:
        return _DEFAULTS[name]
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)} (got {_shown(value)})")
    return value


def _bool(raw: Mapping[str, Any], name: str) -> bool:
    _prop(name, "boolean")
    value = raw.get(name)
    if value is None:
        return bool(_DEFAULTS[name])
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false")
    return value


def _range_text(lo: float | None, hi: float | None) -> str:
    if lo is not None and hi is not None:
        return f"between {lo:g} and {hi:g}"
    if lo is not None:
        return f"at least {lo:g}"
    if hi is not None:
        return f"at most {hi:g}"
    return "any value"


def _number(raw: Mapping[str, Any], name: str) -> Any:
    # int for "integer" properties, float for "number" ones; bounds are the spec's minimum/maximum.
    prop = _prop(name, "integer", "number")
    integer = prop["type"] == "integer"
    lo, hi = prop.get("minimum"), prop.get("maximum")
    value = raw.get(name)
    if value is None:
        return _DEFAULTS[name]
    kind = "a whole number" if integer else "a number"
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or (integer and not float(value).is_integer())
    ):
        raise ConfigError(f"{name} must be {kind} {_range_text(lo, hi)}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ConfigError(f"{name} must be {_range_text(lo, hi)} (got {value:g})")
    return int(value) if integer else float(value)


def _string(raw: Mapping[str, Any], name: str, what: str = "a text value") -> str | None:
    # Free-text settings: trimmed; absent or blank means the spec default (None when it has none).
    _prop(name, "string")
    value = raw.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        default: str | None = _DEFAULTS[name]
        return default
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be {what}")
    return value.strip()


def _required_string(raw: Mapping[str, Any], name: str, what: str = "a text value") -> str:
    value = _string(raw, name, what)
    if value is None:  # pragma: no cover - only for properties with a spec default
        raise RuntimeError(f"spec.json property {name!r} needs a default")
    return value


def _key_problem(key: str) -> str | None:
    """Why `key` cannot be a CrowdTwist key, without quoting it; None when it can.

    Keys travel in a query string or an HTTP header: a line break or other control character would
    make requests/http.client raise a ValueError whose message (and trace) holds the header, i.e.
    the secret; a non-Latin-1 character cannot be encoded in a header at all. Real keys are short
    printable tokens, so such a value is always a copy-paste accident.
    """
    for ch in key:
        if unicodedata.category(ch) == "Cc":
            return "contains a control character (such as a line break or tab)"
        if ch.isspace():
            return "contains whitespace inside the key"
        if ord(ch) > 0xFF:
            return "contains a character that is not Latin-1 (e.g. a typographic quote, dash or emoji)"
    return None


def _key(raw: Mapping[str, Any], name: str, method: str) -> str:
    key = raw.get(name)
    if not isinstance(key, str) or not key.strip():
        raise ConfigError(
            f"credentials.{name} is required for {method} authentication (Control Center > Settings > API)"
        )
    key = key.strip()  # a trailing newline from a pasted key is harmless; one inside is not
    problem = _key_problem(key)
    if problem is not None:
        # Never echo the value, not even in part: it is a secret (or half of one).
        raise ConfigError(
            f"credentials.{name} {problem}; copy it again from CrowdTwist Control Center (Settings > API)"
        )
    return key


def _credentials(raw: Any) -> Credentials:
    if not isinstance(raw, Mapping):
        raise ConfigError("credentials is required: choose API Key or HMAC Authentication")
    auth_type = raw.get("auth_type")
    if auth_type is None:
        auth_type = "hmac" if "private_key" in raw else "api_key"
    if auth_type == "api_key":
        return ApiKeyCredentials(api_key=_key(raw, "api_key", "API Key"))
    if auth_type == "hmac":
        return HmacCredentials(public_key=_key(raw, "public_key", "HMAC"), private_key=_key(raw, "private_key", "HMAC"))
    raise ConfigError(f"credentials.auth_type must be 'api_key' or 'hmac' (got {_shown(auth_type)})")


def _field_mapping(raw: Any) -> tuple[FieldMapping, ...]:
    if raw in (None, []):
        return ()
    if not isinstance(raw, list):
        raise ConfigError("field_mapping must be a list of {source, destination} objects")
    result = []
    for i, item in enumerate(raw):
        if not isinstance(item, Mapping):
            raise ConfigError(f"field_mapping[{i}] must be an object with 'source' and 'destination'")
        source, dest = item.get("source"), item.get("destination")
        if not isinstance(source, str) or not source or not isinstance(dest, str) or not dest:
            raise ConfigError(f"field_mapping[{i}] needs a non-empty 'source' and 'destination'")
        result.append(FieldMapping(source=source, destination=dest))
    return tuple(result)


def _names(raw: Mapping[str, Any], name: str) -> tuple[str, ...]:
    value = raw.get(name)
    if value in (None, []):
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) and item.strip() for item in value):
        raise ConfigError(f"{name} must be a list of non-empty names")
    return tuple(dict.fromkeys(item.strip() for item in value))


def parse_config(raw: Mapping[str, Any]) -> ConnectorConfig:
    """Parse and validate the connector configuration.

    Unknown keys are ignored (the spec allows additional properties); absent or null ones take the
    spec default.

    Raises:
        ConfigError: with a message naming the field and what to fix.
    """
    if not isinstance(raw, Mapping):
        raise ConfigError("the configuration must be a JSON object")
    return ConnectorConfig(
        api_base_url=normalize_base_url(raw.get("api_base_url")),
        credentials=_credentials(raw.get("credentials")),
        user_identifier_type=_choice(raw, "user_identifier_type"),
        object_type=_choice(raw, "object_type"),
        unmapped_fields=_choice(raw, "unmapped_fields"),
        null_values=_choice(raw, "null_values"),
        field_mapping=_field_mapping(raw.get("field_mapping")),
        custom_attributes=_names(raw, "custom_attributes"),
        dry_run=_bool(raw, "dry_run"),
        rejected_records_path=_string(raw, "rejected_records_path", "a file path"),
        rejected_records_include_pii=_bool(raw, "rejected_records_include_pii"),
        log_pii=_bool(raw, "log_pii"),
        require_location=_bool(raw, "require_location"),
        event_id_field=_required_string(raw, "event_id_field", "a field name"),
        credit_verification=_choice(raw, "credit_verification"),
        credit_history_days=_number(raw, "credit_history_days"),
        ledger_path=_string(raw, "ledger_path", "a file path"),
        award_queue_delay_seconds=_number(raw, "award_queue_delay_seconds"),
        upsert_strategy=_choice(raw, "upsert_strategy"),
        member_index_path=_string(raw, "member_index_path", "a file path"),
        skip_unchanged=_bool(raw, "skip_unchanged"),
        max_concurrency=_number(raw, "max_concurrency"),
        max_requests_per_minute=_number(raw, "max_requests_per_minute"),
        max_retries=_number(raw, "max_retries"),
        request_timeout_seconds=_number(raw, "request_timeout_seconds"),
        default_activity_id=_string(raw, "default_activity_id", "a CrowdTwist activity id (text)"),
        max_points_per_credit=_number(raw, "max_points_per_credit"),
        allow_negative_points=_bool(raw, "allow_negative_points"),
        max_record_bytes=_number(raw, "max_record_bytes"),
        max_nesting_depth=_number(raw, "max_nesting_depth"),
        reject_stop_sample=_number(raw, "reject_stop_sample"),
        reject_stop_share=_number(raw, "reject_stop_share"),
        max_retry_wait_seconds=_number(raw, "max_retry_wait_seconds"),
        server_unavailable_wait_seconds=_number(raw, "server_unavailable_wait_seconds"),
        progress_interval_seconds=_number(raw, "progress_interval_seconds"),
    )
