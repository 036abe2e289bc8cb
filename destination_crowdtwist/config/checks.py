"""The rules of the connection settings that JSON Schema cannot express.

The base URL (a host only; https, or http on the loopback), keys that no header or query string can
carry, the authentication method a hand-written config leaves out, and the Python form of
``field_mapping`` and ``custom_attributes``. Every message names the field and never quotes a secret.
"""

from __future__ import annotations

import ipaddress
import unicodedata
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from destination_crowdtwist.api.errors import ConfigError
from destination_crowdtwist.config.model import ApiKeyCredentials, Credentials, HmacCredentials
from destination_crowdtwist.records.mapping import FieldMapping

__all__ = [
    "credentials",
    "credentials_gaps",
    "custom_attributes",
    "field_mapping",
    "key_problem",
    "normalize_base_url",
]


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


def _key(block: Mapping[str, Any], name: str) -> str:
    key = str(block[name]).strip()  # a trailing newline from a pasted key is harmless; one inside is not
    problem = key_problem(key)
    if problem is not None:
        # Never echo the value, not even in part: it is a secret (or half of one).
        raise ConfigError(
            f"credentials.{name} {problem}; copy it again from CrowdTwist Control Center (Settings > API)"
        )
    return key


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
