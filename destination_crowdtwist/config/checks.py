"""The rules of the connection settings that JSON Schema cannot express.

The base URL (a host only; https, or http on the loopback), keys that no header or query string can
carry, the authentication method a hand-written config leaves out, the Python form of
``field_mapping``, ``custom_attributes`` and ``sync_state``, and the one rule across settings
(``sync_state: bucket`` needs an S3 ``object_storage_config``). Every message names the field and never quotes a secret.
"""

from __future__ import annotations

import ipaddress
import unicodedata
from collections.abc import Mapping
from typing import Any
from urllib.parse import SplitResult, urlsplit

from destination_crowdtwist.api.errors import ConfigError
from destination_crowdtwist.config.model import (
    ApiKeyCredentials,
    ConnectorConfig,
    Credentials,
    HmacCredentials,
    SyncState,
)
from destination_crowdtwist.records.mapping import FieldMapping


def url_parts(url: str, name: str, example: str, keys: str) -> SplitResult:
    """``url`` split, when it is an http(s) URL with a host and no credentials, query or fragment.

    ``keys`` says where credentials belong instead; the value is never echoed (it may hold them).
    """
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigError(
            f"{name} must be a URL such as {example} "
            f"(got a value without an http(s):// scheme or host, {len(url)} characters)"
        )
    if parts.username is not None or parts.password is not None:
        raise ConfigError(f"{name} must not contain credentials (user:password@); {keys}")
    if parts.query or parts.fragment:
        raise ConfigError(f"{name} must not contain a query string or fragment; use e.g. {example}")
    return parts


def normalize_base_url(value: Any) -> str:
    """Validate `api_base_url` and return it without a trailing slash."""
    example = "https://api123.crowdtwist.com"
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"api_base_url is required, e.g. {example}")
    parts = url_parts(value.strip(), "api_base_url", example, "put the API key in credentials")
    if parts.path not in ("", "/"):
        raise ConfigError(
            f"api_base_url must not contain a path (found {parts.path!r}); use only the host, "
            f"e.g. {example} — the connector adds /v2/... itself"
        )
    if parts.scheme == "http" and not _is_loopback(str(parts.hostname)):
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


def key_problem(key: str) -> str | None:
    """Why `key` cannot be a CrowdTwist (or S3) key, without quoting it; None when it can.

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


def credentials_gaps(block: Mapping[str, Any]) -> Mapping[str, Any]:
    """A config written by hand may leave out ``auth_type``: a private key means HMAC, else an API key."""
    return {"auth_type": "hmac" if "private_key" in block else "api_key"}


def checked_key(value: str, name: str, source: str) -> str:
    """The key ``value`` trimmed (a trailing newline from a paste is harmless; one inside is not).

    Raises:
        ConfigError: naming ``name`` and the problem, and where to copy the key again (``source``);
            never quoting the value, not even in part: it is a secret (or half of one).
    """
    key = value.strip()
    problem = key_problem(key)
    if problem is not None:
        raise ConfigError(f"{name} {problem}; copy it again from {source}")
    return key


def _key(block: Mapping[str, Any], name: str) -> str:
    return checked_key(block[name], f"credentials.{name}", "CrowdTwist Control Center (Settings > API)")


def credentials(block: Mapping[str, Any]) -> Credentials:
    """The validated ``credentials`` block as API-key or HMAC credentials, keys trimmed and checked."""
    if block["auth_type"] == "hmac":
        return HmacCredentials(public_key=_key(block, "public_key"), private_key=_key(block, "private_key"))
    return ApiKeyCredentials(api_key=_key(block, "api_key"))


def field_mapping(rules: list[Mapping[str, Any]]) -> tuple[FieldMapping, ...]:
    """The validated ``field_mapping`` rules; a rule without a stream applies to every stream."""
    return tuple(
        FieldMapping(source=rule["source"], destination=rule["destination"],
                     stream=rule["stream"].strip() if "stream" in rule else None)
        for rule in rules
    )


def custom_attributes(values: list[str]) -> tuple[str, ...]:
    """The validated ``custom_attributes``: trimmed, none blank, each once."""
    if not all(value.strip() for value in values):
        raise ConfigError("custom_attributes must be a list of non-empty names")
    return tuple(dict.fromkeys(value.strip() for value in values))



def sync_state(block: Mapping[str, Any]) -> SyncState:
    """The validated ``sync_state`` block (its one field is an enum JSON Schema has checked)."""
    return SyncState(storage=block["storage"])


def state_bucket(config: ConnectorConfig) -> None:
    """``sync_state: bucket`` needs an S3 ``object_storage_config``: its bucket holds the state.

    Raises:
        ConfigError: naming both settings.
    """
    if config.sync_state.in_bucket and config.object_storage_config is None:
        raise ConfigError(
            "sync_state.storage is bucket, but object_storage_config is not an S3 bucket: the sync state is kept "
            "in object_storage_config's bucket. Set object_storage_config (storage_type S3), or set "
            "sync_state.storage to none."
        )
