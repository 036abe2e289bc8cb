"""What one attempt brings back: an answer, classified once (``ApiResponse``), or a ``Failure``.

An answer is everything CrowdTwist (or something in between) sent back in full: its body is parsed
here, its secrets redacted and its PII masked, and the status table's verdict
(``errors.classify_response``) is computed once, when it is built; callers read
``response.resolution`` and ``response.rejection()``. A failure is an attempt without a usable answer
(no connection, no complete answer, a body too large) or an answer the table says to retry: what the
retry decision needs, and the errors to raise if it stops there.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from requests.structures import CaseInsensitiveDict
from urllib3 import HTTPHeaderDict

from destination_crowdtwist.api.errors import Action, Pace, Resolution, TransientError, classify_response
from destination_crowdtwist.api.plain_answer import MessageHeaders
from destination_crowdtwist.api.redaction import RequestLine
from destination_crowdtwist.api.retry import Outcome
from destination_crowdtwist.records.rejection import Rejection, server

__all__ = ["TEXT_PREVIEW_CHARS", "ApiResponse", "Failure"]

# Non-JSON bodies (HTML maintenance pages, proxy errors) are kept only as a short preview.
TEXT_PREVIEW_CHARS = 500

# Placeholder meaning "classify from the other fields" (a frozen dataclass default must be a value).
_UNCLASSIFIED = Resolution(Action.OK, "", cause="unclassified")


class _LazyText:
    """A dataclass field that takes text or a ``RequestLine`` and reads back as text, built on first read.

    A data descriptor: the frozen dataclass's ``__init__`` stores through it, ``repr`` and ``==`` read
    the text.
    """

    def __set_name__(self, owner: type, name: str) -> None:
        self._slot = "_" + name

    def __get__(self, instance: object | None, owner: type | None = None) -> str:
        if instance is None:
            return ""  # the field's default
        return str(instance.__dict__.get(self._slot, ""))

    def __set__(self, instance: object, value: str | RequestLine) -> None:
        instance.__dict__[self._slot] = value


@dataclass(frozen=True)
class ApiResponse:
    """One CrowdTwist answer that the client returns instead of raising (2xx and record-level 4xx).

    ``data`` is the parsed JSON (unknown keys are simply there; callers read what they need) or None;
    ``text`` is a short preview of a non-JSON body, None for JSON. ``request_line`` is redacted and
    masked, ready for error messages (given as text, or as a ``RequestLine`` that is built on first
    read: most answers never need it); ``endpoint`` is the template, e.g. ``"PUT /v2/users/{user_id}"``.
    ``resolution`` is the error table's verdict, computed once when the answer is built (pass one
    only to stage an answer in a test); the client returns only OK and REJECT answers.
    """

    status: int
    data: Any
    headers: Mapping[str, str]
    text: str | None = None
    request_line: _LazyText = _LazyText()  # a str, or a RequestLine built on first read
    endpoint: str = ""
    safe_message: str | None = None  # error_message (or text preview) with secrets redacted, PII masked
    resolution: Resolution = _UNCLASSIFIED
    # True when an earlier attempt of the same logical request may have reached CrowdTwist (no
    # complete answer, or a 5xx): e.g. "already taken" may then be our own create.
    after_uncertain: bool = False
    # The Retry-After as honoured (capped), read only where the status's retries are bounded by time.
    retry_after: float | None = None

    def __post_init__(self) -> None:
        if self.resolution is _UNCLASSIFIED:
            path = self.endpoint.partition(" ")[2] or None
            verdict = classify_response(
                self.status, self.error_code, self.error_message,
                is_html=self.is_html, not_json=self.text is not None, path=path,
            )
            object.__setattr__(self, "resolution", verdict)

    @classmethod
    def from_body(
        cls,
        status: int,
        headers: Mapping[str, str],
        raw: bytes,
        *,
        request_line: str | RequestLine,
        endpoint: str,
        clean: Callable[[str], str],
        retry_after: float | None = None,
    ) -> ApiResponse:
        """Parse a complete body (JSON, or a text preview) and classify the answer.

        ``clean`` redacts secrets and masks PII in CrowdTwist's message (or the text preview).
        """
        data: Any = None
        text: str | None = None
        if raw:
            try:
                data = json.loads(raw)
            except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
                text = raw[: TEXT_PREVIEW_CHARS * 4].decode("utf-8", "replace")[:TEXT_PREVIEW_CHARS]
        if _looks_like_html(headers.get("Content-Type", ""), text):
            text = _html_text(text or "")
        message = data.get("message") if isinstance(data, dict) else None
        raw_message = message if isinstance(message, str) else text
        return cls(
            status=status,
            data=data,
            # urllib3's headers and http.client's (a plain answer's) are case-insensitive already, and
            # this answer's own: no copy needed.
            headers=headers if isinstance(headers, HTTPHeaderDict | MessageHeaders) else CaseInsensitiveDict(headers),
            text=text,
            request_line=request_line,
            endpoint=endpoint,
            safe_message=clean(raw_message) if raw_message is not None else None,
            retry_after=retry_after,
        )

    @property
    def ok(self) -> bool:
        """True when the table says success (a 2xx with a JSON or empty body)."""
        return self.resolution.action is Action.OK

    @property
    def error_code(self) -> str | None:
        """CrowdTwist's machine-readable ``error`` value, if the body is the usual envelope."""
        value = self.data.get("error") if isinstance(self.data, dict) else None
        return value if isinstance(value, str) else None

    @property
    def error_message(self) -> str | None:
        """CrowdTwist's ``message`` value, if the body is the usual envelope."""
        value = self.data.get("message") if isinstance(self.data, dict) else None
        return value if isinstance(value, str) else None

    @property
    def is_html(self) -> bool:
        """Whether the body was an HTML page (maintenance, proxy or wrong host) rather than JSON."""
        return _looks_like_html(self.headers.get("Content-Type", ""), self.text)

    def error_context(self) -> dict[str, Any]:
        """What an error about this answer carries: status, CrowdTwist's code and message, request line."""
        return {
            "status": self.status,
            "error_code": self.error_code,
            "api_message": self.safe_message,
            "request_line": self.request_line,
        }

    def rejection(self) -> Rejection:
        """The row-level refusal this REJECT answer means (raises ValueError for any other answer).

        The message is CrowdTwist's own message (secrets redacted, PII masked as configured) followed
        by what to do, or only what to do when CrowdTwist gave no message.
        """
        reason = self.resolution.reason
        if self.resolution.action is not Action.REJECT or reason is None:
            raise ValueError(f"HTTP {self.status} ({self.resolution.action.value}) is not a row-level refusal")
        hint = self.resolution.hint
        if self.error_message and self.safe_message:
            # CrowdTwist's text may echo the input ("Invalid postal_code for Jane Doe, 42 Elm St"): it is
            # quoted apart from the hint, so a masked reject file or log masks it and keeps the hint.
            return Rejection(reason, (server(self.safe_message), " — ", hint), status=self.status)
        return Rejection(reason, hint, status=self.status)


@dataclass(frozen=True)
class Failure:
    """A failed attempt: what the retry decision needs, and the errors to raise if it stops here.

    ``pace`` and ``pause`` are what the answer's status line told the rate budget (a 429 and its
    honoured Retry-After) when one arrived before the failure: a 429 whose body was cut off still
    slows the budget down. HOLD when no status line arrived.
    """

    outcome: Outcome
    # What happened, without advice: the retry log line says it is retrying, so "try again later"
    # belongs only to the error raised when retries end (with the give-up reason and ``advice``).
    error: TransientError
    uncertain: str  # the UncertainOutcome message, when the request may have been applied
    advice: str = "Try the sync again later."
    pace: Pace = Pace.HOLD
    pause: float | None = None

    @classmethod
    def retry(cls, answer: ApiResponse) -> Failure:
        """The failure an answer the table says to retry (RETRY) stands for."""
        verdict = answer.resolution
        meaning = verdict.meaning
        # The hint's first clause says what happened ("CrowdTwist is throttling requests").
        what = verdict.hint.split(";")[0].rstrip(".")
        return cls(
            Outcome(processed=meaning.processed, bound=meaning.bound, retry_after=answer.retry_after,
                    status=answer.status),
            TransientError(what, **answer.error_context()),
            f"CrowdTwist answered HTTP {answer.status} to a request that may already have been applied. It was "
            "not retried, so it is never applied twice; verify it before sending it again.",
            pace=meaning.pace,
            pause=answer.retry_after,
        )


def _looks_like_html(content_type: str, text: str | None) -> bool:
    if "html" in content_type.lower():
        return True
    return text is not None and text.lstrip()[:1] == "<"


_TAGS = re.compile(r"<[^>]+>")


def _html_text(html: str) -> str:
    """A one-line text preview of an HTML page (title and visible words)."""
    return " ".join(_TAGS.sub(" ", html).split())[:TEXT_PREVIEW_CHARS]
