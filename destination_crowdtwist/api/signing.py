"""CrowdTwist request authentication: the HMAC recipe as pure steps, and the two auth modes.

Each mode's ``apply`` signs one attempt as the transport sends it (api/transport.py); ``__call__``
is the same as a ``requests`` auth hook, for callers holding a PreparedRequest.

The recipe (docs/crowdtwist-api-notes.md §1.3) is::

    StringToSign = METHOD LF Content-MD5 LF Content-Type LF X-CT-Timestamp LF RequestURI   (LF = newline)
    signature    = Base64( lowercase-hex( HMAC-SHA256(private key, StringToSign) ) )

Oracle's own text for the string-to-sign was not readable; the composition comes from the Apigee
mediation proxy and its verifying mock, written against Oracle's page (see the notes). Each step
is a separate function so a failing vector names the step that went wrong.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import time
from collections.abc import Callable
from urllib.parse import quote, urlsplit, urlunsplit

import requests
from requests.auth import AuthBase

from destination_crowdtwist.api.redaction import mask_user_segment

# A child of the "airbyte" logger, the only one the CDK configures (level and handler); a
# module-named logger would stay at the root's WARNING level in a real sync.
logger = logging.getLogger("airbyte.crowdtwist")

AUTH_HEADER = "X-CT-Authorization"
TIMESTAMP_HEADER = "X-CT-Timestamp"
SCHEME = "CTApiV2Auth"

# Oracle: for GET and DELETE, Content-MD5 and Content-Type are empty strings but the newlines stay.
_BODYLESS_METHODS = frozenset({"GET", "DELETE", "HEAD"})


def content_md5(body: bytes | None) -> str:
    """32 lowercase hex characters of the MD5 of the exact body bytes; ``""`` when there is no body.

    Not Base64, and not the MD5 of an empty string for body-less requests.
    """
    if body is None:
        return ""
    return hashlib.md5(body, usedforsecurity=False).hexdigest()


def string_to_sign(method: str, content_md5: str, content_type: str, timestamp: str, request_uri: str) -> str:
    """Join the five signed inputs with newlines (no trailing newline)."""
    return "\n".join((method.upper(), content_md5, content_type, timestamp, request_uri))


def signature(private_key: str, string_to_sign: str) -> str:
    """Base64 of the *lowercase hex text* of HMAC-SHA256 (an 88-character value ending in ``==``).

    Base64-encoding the already hex-encoded HMAC is a CrowdTwist quirk; plain Base64 of the 32 raw
    bytes (44 characters) is wrong. The key is used as the UTF-8 bytes of the key string, not decoded.
    """
    digest = hmac.new(private_key.encode("utf-8"), string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    return base64.b64encode(digest.encode("ascii")).decode("ascii")


def request_uri(url: str) -> str:
    """The request target of a full URL: path plus ``?query`` exactly as sent (not decoded)."""
    parts = urlsplit(url)
    path = parts.path or "/"
    return f"{path}?{parts.query}" if parts.query else path


def body_bytes(body: bytes | str | None) -> bytes | None:
    """The bytes that go on the wire for a PreparedRequest body; streams cannot be signed."""
    if body is None or isinstance(body, bytes):
        return body
    if isinstance(body, str):
        # urllib3 2 sends str bodies UTF-8 encoded; our client always passes bytes anyway.
        return body.encode("utf-8")
    raise TypeError(f"cannot sign a streamed request body ({type(body).__name__}); pass bytes")


class HmacAuth(AuthBase):
    """Signs each attempt (``apply``) or PreparedRequest with the CrowdTwist HMAC headers.

    The transport signs after it has the body's bytes, so the signature covers the exact bytes that
    are sent. The timestamp is taken from ``clock`` on every call and both headers are *replaced*,
    so a retried (re-prepared) request is always freshly signed, never carrying two signatures.
    """

    def __init__(self, public_key: str, private_key: str, clock: Callable[[], float] = time.time) -> None:
        self._public_key = public_key
        self._private_key = private_key
        self._clock = clock

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values that must never appear in logs or error text."""
        return (self._private_key,)

    def sign(self, method: str, url: str, body: bytes | None, content_type: str) -> tuple[str, str]:
        """Return ``(timestamp, X-CT-Authorization value)`` for one request."""
        # Oracle's samples are 13 digits (milliseconds); the Apigee proxy sent seconds, but which units
        # CrowdTwist accepts besides ms is NOT FOUND, so we send ms as the docs show.
        timestamp = str(round(self._clock() * 1000))
        method = method.upper()
        if method in _BODYLESS_METHODS:
            md5, content_type = "", ""
        else:
            md5 = content_md5(body)
        to_sign = string_to_sign(method, md5, content_type, timestamp, request_uri(url))
        # The string-to-sign holds no secret (the URI carries no api_key in HMAC mode); the key never logs.
        # The member id in the URI is personal data, so the logged copy has it masked.
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("CrowdTwist HMAC string-to-sign: %r", mask_user_segment(to_sign))
        return timestamp, f"{SCHEME} {self._public_key}:{signature(self._private_key, to_sign)}"

    def apply(self, method: str, target: str, headers: dict[str, str], body: bytes | None) -> str:
        """Sign one attempt: set both headers in ``headers`` (fresh timestamp); return ``target`` unchanged.

        ``target`` is the request target exactly as sent (path and query, or the absolute URL through a
        plain-HTTP proxy): the signature covers its path and query. The transport calls this once per
        attempt, so a retry is never sent with an old signature.
        """
        timestamp, authorization = self.sign(method, target, body, headers.get("Content-Type", ""))
        headers[TIMESTAMP_HEADER] = timestamp
        headers[AUTH_HEADER] = authorization
        return target

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        """Sign ``request`` in place (requests' auth hook: the same signature as :meth:`apply`)."""
        content_type = request.headers.get("Content-Type", "")
        timestamp, authorization = self.sign(
            request.method or "GET", request.url or "", body_bytes(request.body), content_type
        )
        # The headers dict is case-insensitive: assignment replaces any earlier value, whatever its case.
        request.headers[TIMESTAMP_HEADER] = timestamp
        request.headers[AUTH_HEADER] = authorization
        return request

    def __repr__(self) -> str:
        return f"HmacAuth(public_key={self._public_key[:4]!r}..., private_key=***)"


class ApiKeyAuth(AuthBase):
    """Adds the ``api_key`` query parameter, as every CrowdTwist v2 page documents.

    An existing ``api_key`` parameter is replaced, so re-preparing a request never duplicates it.
    Other parameters are kept byte for byte.
    """

    def __init__(self, api_key: str) -> None:
        self._api_key = api_key
        self._parameter = "api_key=" + quote(api_key, safe="")

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values that must never appear in logs or error text."""
        return (self._api_key,)

    def apply(self, method: str, target: str, headers: dict[str, str], body: bytes | None) -> str:
        """``target`` with exactly one ``api_key`` parameter (the transport sends what this returns)."""
        if "api_key" in target or "#" in target or target.endswith(("?", "&")) or "&&" in target or "?&" in target:
            return with_api_key(target, self._api_key)
        # The usual target (no api_key yet, no empty parameter): what with_api_key returns, without
        # splitting and joining the URL on every attempt.
        return f"{target}{'&' if '?' in target else '?'}{self._parameter}"

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        """Set the api_key parameter on ``request`` in place (requests' auth hook)."""
        request.url = with_api_key(request.url or "", self._api_key)
        return request

    def __repr__(self) -> str:
        return "ApiKeyAuth(api_key=***)"


def with_api_key(url: str, api_key: str) -> str:
    """``url`` with exactly one ``api_key`` query parameter set to ``api_key`` (percent-encoded)."""
    parts = urlsplit(url)
    kept = [p for p in parts.query.split("&") if p and p.split("=", 1)[0] != "api_key"]
    kept.append("api_key=" + quote(api_key, safe=""))
    return urlunsplit(parts._replace(query="&".join(kept)))
