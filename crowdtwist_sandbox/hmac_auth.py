r"""Server-side HMAC verification, written independently of the connector's signer.

Recipe (docs/crowdtwist-api-notes.md §1.3, from the Apigee mediation proxy + mock; Oracle's own text unreadable)::

    StringToSign = METHOD \n md5hex(raw body) \n Content-Type \n X-CT-Timestamp \n RequestURI
    signature    = Base64( lowercase-hex( HMAC-SHA256(private key, StringToSign) ) )

For GET/DELETE the MD5 and Content-Type parts are empty strings but the newlines stay.
RequestURI is the raw request target (path + query, exactly as received, not percent-decoded).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

AUTH_SCHEME = "CTApiV2Auth"
# Methods without a body: MD5 and Content-Type are left empty in the string to sign.
_BODYLESS_METHODS = frozenset({"GET", "DELETE", "HEAD", "OPTIONS"})
# 10**11 ms is March 1973; 10**11 s is year 5138. Anything at or above it cannot be seconds.
_MS_THRESHOLD = 10**11


def content_md5_hex(body: bytes) -> str:
    """Lowercase hex MD5 of the exact body bytes (not Base64)."""
    return hashlib.md5(body, usedforsecurity=False).hexdigest()


def string_to_sign(method: str, body: bytes, content_type: str, timestamp: str, request_uri: str) -> str:
    """Build the string to sign for one request."""
    verb = method.upper()
    if verb in _BODYLESS_METHODS:
        md5_part, type_part = "", ""
    else:
        md5_part, type_part = content_md5_hex(body), content_type
    return f"{verb}\n{md5_part}\n{type_part}\n{timestamp}\n{request_uri}"


def compute_signature(private_key: str, to_sign: str) -> str:
    """Base64 of the lowercase-hex HMAC-SHA256 (the CrowdTwist quirk: hex first, then Base64)."""
    hex_digest = hmac.new(private_key.encode("utf-8"), to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    return base64.b64encode(hex_digest.encode("ascii")).decode("ascii")


@dataclass(frozen=True)
class HmacVerdict:
    """Outcome of verifying one request; ``ok`` False carries the HTTP error to answer."""

    ok: bool
    status: int = 200
    error: str = ""
    message: str = ""


_OK = HmacVerdict(ok=True)


def _fail(message: str, error: str = "invalid_signature") -> HmacVerdict:
    # 401 + {"error": "invalid_signature"} is the simulator's choice: CrowdTwist's real answer to a bad
    # signature is NOT FOUND (the Apigee mock answers 401 for a wrong signature).
    return HmacVerdict(ok=False, status=401, error=error, message=message)


def parse_timestamp(raw: str, *, accept_seconds: bool) -> float | None:
    """Epoch seconds of an ``X-CT-Timestamp`` value, or None when it is not an integer.

    Milliseconds are the documented unit. A seconds value is only recognised when ``accept_seconds``;
    otherwise it is read as milliseconds (i.e. January 1970) and fails the freshness check.
    """
    text = raw.strip()
    if not text.isdigit():
        return None
    value = int(text)
    if accept_seconds and value < _MS_THRESHOLD:
        return float(value)
    return value / 1000.0


def verify_request(  # noqa: PLR0913 - one keyword per signed element of the request
    *,
    method: str,
    request_target: str,
    body: bytes,
    authorization: str | None,
    timestamp: str | None,
    content_type: str | None,
    public_key: str,
    private_key: str,
    now: float,
    window_seconds: float = 900.0,
    accept_seconds: bool = False,
) -> HmacVerdict:
    """Verify one request's HMAC headers against the instance's key pair at time ``now`` (epoch s)."""
    if not authorization:
        return _fail("HMAC authentication is required: missing X-CT-Authorization header")
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme != AUTH_SCHEME or ":" not in credentials:
        return _fail(f"X-CT-Authorization must be '{AUTH_SCHEME} <public key>:<signature>'")
    sent_public, _, sent_signature = credentials.strip().partition(":")
    if not hmac.compare_digest(sent_public.encode(), public_key.encode()):
        return _fail("Unknown HMAC public key")
    if timestamp is None:
        return _fail("Missing X-CT-Timestamp header", error="invalid_timestamp")
    ts = parse_timestamp(timestamp, accept_seconds=accept_seconds)
    if ts is None:
        return _fail("X-CT-Timestamp must be an integer UNIX timestamp in milliseconds", "invalid_timestamp")
    if abs(now - ts) > window_seconds:
        minutes = window_seconds / 60
        return _fail(
            f"X-CT-Timestamp is more than {minutes:g} minutes away from the server time; "
            "check the client clock and send milliseconds",
            error="invalid_timestamp",
        )
    expected = compute_signature(
        private_key, string_to_sign(method, body, content_type or "", timestamp, request_target)
    )
    if not hmac.compare_digest(expected.encode(), sent_signature.encode()):
        return _fail("Invalid signature")
    return _OK
