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
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal, cast
from urllib.parse import urlsplit

from destination_crowdtwist.api.errors import ConfigError
from destination_crowdtwist.records.identifiers import ID_TYPES, IdType
from destination_crowdtwist.records.mapping import FieldMapping, MappingOptions

__all__ = [
    "FILE_NAME_VARIABLES",
    "ID_TYPES",
    "INTERNAL_FIELDS",
    "PATH_VARIABLES",
    "ApiKeyCredentials",
    "CompressionType",
    "ConnectorConfig",
    "Credentials",
    "CreditVerification",
    "DeleteBehaviour",
    "Flattening",
    "HmacCredentials",
    "IdType",
    "NullValues",
    "ObjectType",
    "S3Storage",
    "StorageFormat",
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
DeleteBehaviour = Literal["deactivate", "deactivate_and_remove_points", "erase"]
# object_storage_config (S3): the format_type, flattening and compression_type values of the spec.
StorageFormat = Literal["CSV", "JSONL"]
Flattening = Literal["No flattening", "Root level flattening"]
CompressionType = Literal["No Compression", "GZIP"]

#: The variables of ``object_storage_config.path_format`` and ``file_name_format`` (their meaning is
#: in the spec descriptions; rejects/layout.py expands them, and its tests check it knows exactly
#: these). ``date:PATTERN`` stands for ``{date:yyyy_MM}`` and the like.
PATH_VARIABLES: frozenset[str] = frozenset(
    {"sync_id", "generation_id", "namespace", "stream_name", "year", "month", "day", "epoch"}
)
FILE_NAME_VARIABLES: frozenset[str] = frozenset(
    {"date", "date:PATTERN", "timestamp", "part_number", "sync_id", "format_extension"}
)

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


def s3_option() -> Mapping[str, Any]:
    """The ``storage_type: S3`` option of the spec's ``object_storage_config`` (Airbyte's standard block)."""
    for option in _prop("object_storage_config", "object")["oneOf"]:
        if option["properties"]["storage_type"]["enum"] == ["S3"]:
            return cast(Mapping[str, Any], option)
    raise RuntimeError("spec.json object_storage_config has no S3 option")  # pragma: no cover


def _s3_prop(name: str) -> Mapping[str, Any]:
    prop = s3_option()["properties"].get(name)
    if prop is None:
        raise RuntimeError(f"spec.json object_storage_config (S3) has no property {name!r}")
    return cast(Mapping[str, Any], prop)


def _nested_choices(name: str, key: str) -> list[str]:
    """The values of ``key`` over the options of the S3 block's ``name`` (format or compression)."""
    return [option["properties"][key]["enum"][0] for option in _s3_prop(name)["oneOf"]]


def _nested_default(name: str, key: str) -> str:
    """The default of ``key`` under the S3 block's ``name``: the ``default`` of ``name`` itself when
    the spec has one (Airbyte's block says ``"default": "CSV"`` for the format), else the first option.
    """
    default = _s3_prop(name).get("default")
    return str(default) if default is not None else _nested_choices(name, key)[0]


def _flattening_prop() -> Mapping[str, Any]:
    return cast(Mapping[str, Any], _s3_prop("format")["oneOf"][0]["properties"]["flattening"])


# The S3 block's defaults, read once at import like _DEFAULTS.
_S3_DEFAULTS: Mapping[str, Any] = {
    "s3_bucket_region": _s3_prop("s3_bucket_region")["default"],
    "format_type": _nested_default("format", "format_type"),
    "flattening": _flattening_prop()["default"],
    "compression_type": _nested_default("compression", "compression_type"),
    "path_format": _s3_prop("path_format")["default"],
    "file_name_format": _s3_prop("file_name_format")["default"],
}


@dataclass(frozen=True)
class S3Storage:
    """``object_storage_config`` with ``storage_type: S3``: where rejected rows are uploaded.

    Field names are the spec's (``format`` and ``compression`` are flattened to their
    ``format_type``, ``flattening`` and ``compression_type``); defaults come from the spec. Keys
    are None when the standard AWS credential chain is to be used.
    """

    s3_bucket_name: str
    s3_bucket_region: str = _S3_DEFAULTS["s3_bucket_region"]
    bucket_path: str = ""
    s3_endpoint: str | None = None
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    role_arn: str | None = None
    format_type: StorageFormat = _S3_DEFAULTS["format_type"]
    flattening: Flattening = _S3_DEFAULTS["flattening"]
    compression_type: CompressionType = _S3_DEFAULTS["compression_type"]
    path_format: str = _S3_DEFAULTS["path_format"]
    file_name_format: str = _S3_DEFAULTS["file_name_format"]
    # PEM of the private CA that issued the endpoint's certificate (None: the usual public CAs).
    s3_ca_certificate: str | None = field(default=None, repr=False)

    @property
    def location(self) -> str:
        """``s3://bucket/prefix/`` for messages (never holds a secret)."""
        prefix = f"{self.bucket_path}/" if self.bucket_path else ""
        return f"s3://{self.s3_bucket_name}/{prefix}"

    @property
    def secrets(self) -> tuple[str, ...]:
        """The key values that must never be printed."""
        return tuple(key for key in (self.access_key_id, self.secret_access_key) if key)

    def __repr__(self) -> str:
        return (
            f"S3Storage(s3_bucket_name={self.s3_bucket_name!r}, s3_bucket_region={self.s3_bucket_region!r}, "
            f"bucket_path={self.bucket_path!r}, s3_endpoint={self.s3_endpoint!r}, "
            f"keys={'****' if self.access_key_id else 'credential chain'}, role_arn={self.role_arn!r}, "
            f"format_type={self.format_type!r}, compression_type={self.compression_type!r})"
        )


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
    # None: storage_type "None" (rejected rows go nowhere but rejected_records_path).
    object_storage_config: S3Storage | None = _DEFAULTS["object_storage_config"]
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
    member_index_max_age_days: int = _DEFAULTS["member_index_max_age_days"]
    max_concurrency: int = _DEFAULTS["max_concurrency"]
    max_requests_per_minute: int = _DEFAULTS["max_requests_per_minute"]
    max_retries: int = _DEFAULTS["max_retries"]
    request_timeout_seconds: float = _DEFAULTS["request_timeout_seconds"]
    # Member removal (soft_delete streams of User Profile, writers/removal.py).
    delete_behaviour: DeleteBehaviour = _DEFAULTS["delete_behaviour"]
    max_deletes_per_sync: int = _DEFAULTS["max_deletes_per_sync"]
    erase_status_wait_seconds: float = _DEFAULTS["erase_status_wait_seconds"]
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
        storage = self.object_storage_config.secrets if self.object_storage_config is not None else ()
        if isinstance(self.credentials, ApiKeyCredentials):
            return (self.credentials.api_key, *storage)
        return (self.credentials.private_key, *storage)

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
        stream = item.get("stream")
        if isinstance(stream, str) and not stream.strip():
            stream = None  # an emptied field of the form: every stream
        if stream is not None and not isinstance(stream, str):
            raise ConfigError(f"field_mapping[{i}].stream must be a stream name (text), or left empty for every stream")
        result.append(FieldMapping(source=source, destination=dest, stream=stream.strip() if stream else None))
    return tuple(result)


def _names(raw: Mapping[str, Any], name: str) -> tuple[str, ...]:
    value = raw.get(name)
    if value in (None, []):
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) and item.strip() for item in value):
        raise ConfigError(f"{name} must be a list of non-empty names")
    return tuple(dict.fromkeys(item.strip() for item in value))


# --- object_storage_config -----------------------------------------------------------------------------

_STORAGE = "object_storage_config"
_TEMPLATE_VARIABLE = re.compile(r"\{([^{}]*)\}")
# {date:PATTERN}: the Java-style letters Airbyte's examples use; anything else in a pattern would be
# kept literally by Airbyte's own writer, so it is refused here rather than silently misnamed.
_DATE_PATTERN = re.compile(r"(?:yyyy|MM|dd|HH|mm|ss|[^A-Za-z{}:])+")


def _s3_text(raw: Mapping[str, Any], name: str, what: str = "a text value") -> str | None:
    value = raw.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{_STORAGE}.{name} must be {what}")
    return value.strip()


def _s3_choice(value: Any, name: str, allowed: list[str]) -> str:
    if value not in allowed:
        choices = ", ".join(repr(a) for a in allowed)
        raise ConfigError(f"{_STORAGE}.{name} must be one of {choices} (got {_shown(value)})")
    return str(value)


def _s3_nested(raw: Mapping[str, Any], name: str, key: str) -> tuple[str, Mapping[str, Any]]:
    """``format`` / ``compression``: an object ``{key: value, ...}`` (or, as Airbyte's own default
    for ``format`` is written, the bare value); absent means the spec default.
    """
    value = raw.get(name)
    allowed = _nested_choices(name, key)
    if value is None:
        return _nested_default(name, key), {}
    if isinstance(value, str):
        return _s3_choice(value, f"{name}.{key}", allowed), {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{_STORAGE}.{name} must be an object with {key} ({', '.join(allowed)})")
    chosen = value.get(key)
    if chosen is None:
        return _nested_default(name, key), value
    return _s3_choice(chosen, f"{name}.{key}", allowed), value


def _s3_key(raw: Mapping[str, Any], name: str) -> str | None:
    value = raw.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{_STORAGE}.{name} must be text")
    value = value.strip()
    problem = _key_problem(value)
    if problem is not None:
        # Never echo the value, not even in part.
        raise ConfigError(f"{_STORAGE}.{name} {problem}; copy it again from the AWS console or your S3 store")
    return value


def _bucket_name(raw: Mapping[str, Any]) -> str:
    name = _s3_text(raw, "s3_bucket_name", "a bucket name")
    if name is None:
        raise ConfigError(f"{_STORAGE}.s3_bucket_name is required with storage_type S3: the name of an existing bucket")
    if name.lower().startswith("s3://") or "/" in name:
        raise ConfigError(
            f"{_STORAGE}.s3_bucket_name must be the bucket's name only (got {_shown(name)}); "
            "put a folder in bucket_path"
        )
    if not name.isascii() or not name.isprintable() or " " in name:
        raise ConfigError(
            f"{_STORAGE}.s3_bucket_name must be a bucket name (letters, digits, '-', '.'; got {_shown(name)})"
        )
    return name


def _endpoint(raw: Mapping[str, Any]) -> str | None:
    url = _s3_text(raw, "s3_endpoint", "a URL")
    if url is None:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigError(
            f"{_STORAGE}.s3_endpoint must be a URL such as https://minio.example.com:9000 "
            f"(got a value without an http(s):// scheme or host, {len(url)} characters)"
        )
    if parts.username is not None or parts.password is not None:
        # Never echo it: it holds credentials.
        raise ConfigError(
            f"{_STORAGE}.s3_endpoint must not contain credentials (user:password@); use access_key_id and "
            "secret_access_key"
        )
    if parts.query or parts.fragment:
        raise ConfigError(f"{_STORAGE}.s3_endpoint must not contain a query string or fragment")
    return url.rstrip("/")


def _template(raw: Mapping[str, Any], name: str, variables: frozenset[str]) -> str:
    value = raw.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        return str(_s3_prop(name)["default"])
    if not isinstance(value, str):
        raise ConfigError(f"{_STORAGE}.{name} must be text with {{variables}}")
    for found in _TEMPLATE_VARIABLE.findall(value):
        known = found in variables
        if not known and found.startswith("date:") and "date:PATTERN" in variables:
            known = _DATE_PATTERN.fullmatch(found[5:]) is not None
        if not known:
            names = ", ".join("{" + v.replace("PATTERN", "yyyy_MM") + "}" for v in sorted(variables))
            raise ConfigError(f"{_STORAGE}.{name} has the unknown variable {{{found}}}; known: {names}")
    if "{" in _TEMPLATE_VARIABLE.sub("", value) or "}" in _TEMPLATE_VARIABLE.sub("", value):
        raise ConfigError(f"{_STORAGE}.{name} has an unmatched brace (got {_shown(value)})")
    return value


def _object_storage(raw: Any) -> S3Storage | None:
    """``object_storage_config``: None for ``storage_type: None`` (or absent), else the S3 settings."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{_STORAGE} must be an object with storage_type None or S3")
    kinds = [option["properties"]["storage_type"]["enum"][0] for option in _prop(_STORAGE, "object")["oneOf"]]
    storage_type = raw.get("storage_type")
    if storage_type is None:
        storage_type = "S3" if raw.get("s3_bucket_name") else "None"
    if _s3_choice(storage_type, "storage_type", kinds) == "None":
        return None
    bucket = _bucket_name(raw)
    region = raw.get("s3_bucket_region")
    if region is not None:
        region = _s3_choice(region, "s3_bucket_region", list(_s3_prop("s3_bucket_region")["enum"]))
    access_key_id, secret_access_key = _s3_key(raw, "access_key_id"), _s3_key(raw, "secret_access_key")
    if (access_key_id is None) != (secret_access_key is None):
        missing = "secret_access_key" if secret_access_key is None else "access_key_id"
        raise ConfigError(
            f"{_STORAGE}.{missing} is missing: set both access_key_id and secret_access_key, or neither to use "
            "the AWS credential chain"
        )
    role_arn = _s3_text(raw, "role_arn", "an IAM role ARN")
    if role_arn is not None and not role_arn.startswith("arn:"):
        raise ConfigError(f"{_STORAGE}.role_arn must be an IAM role ARN such as arn:aws:iam::123456789012:role/name")
    format_type, format_options = _s3_nested(raw, "format", "format_type")
    flattening_prop = _flattening_prop()
    flattening = format_options.get("flattening")
    flattening = (
        flattening_prop["default"] if flattening is None
        else _s3_choice(flattening, "format.flattening", list(flattening_prop["enum"]))
    )
    compression_type, _ = _s3_nested(raw, "compression", "compression_type")
    file_name_format = _template(raw, "file_name_format", FILE_NAME_VARIABLES)
    if "{part_number}" not in file_name_format:
        # Without it, the second upload of a stream would replace the first, and with it rejected
        # rows whose checkpoint was already confirmed.
        raise ConfigError(
            f"{_STORAGE}.file_name_format must contain {{part_number}}, so that every upload is a new object"
        )
    return S3Storage(
        s3_bucket_name=bucket,
        s3_bucket_region=_S3_DEFAULTS["s3_bucket_region"] if region is None else region,
        bucket_path=(_s3_text(raw, "bucket_path", "a folder path") or "").strip("/"),
        s3_endpoint=_endpoint(raw),
        access_key_id=access_key_id,
        secret_access_key=secret_access_key,
        role_arn=role_arn,
        format_type=cast(StorageFormat, format_type),
        flattening=cast(Flattening, flattening),
        compression_type=cast(CompressionType, compression_type),
        path_format=_template(raw, "path_format", PATH_VARIABLES),
        file_name_format=file_name_format,
        s3_ca_certificate=_ca_certificate(raw),
    )


def _ca_certificate(raw: Mapping[str, Any]) -> str | None:
    pem = _s3_text(raw, "s3_ca_certificate", "a PEM certificate")
    if pem is None:
        return None
    if "-----BEGIN CERTIFICATE-----" not in pem or "-----END CERTIFICATE-----" not in pem:
        raise ConfigError(
            f"{_STORAGE}.s3_ca_certificate must be a certificate in PEM form, from -----BEGIN CERTIFICATE----- "
            "to -----END CERTIFICATE-----"
        )
    return pem.strip() + "\n"


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
        object_storage_config=_object_storage(raw.get("object_storage_config")),
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
        member_index_max_age_days=_number(raw, "member_index_max_age_days"),
        max_concurrency=_number(raw, "max_concurrency"),
        max_requests_per_minute=_number(raw, "max_requests_per_minute"),
        max_retries=_number(raw, "max_retries"),
        request_timeout_seconds=_number(raw, "request_timeout_seconds"),
        delete_behaviour=_choice(raw, "delete_behaviour"),
        max_deletes_per_sync=_number(raw, "max_deletes_per_sync"),
        erase_status_wait_seconds=_number(raw, "erase_status_wait_seconds"),
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
