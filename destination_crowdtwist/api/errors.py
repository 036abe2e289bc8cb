"""Error taxonomy of the connector and THE table that maps CrowdTwist answers to actions.

Errors are grouped by what the caller must do, not by HTTP status:

- ``ConfigError``: the user has to fix something (credentials, base URL, TLS, mode). Stops the sync.
- ``TransientError``: retries were exhausted on throttling / server errors / network trouble.
- ``UncertainOutcome``: a non-idempotent request (activity credit) may have been applied; it was
  deliberately not retried so points are never credited twice.
- A row that cannot be written is not an exception of this module: a REJECT answer becomes a
  ``records.rejection.Rejection`` (``ApiResponse.rejection()`` in api/response.py), and the sync goes on.

``RULES`` is THE status table: an ordered list of data rows, so that supporting a new CrowdTwist
error text means adding a row, not a branch. A row says what to do (``Action``), why (the ``Reason``
of a rejected row, or a ``cause`` tag), and what its status means for the request (``Meaning``):
whether the server may have run it, what bounds its retries, and what it tells the rate budget.
``classify_response`` reads a whole answer (once, when its ``ApiResponse`` is built); ``status_rule``
reads the status line alone, for an answer whose body is not read or could not be used. Nothing else
tests HTTP statuses: the retry decision (``retry.decide``, whose docstring tables what the meanings
make it do), the transport and the flow control read these rows.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal

from destination_crowdtwist.records.rejection import Reason

# The Airbyte failure types, as the protocol spells them; the sync layer turns an error into the
# CDK's traced exception (sync/protocol.py), so this module and everything below it load without
# the CDK.
FailureType = Literal["config_error", "transient_error", "system_error"]


class CrowdTwistError(Exception):
    """Root of every error the connector raises about CrowdTwist.

    ``message`` is the user-facing, actionable sentence. The other attributes carry context:
    the HTTP status, CrowdTwist's machine code (``error`` key of the body) and message, and the
    request line, which is already redacted (no api_key, no signature, masked user ids).
    """

    failure_type: ClassVar[FailureType] = "system_error"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error_code: str | None = None,
        api_message: str | None = None,
        request_line: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.error_code = error_code
        self.api_message = api_message
        self.request_line = request_line

    def details(self) -> str:
        """The context part of the text: request line, status, CrowdTwist code and message."""
        parts: list[str] = []
        if self.request_line:
            parts.append(self.request_line)
        if self.status is not None:
            parts.append(f"HTTP {self.status}")
        if self.error_code:
            parts.append(f"error={self.error_code}")
        if self.api_message:
            parts.append(f"message={_shorten(self.api_message)!r}")
        return ", ".join(parts)

    def __str__(self) -> str:
        details = self.details()
        return f"{self.message} ({details})" if details else self.message

    def __repr__(self) -> str:
        fields = [f"message={self.message!r}"]
        for name in ("status", "error_code", "api_message", "request_line"):
            value = getattr(self, name)
            if value is not None:
                fields.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(fields)})"


class ConfigError(CrowdTwistError):
    """Something the user must fix: credentials, base URL, TLS, redirects, unsupported mode."""

    failure_type: ClassVar[FailureType] = "config_error"


class TransientError(CrowdTwistError):
    """Retries were exhausted on 429 / 5xx / connection problems; running the sync later may work."""

    failure_type: ClassVar[FailureType] = "transient_error"


class UncertainOutcome(TransientError):
    """A non-idempotent request may have taken effect (read timeout, dropped connection, 5xx).

    It was not retried on purpose: CrowdTwist has no idempotency key for activity credits, so a
    blind retry could credit points twice. Callers should read back (activity history) or report.
    """


class Action(enum.Enum):
    """What to do with a CrowdTwist answer."""

    OK = "ok"
    RETRY = "retry"
    REJECT = "reject"
    CONFIG = "config"


class Bound(enum.Enum):
    """What bounds the retries of a failure: a count, or a time (a status that says "not now")."""

    COUNT = "max_retries"
    THROTTLE = "throttle_timeout"
    UNAVAILABLE = "unavailable_timeout"


class Pace(enum.Enum):
    """What an answer tells the shared rate budget."""

    CLIMB = "climb"  # the server took the request in its stride: the rate may climb back
    SLOW_DOWN = "slow_down"  # throttled: cut the rate (or pause everybody for a long Retry-After)
    HOLD = "hold"  # server trouble, or no answer: no sign either way


@dataclass(frozen=True)
class Meaning:
    """What a status says about the request, whatever the body: one meaning per status (tested).

    ``processed`` is False only when the answer proves the request was not run (408, 429), so that
    repeating it is safe even for an activity credit; any other answer may follow a request that was
    applied. ``bound`` is what limits its retries; ``pace`` what it tells the rate budget.
    """

    processed: bool = True
    bound: Bound = Bound.COUNT
    pace: Pace = Pace.CLIMB


#: An answer the server gave in its stride (2xx, 4xx): it ran (or refused) the request.
ANSWERED = Meaning()
#: 408: the server says it never ran the request; safe to repeat, counted against max_retries.
NOT_RUN = Meaning(processed=False)
#: 429: refused unrun; retried for as long as ``throttle_timeout``, and the budget slows down.
THROTTLED = Meaning(processed=False, bound=Bound.THROTTLE, pace=Pace.SLOW_DOWN)
#: 503 (maintenance, overload): may have been applied; waited out for ``unavailable_timeout``.
UNAVAILABLE = Meaning(bound=Bound.UNAVAILABLE, pace=Pace.HOLD)
#: Other 5xx and statuses no server should send: may have been applied, counted, no sign to speed up.
TROUBLE = Meaning(pace=Pace.HOLD)

#: The cause of a 3xx: the transport refuses it on its status line, never follows it, never reads it.
REDIRECT = "redirect"


@dataclass(frozen=True)
class Resolution:
    """Outcome of ``classify_response``: the action, an actionable hint, a tag and the status's meaning.

    ``reason`` is set exactly for REJECT answers: the reason class of the row in reject files and
    summaries. ``cause`` is a short tag for logs on the other answers (``throttled``,
    ``maintenance``, ``authentication``, ...); it never reaches a reject file.
    """

    action: Action
    hint: str
    reason: Reason | None = None
    cause: str | None = None
    meaning: Meaning = ANSWERED

    @property
    def did_work(self) -> bool:
        """Whether the server ran the request and answered it (success or a row-level refusal).

        Only these answers are returned to callers, and only their round trip is a round trip of the
        path (a 429 or a 503 may come from a gateway that refused at once).
        """
        return self.action in (Action.OK, Action.REJECT)


@dataclass(frozen=True)
class Rule:
    """One row of the table. Every condition that is not None must hold for the row to match.

    ``path_kind`` is ``"user"`` for user-scoped paths (``/users/`` in the path), ``"other"`` for the
    rest; a rule with a path_kind never matches when the caller did not pass a path. ``html`` and
    ``not_json`` describe the body: an HTML page, and a non-empty body that is not JSON.
    A REJECT row must name its ``reason``; the other rows may carry a ``cause`` tag instead.
    ``meaning`` is the status's: every row an answer of one status can reach carries the same
    (unit_tests/test_errors.py), so the status line alone tells it.
    A hint may name ``{location}``, the answer's redirect target (see :meth:`advice`).
    """

    statuses: Callable[[int], bool]
    action: Action
    hint: str
    reason: Reason | None = None
    cause: str | None = None
    meaning: Meaning = ANSWERED
    error_code: str | None = None
    message: re.Pattern[str] | None = None
    html: bool | None = None
    not_json: bool | None = None
    path_kind: str | None = None

    def __post_init__(self) -> None:
        if (self.action is Action.REJECT) != (self.reason is not None):
            raise ValueError("a REJECT rule needs a Reason, and only REJECT rules have one")
        if self.reason is not None and self.cause is not None:
            raise ValueError("a REJECT rule is tagged by its Reason, not by a cause")

    def matches(self, status: int, error_code: str | None, message: str | None, *, is_html: bool,
                path_kind: str | None, not_json: bool = False) -> bool:
        """Whether this row applies to the given answer."""
        if not self.statuses(status):
            return False
        if self.error_code is not None and (error_code or "").lower() != self.error_code:
            return False
        if self.message is not None and not self.message.search(message or ""):
            return False
        if self.html is not None and self.html != is_html:
            return False
        if self.not_json is not None and self.not_json != not_json:
            return False
        return self.path_kind is None or self.path_kind == path_kind

    def advice(self, location: str = "another URL") -> str:
        """The hint, with the redirect target (already redacted) where it names one."""
        return self.hint.replace("{location}", location)

    def resolution(self) -> Resolution:
        """The verdict on an answer this row matches."""
        return Resolution(self.action, self.advice(), reason=self.reason, cause=self.cause, meaning=self.meaning)


def _is(*codes: int) -> Callable[[int], bool]:
    return lambda status: status in codes


def _between(low: int, high: int) -> Callable[[int], bool]:
    return lambda status: low <= status <= high


def _text(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


_CLIENT_ERRORS = _between(400, 499)

_WRONG_BASE_URL = (
    "CrowdTwist answered 'not found' for a path that always exists: the API base URL is probably wrong. "
    "Use the base URL of your program, e.g. https://api123.crowdtwist.com (sandbox: https://sb-api123.crowdtwist.com)."
)

# Matched top to bottom; the first matching row wins. Message texts that CrowdTwist itself never
# documented (custom attributes, location, "Event already processed") come from the reference
# connector documentation and are NOT FOUND in Oracle's material (docs/crowdtwist-api-notes.md §2.6, §2.7, §3):
# they are matched case-insensitively and loosely so that small wording differences still classify.
RULES: tuple[Rule, ...] = (
    # CrowdTwist answers JSON (docs/crowdtwist-api-notes.md). A 2xx with an HTML or text body comes from
    # something in between (proxy, captive portal, maintenance front-end): it proves nothing about the
    # request, so it is never taken for success. An empty 2xx body (204) is fine.
    Rule(_between(200, 299), Action.RETRY,
         "CrowdTwist answered 'success' with a body that is not JSON (a proxy or maintenance page?); retrying.",
         cause="not_json", not_json=True),
    Rule(_between(200, 299), Action.OK, ""),
    # Refused on the status line (api/transport.py): following it would carry the credentials elsewhere.
    # HOLD: it never reaches the rate budget either.
    Rule(_between(300, 399), Action.CONFIG,
         "The API base URL redirects to {location}; use the final https URL as the base URL.", cause=REDIRECT,
         meaning=TROUBLE),
    # HMAC failures are NOT FOUND in Oracle's docs; 401 is what the reference mock returns (assumed).
    Rule(_is(401), Action.CONFIG,
         "CrowdTwist rejected the request timestamp. HMAC timestamps must be within 15 minutes of "
         "CrowdTwist's clock: synchronise this machine's clock (NTP) and retry.",
         cause="authentication", message=_text(r"timestamp|clock|expired|skew")),
    Rule(_is(401), Action.CONFIG,
         "CrowdTwist rejected the request signature (HMAC). Check the public and private HMAC keys in "
         "Control Center > Settings > API, that HMAC is enabled for this program, and that this "
         "machine's clock is correct.", cause="authentication"),
    Rule(_is(403), Action.CONFIG,
         "CrowdTwist refused the credentials: invalid API key, or the key has no permission for this "
         "endpoint. Check the key in Control Center > Settings > API and the base URL's client id.",
         cause="authentication"),
    Rule(_is(408), Action.RETRY, "CrowdTwist timed out waiting for the request; retrying.", cause="timeout",
         meaning=NOT_RUN),
    # CrowdTwist documents no 429 or Retry-After; treated as throttling like other connectors do.
    Rule(_is(429), Action.RETRY, "CrowdTwist is throttling requests; slowing down and retrying.", cause="throttled",
         meaning=THROTTLED),
    Rule(_is(503), Action.RETRY, "CrowdTwist is in a maintenance window (HTML 503 page); retrying later.",
         cause="maintenance", html=True, meaning=UNAVAILABLE),
    Rule(_is(503), Action.RETRY, "CrowdTwist had a server error; retrying.", cause="server_error",
         meaning=UNAVAILABLE),
    Rule(_is(500, 502, 504), Action.RETRY, "CrowdTwist had a server error; retrying.", cause="server_error",
         meaning=TROUBLE),
    Rule(_between(500, 599), Action.RETRY, "CrowdTwist had an unexpected server error; retrying.",
         cause="server_error", meaning=TROUBLE),
    Rule(_is(404), Action.CONFIG, _WRONG_BASE_URL, cause="wrong_base_url", html=True),
    # Record-level texts first, so that e.g. an "Invalid activity" 404 is not taken for a missing member.
    Rule(_CLIENT_ERRORS, Action.REJECT,
         "CrowdTwist says this event was already processed: the earlier request was accepted, so this "
         "row is a duplicate and nothing more is needed.",
         reason=Reason.DUPLICATE_EVENT, message=_text(r"event already processed")),
    Rule(_CLIENT_ERRORS, Action.REJECT,
         "A unique value (email_address, username or third_party_id) already belongs to a member. Use "
         "sync mode upsert or update to change existing members; if it is another member's value, fix the "
         "source data.",
         reason=Reason.ALREADY_TAKEN, message=_text(r"already taken")),
    Rule(_CLIENT_ERRORS, Action.REJECT,
         "This program has no custom attributes configured. Configure them in CrowdTwist Control Center, "
         "or set unmapped_fields=drop so unmapped columns are not sent as custom_data.",
         reason=Reason.CUSTOM_ATTRIBUTE, message=_text(r"no custom attributes setup")),
    Rule(_CLIENT_ERRORS, Action.REJECT,
         "A custom_data key is not a configured custom attribute. Names are case-sensitive and must match "
         "Control Center exactly; rename the column / field_mapping entry, or set unmapped_fields=drop.",
         reason=Reason.CUSTOM_ATTRIBUTE, message=_text(r"unrecognized attribute name")),
    Rule(_CLIENT_ERRORS, Action.REJECT,
         "CrowdTwist needs a location: a 5-digit postal_code for US members, or country_code with city_id "
         "(or city_name) elsewhere. Fix the row's location fields.",
         reason=Reason.LOCATION, message=_text(r"us zip code or country/city combo")),
    Rule(_CLIENT_ERRORS, Action.REJECT,
         "The activity_id is not an active activity of this program. Check the id in Control Center "
         "(GET /v2/activities lists the active ones).",
         reason=Reason.INVALID_ACTIVITY, message=_text(r"invalid activity")),
    # User Delete's 400 answers (docs/crowdtwist-api-notes.md §2.4, texts of Oracle's response-code table;
    # the error codes and the exact message wording are NOT FOUND, so matched loosely).
    Rule(_is(400), Action.REJECT,
         "CrowdTwist will not erase a member who is inactive but still has redeemable points. Remove the points "
         "first (delete_behaviour deactivate_and_remove_points, or Control Center), then erase the member again.",
         reason=Reason.CANNOT_ERASE, message=_text(r"inactive\b.*\bpoints")),
    Rule(_is(400), Action.REJECT,
         "CrowdTwist could not start erasing this member. Deactivate the member instead (delete_behaviour "
         "deactivate), or ask CrowdTwist support why the member cannot be deleted.",
         reason=Reason.CANNOT_ERASE, message=_text(r"unable to (initiate|start)? ?delet")),
    Rule(_is(404), Action.REJECT,
         "The member does not exist. Check that user_id matches the configured id_type (e.g. emails need "
         "id_type=email), or use sync mode upsert to create missing members.",
         reason=Reason.NOT_FOUND, message=_text(r"user does not exist")),
    Rule(_is(404), Action.CONFIG, _WRONG_BASE_URL, cause="wrong_base_url", path_kind="other"),
    Rule(_is(404), Action.REJECT,
         "The member was not found. Check that user_id matches the configured id_type, or use sync mode "
         "upsert to create missing members.", reason=Reason.NOT_FOUND),
    Rule(_is(400, 422), Action.REJECT,
         "CrowdTwist rejected a field value; see the API message, fix the source data or field mapping.",
         reason=Reason.VALIDATION),
    Rule(_CLIENT_ERRORS, Action.REJECT, "CrowdTwist rejected this row; see the API message for what to change.",
         reason=Reason.REJECTED_BY_API),
    # No server should send these; a status from 600 up is no sign the server copes either.
    Rule(_between(600, 999), Action.REJECT,
         "CrowdTwist answered with an unexpected HTTP status; this row was not written.",
         reason=Reason.REJECTED_BY_API, meaning=TROUBLE),
    Rule(lambda status: True, Action.REJECT,
         "CrowdTwist answered with an unexpected HTTP status; this row was not written.",
         reason=Reason.REJECTED_BY_API),
)


def _path_kind(path: str | None) -> str | None:
    if path is None:
        return None
    return "user" if "/users/" in path else "other"


def classify_response(
    status: int,
    error_code: str | None,
    message: str | None,
    *,
    is_html: bool = False,
    not_json: bool = False,
    path: str | None = None,
    rules: tuple[Rule, ...] = RULES,
) -> Resolution:
    """Map an HTTP status plus CrowdTwist's ``error`` / ``message`` to what the connector must do.

    ``path`` (the request path, optional) tells a missing member (404 on ``/users/...``) from a wrong
    base URL (404 on ``/v2/activities``). Without it a JSON 404 counts as a missing member.
    ``not_json`` says the body was present but not JSON (``is_html`` when it was an HTML page).
    """
    kind = _path_kind(path)
    for rule in rules:
        if rule.matches(status, error_code, message, is_html=is_html, path_kind=kind, not_json=not_json):
            return rule.resolution()
    raise AssertionError("the last rule matches every status")  # pragma: no cover


def status_rule(status: int, rules: tuple[Rule, ...] = RULES) -> Rule:
    """The first row of a status, read from the status line alone (before or without the body).

    Its ``meaning`` is the status's whatever the body says (every row of a status carries the same),
    which is what an answer whose body could not be used (too large, cut off) is judged by; its
    ``cause`` tells a redirect, refused before its body is read. Not a classification: the verdict
    on an answer is ``classify_response``'s.
    """
    for rule in rules:
        if rule.statuses(status):
            return rule
    raise AssertionError("the last rule matches every status")  # pragma: no cover


#: The causes of the table's rows for a server that failed (5xx): what the sync summary counts as
#: server errors.
SERVER_FAILURE_CAUSES = frozenset({"server_error", "maintenance"})


def is_server_error(status: int) -> bool:
    """Whether the table reads ``status`` as the server failing (for counters; not a verdict)."""
    return status_rule(status).cause in SERVER_FAILURE_CAUSES


def _shorten(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
