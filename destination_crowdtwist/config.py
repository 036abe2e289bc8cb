"""Typed connector configuration, parsed and validated from the config mapping.

`spec.json` (top level) is the single source of truth for field names and defaults; this module turns
the user's JSON into a frozen :class:`ConnectorConfig` and refuses anything a sync could not run with,
with a :class:`~destination_crowdtwist.api.errors.ConfigError` that names the field and what to fix.
"""

from __future__ import annotations

import ipaddress
import json
import pkgutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal
from urllib.parse import urlsplit

from destination_crowdtwist.api.errors import ConfigError
from destination_crowdtwist.records.mapping import FieldMapping, MappingOptions

IdType = Literal["email", "id", "third_party_id", "username", "mobile_phone_number"]
ID_TYPES: tuple[str, ...] = ("email", "id", "third_party_id", "username", "mobile_phone_number")
OBJECT_TYPES: tuple[str, ...] = ("user_profile", "activity_credit")
CREDIT_VERIFICATION: tuple[str, ...] = ("replay_window", "every_row", "none")
UPSERT_STRATEGIES: tuple[str, ...] = ("auto", "update_first", "create_first")


@cache
def load_spec() -> dict[str, Any]:
    """The connector specification (the packaged copy of the top-level spec.json)."""
    raw = pkgutil.get_data("destination_crowdtwist", "spec.json")
    if raw is None:  # pragma: no cover - packaging error
        raise RuntimeError("spec.json is missing from the destination_crowdtwist package")
    spec: dict[str, Any] = json.loads(raw)
    return spec


def _defaults() -> dict[str, Any]:
    props = load_spec()["connectionSpecification"]["properties"]
    return {name: prop["default"] for name, prop in props.items() if "default" in prop}


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
    """Everything a sync needs, validated. Field names match spec.json."""

    api_base_url: str
    credentials: Credentials
    user_identifier_type: str = "email"
    object_type: str = "user_profile"
    unmapped_fields: str = "custom_data"
    null_values: str = "skip"
    field_mapping: tuple[FieldMapping, ...] = ()
    custom_attributes: tuple[str, ...] = ()
    dry_run: bool = False
    rejected_records_path: str | None = None
    rejected_records_include_pii: bool = False
    log_pii: bool = False
    require_location: bool = True
    event_id_field: str = "event_id"
    credit_verification: str = "replay_window"
    ledger_path: str | None = None
    award_queue_delay_seconds: float = 10.0
    upsert_strategy: str = "auto"
    max_concurrency: int = 20
    max_requests_per_minute: int = 9000
    max_retries: int = 3
    request_timeout_seconds: float = 30.0
    # Not in the spec: how often the progress line is logged (tests shorten it).
    progress_interval_seconds: float = 10.0

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


def _choice(raw: Mapping[str, Any], name: str, allowed: tuple[str, ...], default: str) -> str:
    value = raw.get(name, default)
    if value is None:
        return default
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)} (got {value!r})")
    return str(value)


def _bool(raw: Mapping[str, Any], name: str, default: bool) -> bool:
    value = raw.get(name, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false")
    return value


def _number(raw: Mapping[str, Any], name: str, default: float, lo: float, hi: float, *, integer: bool) -> Any:
    value = raw.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or (integer and not float(value).is_integer()):
        kind = "a whole number" if integer else "a number"
        raise ConfigError(f"{name} must be {kind} between {lo:g} and {hi:g}")
    if not lo <= value <= hi:
        raise ConfigError(f"{name} must be between {lo:g} and {hi:g} (got {value})")
    return int(value) if integer else float(value)


def _optional_path(raw: Mapping[str, Any], name: str) -> str | None:
    value = raw.get(name)
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be a file path")
    return value


def _credentials(raw: Any) -> Credentials:
    if not isinstance(raw, Mapping):
        raise ConfigError("credentials is required: choose API Key or HMAC Authentication")
    auth_type = raw.get("auth_type")
    if auth_type is None:
        auth_type = "hmac" if "private_key" in raw else "api_key"
    if auth_type == "api_key":
        key = raw.get("api_key")
        if not isinstance(key, str) or not key.strip():
            raise ConfigError(
                "credentials.api_key is required for API Key authentication (Control Center > Settings > API)"
            )
        return ApiKeyCredentials(api_key=key.strip())
    if auth_type == "hmac":
        public, private = raw.get("public_key"), raw.get("private_key")
        if not isinstance(public, str) or not public.strip():
            raise ConfigError(
                "credentials.public_key is required for HMAC authentication (Control Center > Settings > API)"
            )
        if not isinstance(private, str) or not private.strip():
            raise ConfigError(
                "credentials.private_key is required for HMAC authentication (Control Center > Settings > API)"
            )
        return HmacCredentials(public_key=public.strip(), private_key=private.strip())
    raise ConfigError(f"credentials.auth_type must be 'api_key' or 'hmac' (got {auth_type!r})")


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

    Raises:
        ConfigError: with a message naming the field and what to fix.
    """
    if not isinstance(raw, Mapping):
        raise ConfigError("the configuration must be a JSON object")
    d = _defaults()
    return ConnectorConfig(
        api_base_url=normalize_base_url(raw.get("api_base_url")),
        credentials=_credentials(raw.get("credentials")),
        user_identifier_type=_choice(raw, "user_identifier_type", ID_TYPES, d["user_identifier_type"]),
        object_type=_choice(raw, "object_type", OBJECT_TYPES, d["object_type"]),
        unmapped_fields=_choice(raw, "unmapped_fields", ("custom_data", "drop"), d["unmapped_fields"]),
        null_values=_choice(raw, "null_values", ("skip", "send"), d["null_values"]),
        field_mapping=_field_mapping(raw.get("field_mapping")),
        custom_attributes=_names(raw, "custom_attributes"),
        dry_run=_bool(raw, "dry_run", d["dry_run"]),
        rejected_records_path=_optional_path(raw, "rejected_records_path"),
        rejected_records_include_pii=_bool(raw, "rejected_records_include_pii", d["rejected_records_include_pii"]),
        log_pii=_bool(raw, "log_pii", d["log_pii"]),
        require_location=_bool(raw, "require_location", d["require_location"]),
        event_id_field=str(raw.get("event_id_field") or d["event_id_field"]),
        credit_verification=_choice(raw, "credit_verification", CREDIT_VERIFICATION, d["credit_verification"]),
        ledger_path=_optional_path(raw, "ledger_path"),
        award_queue_delay_seconds=_number(
            raw, "award_queue_delay_seconds", d["award_queue_delay_seconds"], 0, 600, integer=False
        ),
        upsert_strategy=_choice(raw, "upsert_strategy", UPSERT_STRATEGIES, d["upsert_strategy"]),
        max_concurrency=_number(raw, "max_concurrency", d["max_concurrency"], 1, 64, integer=True),
        max_requests_per_minute=_number(
            raw, "max_requests_per_minute", d["max_requests_per_minute"], 1, 100_000, integer=True
        ),
        max_retries=_number(raw, "max_retries", d["max_retries"], 0, 10, integer=True),
        request_timeout_seconds=_number(
            raw, "request_timeout_seconds", d["request_timeout_seconds"], 1, 300, integer=False
        ),
        progress_interval_seconds=_number(raw, "progress_interval_seconds", 10.0, 0, 3600, integer=False),
    )
