"""Secret redaction for URLs and free text (error messages, logs).

Secrets reach text in two ways: the ``api_key`` query parameter inside a URL (CrowdTwist's API-key
mode puts the key in every URL) and libraries echoing what they were given. ``redact_url`` handles
the first by parameter name; ``redact_text`` removes known secret values plus anything that looks
like a secret parameter or an ``X-CT-Authorization`` value.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from urllib.parse import quote, quote_plus, unquote, urlsplit, urlunsplit

MASK = "***"

# Query parameter names whose value is treated as secret (matched case-insensitively, whole name).
_SECRET_PARAM = re.compile(
    r"^(api[_-]?key|apikey|key|token|access[_-]?token|auth|authorization|secret|client[_-]?secret|"
    r"private[_-]?key|password|passwd|signature|sig)$",
    re.IGNORECASE,
)
# The same names inside free text, e.g. "...?id_type=email&api_key=SECRET" in a library message.
_SECRET_PARAM_IN_TEXT = re.compile(
    r"(?i)\b(api[_-]?key|apikey|access[_-]?token|client[_-]?secret|private[_-]?key|password|signature)"
    r"=([^&\s'\"<>]+)"
)
_AUTH_HEADER_IN_TEXT = re.compile(r"(?i)\b(CTApiV2Auth\s+[^:\s'\"]+:|CTApiKey\s+)([^\s'\",}]+)")


class RequestLine:
    """A request line for errors and logs (``PUT /v2/users/a***?id_type=email``), built on first use.

    Only failures, retries, refusals and error messages read it, so the masking and redaction are
    not paid on every request (they were about a twentieth of the client's CPU per request). ``str()``
    gives the text; it is computed once (two threads racing compute the same text).
    """

    __slots__ = ("_mask", "_method", "_path", "_query", "_text")

    def __init__(self, method: str, path: str, query: str, mask: Callable[[str], str]) -> None:
        self._method = method
        self._path = path  # percent-encoded, as sent: ``mask`` receives it so
        self._query = query  # "" or "?..." (no credentials: the auth adds them per attempt)
        self._mask = mask
        self._text: str | None = None

    def __str__(self) -> str:
        text = self._text
        if text is None:
            text = self._text = f"{self._method} {redact_url(self._mask(self._path) + self._query)}"
        return text

    def __repr__(self) -> str:
        return f"RequestLine({str(self)!r})"


def redact_url(url: str) -> str:
    """``url`` with secret-looking query values and any userinfo password replaced by ``***``.

    Everything else (path, other parameters, their encoding) is kept as is.
    """
    parts = urlsplit(url)
    query = "&".join(_redact_pair(pair) for pair in parts.query.split("&")) if parts.query else ""
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{MASK}@{host}" if ":" in userinfo else f"{MASK}@{host}"
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _redact_pair(pair: str) -> str:
    name, sep, _value = pair.partition("=")
    if sep and _SECRET_PARAM.match(name):
        return f"{name}={MASK}"
    return pair


def redact_text(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with known secret values (raw and percent-encoded) and secret-looking parameters masked."""
    values: set[str] = set()
    for secret in secrets:
        if secret:
            values.update({secret, quote(secret, safe=""), quote_plus(secret)})
    # Longest first, so a secret that contains another is masked whole.
    for value in sorted(values, key=len, reverse=True):
        text = text.replace(value, MASK)
    text = _SECRET_PARAM_IN_TEXT.sub(lambda m: f"{m.group(1)}={MASK}", text)
    return _AUTH_HEADER_IN_TEXT.sub(lambda m: f"{m.group(1)}{MASK}", text)


# The deletion-status path puts the member's id after ``/users/delete/`` (docs/crowdtwist-api-notes.md §2.4).
_USER_SEGMENT = re.compile(r"(/users/(?:delete/)?)([^/?]+)")


def mask_user_segment(path: str, mask_value: Callable[[str], str] | None = None) -> str:
    """``/v2/users/alice%40x.com/activities`` -> ``/v2/users/a***/activities`` (user id masked).

    ``mask_value`` receives the decoded id; the default keeps only its first character.
    """
    masker = mask_value or (lambda value: value[:1] + MASK)
    return _USER_SEGMENT.sub(lambda m: m.group(1) + masker(unquote(m.group(2))), path)
