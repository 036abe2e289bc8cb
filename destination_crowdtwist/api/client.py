"""The CrowdTwist HTTP client: one Session, timeouts, the one retry loop, endpoint helpers.

Decisions that matter for correctness:

- The JSON body is serialized once to bytes and those bytes are sent, so the HMAC (computed by the
  auth hook from the PreparedRequest) covers exactly what goes on the wire.
- Retries happen only in ``CrowdTwistClient.request`` (urllib3 retries are off): each attempt is a new
  PreparedRequest, so the auth hook re-signs it with a fresh timestamp.
- CrowdTwist has no idempotency key for activity credits (docs/crowdtwist-api-notes.md §3). A request sent with
  ``idempotent=False`` is therefore never retried once it may have reached the server (read timeout,
  connection dropped after sending, any 5xx); ``UncertainOutcome`` is raised instead. Failures that
  prove nothing was sent (connection refused, DNS, connect timeout) and 429/408 are still retried.
- Redirects are never followed: a redirected request would carry the credentials to another URL.
- Every error carries a redacted request line: no api_key, no signature, user ids masked.
"""

from __future__ import annotations

import http.cookiejar
import json
import logging
import os
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, urlencode, urlsplit

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase
from requests.structures import CaseInsensitiveDict

from destination_crowdtwist.api.errors import (
    Action,
    ConfigError,
    CrowdTwistError,
    Resolution,
    TransientError,
    UncertainOutcome,
    classify_response,
    error_from_resolution,
)
from destination_crowdtwist.api.ratelimit import RateBudget
from destination_crowdtwist.api.redaction import MASK, redact_text, redact_url
from destination_crowdtwist.api.retry import RetryPolicy, backoff_delay, parse_retry_after

logger = logging.getLogger(__name__)

USER_AGENT = "airbyte-destination-crowdtwist/0.1.0"
# Non-JSON bodies (HTML maintenance pages, proxy errors) are kept only as a short preview.
TEXT_PREVIEW_CHARS = 500


@dataclass(frozen=True)
class ApiResponse:
    """One CrowdTwist answer that the client returns instead of raising (2xx and record-level 4xx).

    ``data`` is the parsed JSON (unknown keys are simply there; callers read what they need) or None;
    ``text`` is a short preview of a non-JSON body, None for JSON. ``request_line`` is redacted and
    masked, ready for error messages; ``endpoint`` is the template, e.g. ``"PUT /v2/users/{user_id}"``.
    """

    status: int
    data: Any
    headers: Mapping[str, str]
    text: str | None = None
    request_line: str = ""
    endpoint: str = ""
    safe_message: str | None = None  # error_message (or text preview) with secrets redacted, PII masked

    @property
    def ok(self) -> bool:
        """True for 2xx."""
        return 200 <= self.status < 300

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

    def classify(self) -> Resolution:
        """The table's verdict for this answer (see ``errors.classify_response``)."""
        path = self.endpoint.partition(" ")[2] or None
        return classify_response(
            self.status, self.error_code, self.error_message, is_html=self.is_html, path=path
        )

    def as_error(self) -> CrowdTwistError | None:
        """The matching exception (``RecordRejected`` for a record-level 4xx), or None for 2xx."""
        resolution = self.classify()
        if resolution.action is Action.OK:
            return None
        return error_from_resolution(
            resolution,
            status=self.status,
            error_code=self.error_code,
            api_message=self.safe_message,
            request_line=self.request_line,
        )


@dataclass(frozen=True)
class StatsSnapshot:
    """A consistent copy of the client's counters."""

    requests: int
    retries: int
    throttled: int
    connection_errors: int
    uncertain: int
    by_endpoint: dict[str, int]
    statuses: dict[int, int]


@dataclass
class ClientStats:
    """Thread-safe request counters (attempts, per endpoint template, per status, retries, 429s)."""

    requests: int = 0
    retries: int = 0
    throttled: int = 0
    connection_errors: int = 0
    uncertain: int = 0
    by_endpoint: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record_attempt(self, endpoint: str) -> None:
        """Count one request sent (every attempt counts)."""
        with self._lock:
            self.requests += 1
            self.by_endpoint[endpoint] += 1

    def record_status(self, status: int) -> None:
        """Count one answer by HTTP status (429 also counts as throttled)."""
        with self._lock:
            self.statuses[status] += 1
            if status == 429:
                self.throttled += 1

    def add(self, name: str) -> None:
        """Increment one of ``retries``, ``connection_errors``, ``uncertain``."""
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)

    def snapshot(self) -> StatsSnapshot:
        """All counters, read under the lock."""
        with self._lock:
            return StatsSnapshot(
                requests=self.requests,
                retries=self.retries,
                throttled=self.throttled,
                connection_errors=self.connection_errors,
                uncertain=self.uncertain,
                by_endpoint=dict(self.by_endpoint),
                statuses=dict(self.statuses),
            )


@dataclass(frozen=True)
class _NetworkFailure:
    """What went wrong below HTTP, and whether the request may have reached the server."""

    description: str
    maybe_sent: bool
    unreachable: bool = False


class CrowdTwistClient:
    """Thread-safe CrowdTwist API client shared by all worker threads.

    Args:
        base_url: e.g. ``https://api123.crowdtwist.com`` (no trailing slash needed).
        auth: ``signing.ApiKeyAuth`` or ``signing.HmacAuth`` (any requests AuthBase; its optional
            ``secrets`` attribute lists values to redact).
        timeout: (connect, read) seconds per attempt.
        max_retries: retries after the first attempt (ignored when ``retry_policy`` is given).
        pool_size: connections kept per host; set it to the number of worker threads.
        rate_budget: shared ``RateBudget``; ``acquire()`` before every attempt.
        clock / sleep / rand / wall_clock: injected for exact, fast tests. ``wall_clock`` (Unix time)
            turns an HTTP-date Retry-After into seconds when the answer has no Date header.
        session: a prepared ``requests.Session`` (tests); the client then does not mount adapters.
        mask_path: masks user ids in request lines. It receives the path as sent (percent-encoded).
            Defaults to ``mask_user_segment`` (keeps the first character of the id).
        mask_text: masks PII that CrowdTwist echoes in error messages (identity by default).
    """

    def __init__(
        self,
        base_url: str,
        auth: AuthBase,
        *,
        timeout: tuple[float, float] = (5.0, 30.0),
        max_retries: int = 3,
        pool_size: int = 10,
        rate_budget: RateBudget | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        rand: Callable[[], float] = random.random,
        retry_policy: RetryPolicy | None = None,
        session: requests.Session | None = None,
        mask_path: Callable[[str], str] | None = None,
        mask_text: Callable[[str], str] | None = None,
        wall_clock: Callable[[], float] = time.time,
        throttle_timeout: float = 600.0,
    ) -> None:
        parts = urlsplit(base_url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError("The API base URL must look like https://api123.crowdtwist.com")
        self._base_url = base_url.strip().rstrip("/")
        self._host = parts.hostname
        self._auth = auth
        self._secrets: tuple[str, ...] = tuple(getattr(auth, "secrets", ()))
        self._timeout = timeout
        self._policy = retry_policy or RetryPolicy(max_retries=max_retries)
        # A 429 means the request was refused, not applied: retrying it is always safe, so throttling
        # costs time, never rows. It is bounded by time (not by max_retries) so a program-wide rate
        # limit below our budget slows the sync down instead of failing it.
        self._throttle_timeout = throttle_timeout
        self._rate_budget = rate_budget
        self._clock = clock
        self._sleep = sleep
        self._rand = rand
        self._wall_clock = wall_clock
        self._mask_path = mask_path or mask_user_segment
        self._mask_text = mask_text or (lambda text: text)
        self.stats = ClientStats()
        self._owns_session = session is None
        if session is None:
            session = requests.Session()
            # max_retries=0: urllib3 must never resend a request on its own; it would replay the old
            # signature and timestamp, and could double an activity credit.
            adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
            session.mount("https://", adapter)
            session.mount("http://", adapter)
            # CrowdTwist sets cookies we do not need; sharing a cookie jar between threads only adds state.
            session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
        session.verify = True
        if self._owns_session:
            # Resolve proxy settings once: with trust_env on, requests re-reads the environment (proxies,
            # netrc, CA bundle) on every request, a measurable share of the per-row CPU.
            session.proxies.update(requests.utils.get_environ_proxies(self._base_url))
            ca_bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
            if ca_bundle:
                session.verify = ca_bundle  # a corporate CA, as requests would have read it
            session.trust_env = False
        session.headers["User-Agent"] = USER_AGENT
        self._session = session

    def __repr__(self) -> str:
        return f"CrowdTwistClient(base_url={self._base_url!r}, auth={self._auth!r})"

    def close(self) -> None:
        """Close the connection pool (only if this client created the session)."""
        if self._owns_session:
            self._session.close()

    def __enter__(self) -> CrowdTwistClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def request_totals(self) -> tuple[int, int]:
        """``(requests sent, 429 answers)`` for progress lines."""
        snap = self.stats.snapshot()
        return snap.requests, snap.throttled

    # -- the one retry loop ---------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        idempotent: bool = True,
        endpoint: str | None = None,
    ) -> ApiResponse:
        """Send one logical request, retrying transient failures; return 2xx and record-level 4xx.

        ``path`` starts with ``/`` and is already percent-encoded. ``body`` (if not None) is sent as
        compact JSON. ``endpoint`` is the template used for statistics (defaults to method + path).
        Raises ``ConfigError``, ``TransientError`` or ``UncertainOutcome`` (see the module docstring).
        """
        method = method.upper()
        endpoint = endpoint or f"{method} {path}"
        url = self._base_url + path
        headers = {"Accept": "application/json"}
        data: bytes | None = None
        if body is not None:
            # Serialized once; these exact bytes are signed and sent. allow_nan=False: NaN is not JSON.
            text = json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
            data = text.encode("utf-8")
            headers["Content-Type"] = "application/json"
        line = self._request_line(method, path, params)
        template_path = endpoint.partition(" ")[2] or path
        retries = 0
        throttled = 0
        throttled_since: float | None = None
        while True:
            if self._rate_budget is not None:
                self._rate_budget.acquire()
            self.stats.record_attempt(endpoint)
            retry_after: float | None = None
            try:
                response = self._session.request(
                    method,
                    url,
                    params=params,
                    data=data,
                    headers=headers,
                    auth=self._auth,
                    timeout=self._timeout,
                    allow_redirects=False,
                )
            except requests.RequestException as exc:
                failure = self._network_failure(exc, line)
                self.stats.add("connection_errors")
                if failure.maybe_sent and not idempotent:
                    self.stats.add("uncertain")
                    raise UncertainOutcome(
                        f"CrowdTwist may have applied this request, but no complete answer arrived "
                        f"({failure.description}). It was not retried, so it is never applied twice; "
                        "verify it (e.g. the member's activity history) before sending it again.",
                        request_line=line,
                    ) from None
                if failure.unreachable:
                    message = (
                        f"Could not reach the CrowdTwist host {self._host} ({failure.description}). Check "
                        "the API base URL, DNS and firewall, then try again."
                    )
                else:
                    message = f"CrowdTwist did not answer ({failure.description}); try again later."
                last: CrowdTwistError = TransientError(message, request_line=line)
            else:
                result = self._handle_response(response, method, line, template_path, idempotent)
                if isinstance(result, ApiResponse):
                    return result
                last, retry_after = result
            delay: float | None
            if last.status == 429:
                throttled += 1
                now = self._clock()
                throttled_since = now if throttled_since is None else throttled_since
                waited = now - throttled_since
                if waited >= self._throttle_timeout:
                    delay = None
                else:
                    delay = retry_after if retry_after is not None else backoff_delay(
                        min(throttled, 6), base=self._policy.base, cap=self._policy.cap, rand=self._rand
                    )
                    delay = min(delay, self._throttle_timeout - waited)
                retries_label = throttled
            else:
                retries += 1
                delay = self._policy.next_delay(retries, retry_after=retry_after, rand=self._rand)
                retries_label = retries
            if delay is None:
                raise type(last)(
                    f"{last.message} Gave up after {retries_label} attempts.",
                    status=last.status,
                    error_code=last.error_code,
                    api_message=last.api_message,
                    request_line=line,
                ) from None
            self.stats.add("retries")
            if last.status == 429:
                logger.debug("Throttled (429) %s; retrying in %.2fs", line, delay)
            else:
                logger.info(
                    "Retrying %s in %.2fs (retry %d of %d): %s",
                    line, delay, retries, self._policy.max_retries, last,
                )
            self._sleep(delay)

    def _handle_response(
        self, response: requests.Response, method: str, line: str, template_path: str, idempotent: bool
    ) -> ApiResponse | tuple[CrowdTwistError, float | None]:
        """Return the ApiResponse, raise, or return (error, retry_after) when the answer is retryable."""
        status = response.status_code
        self.stats.record_status(status)
        if 300 <= status < 400:
            target = response.headers.get("Location", "(no Location header)")
            location = redact_text(redact_url(target), self._secrets)
            response.close()
            # Never follow: the redirected request would carry the api_key / signature elsewhere.
            raise ConfigError(
                f"The API base URL redirects to {location}; use the final https URL as the base URL.",
                status=status,
                request_line=line,
            )
        api = self._api_response(response, line, method + " " + template_path)
        api_message = api.safe_message
        resolution = classify_response(
            status, api.error_code, api.error_message, is_html=api.is_html, path=template_path
        )
        retry_after: float | None = None
        if status == 429:
            retry_after = parse_retry_after(response.headers.get("Retry-After"), self._server_now(response))
            if self._rate_budget is not None:
                self._rate_budget.on_throttled(retry_after)
        elif status < 500 and self._rate_budget is not None:
            # 5xx is no sign that we may speed up again; an overloaded server answers 503.
            self._rate_budget.on_success()
        if resolution.action in (Action.OK, Action.REJECT):
            return api
        context: dict[str, Any] = {
            "status": status,
            "error_code": api.error_code,
            "api_message": api_message,
            "request_line": line,
        }
        if resolution.action is Action.CONFIG:
            raise ConfigError(resolution.hint, **context)
        # RETRY. 408 and 429 mean the server did not process the request, so they are safe to repeat
        # even for a credit; any 5xx might have come after the credit was applied.
        if not idempotent and status not in (408, 429):
            self.stats.add("uncertain")
            raise UncertainOutcome(
                f"CrowdTwist answered HTTP {status} to a request that may already have been applied. It was "
                "not retried, so it is never applied twice; verify it before sending it again.",
                **context,
            )
        # The hint's first clause says what happened ("CrowdTwist is throttling requests; retrying").
        what = resolution.hint.split(";")[0].rstrip(".")
        return TransientError(f"{what}; try the sync again later.", **context), retry_after

    def _api_response(self, response: requests.Response, line: str, endpoint: str) -> ApiResponse:
        raw = response.content
        content_type = response.headers.get("Content-Type", "")
        data: Any = None
        text: str | None = None
        if raw:
            try:
                data = json.loads(raw)
            except ValueError:
                text = raw[: TEXT_PREVIEW_CHARS * 4].decode("utf-8", "replace")[:TEXT_PREVIEW_CHARS]
        if _looks_like_html(content_type, text):
            text = _html_text(text or "")
        message = data.get("message") if isinstance(data, dict) else None
        raw_message = message if isinstance(message, str) else text
        safe = self._mask_text(redact_text(raw_message, self._secrets)) if raw_message is not None else None
        return ApiResponse(
            status=response.status_code,
            data=data,
            headers=CaseInsensitiveDict(response.headers),
            text=text,
            request_line=line,
            endpoint=endpoint,
            safe_message=safe,
        )

    def _server_now(self, response: requests.Response) -> float:
        """Unix time for an HTTP-date Retry-After: the server's Date header avoids local clock skew."""
        date = response.headers.get("Date")
        if date:
            server_now = parse_retry_after(date, 0.0)
            if server_now is not None:
                return server_now
        return self._wall_clock()

    def _network_failure(self, exc: requests.RequestException, line: str) -> _NetworkFailure:
        """Classify a requests exception; raise ConfigError for TLS and URL problems."""
        if isinstance(exc, requests.exceptions.SSLError):
            raise ConfigError(
                f"TLS handshake with {self._host} failed ({_root_cause(exc)}): the certificate could not be "
                "verified or the host does not speak TLS. Check that the API base URL is the https URL of "
                "your CrowdTwist API host.",
                request_line=line,
            ) from None
        if isinstance(exc, requests.exceptions.InvalidURL | requests.exceptions.MissingSchema
                      | requests.exceptions.InvalidSchema):
            raise ConfigError(
                f"The API base URL is not a valid URL ({type(exc).__name__}).", request_line=line
            ) from None
        cause = _root_cause(exc)
        if isinstance(exc, requests.exceptions.ConnectTimeout):
            return _NetworkFailure(f"connect timeout after {self._timeout[0]:g}s", maybe_sent=False,
                                   unreachable=True)
        if isinstance(exc, requests.exceptions.ReadTimeout):
            return _NetworkFailure(f"no answer within {self._timeout[1]:g}s", maybe_sent=True)
        if isinstance(exc, requests.exceptions.ConnectionError) and _never_connected(exc):
            return _NetworkFailure(f"connection failed: {cause}", maybe_sent=False, unreachable=True)
        # RemoteDisconnected / ProtocolError / ConnectionResetError / ChunkedEncodingError: the request
        # bytes may have been delivered and processed before the connection went away.
        return _NetworkFailure(f"connection dropped: {cause}", maybe_sent=True)

    def _request_line(self, method: str, path: str, params: Mapping[str, Any] | None) -> str:
        query = f"?{urlencode(params, doseq=True)}" if params else ""
        return f"{method} {redact_url(self._mask_path(path) + query)}"

    # -- endpoint helpers -------------------------------------------------------------------------

    def list_activities(self) -> list[dict[str, Any]]:
        """``GET /v2/activities``: the program's active activities (the connection check)."""
        response = self.request("GET", "/v2/activities", endpoint="GET /v2/activities")
        error = response.as_error()
        if error is not None:
            raise ConfigError(
                "CrowdTwist refused GET /v2/activities, which every program allows: check the base URL and "
                "the API key permissions. " + error.message,
                status=error.status,
                error_code=error.error_code,
                api_message=error.api_message,
                request_line=error.request_line,
            )
        if not isinstance(response.data, list):
            raise ConfigError(
                "GET /v2/activities did not return a JSON list of activities; is the base URL a CrowdTwist "
                "API host (e.g. https://api123.crowdtwist.com)?",
                status=response.status,
                request_line=response.request_line,
            )
        return [item for item in response.data if isinstance(item, dict)]

    def get_user(self, user_id: str, id_type: str) -> ApiResponse:
        """``GET /v2/users/{user_id}?id_type=...``: the member profile (404 when unknown)."""
        return self.request(
            "GET", _user_path(user_id), params={"id_type": id_type}, endpoint="GET /v2/users/{user_id}"
        )

    def create_user(self, payload: Mapping[str, Any]) -> ApiResponse:
        """``POST /v2/users``: create a member; 200 with the full profile.

        Treated as retry-safe: CrowdTwist refuses a second create of the same email_address /
        username / third_party_id with "already taken", so a retry cannot make two members.
        """
        return self.request("POST", "/v2/users", body=dict(payload), endpoint="POST /v2/users")

    def update_user(self, user_id: str, id_type: str, payload: Mapping[str, Any]) -> ApiResponse:
        """``PUT /v2/users/{user_id}?id_type=...``: partial update; repeating it is harmless."""
        return self.request(
            "PUT",
            _user_path(user_id),
            params={"id_type": id_type},
            body=dict(payload),
            endpoint="PUT /v2/users/{user_id}",
        )

    def credit_activity(self, user_id: str, id_type: str, payload: Mapping[str, Any]) -> ApiResponse:
        """``POST /v2/users/{user_id}/activities?id_type=...``: credit points, never blindly retried.

        There is no idempotency key (docs/crowdtwist-api-notes.md §3), so this raises ``UncertainOutcome`` when
        the credit may have landed without an answer.
        """
        return self.request(
            "POST",
            _user_path(user_id) + "/activities",
            params={"id_type": id_type},
            body=dict(payload),
            idempotent=False,
            endpoint="POST /v2/users/{user_id}/activities",
        )

    def activity_history(self, user_id: str, id_type: str, date_start: int, date_end: int) -> ApiResponse:
        """``GET /v2.1/users/{user_id}/activity_history`` between two epoch-second dates (read-back)."""
        return self.request(
            "GET",
            f"/v2.1/users/{quote(str(user_id), safe='')}/activity_history",
            params={"id_type": id_type, "date_start": int(date_start), "date_end": int(date_end)},
            endpoint="GET /v2.1/users/{user_id}/activity_history",
        )


_USER_SEGMENT = re.compile(r"(/users/)([^/?]+)")


def mask_user_segment(path: str, mask_value: Callable[[str], str] | None = None) -> str:
    """``/v2/users/alice%40x.com/activities`` -> ``/v2/users/a***/activities`` (user id masked).

    ``mask_value`` receives the decoded id; the default keeps only its first character.
    """
    masker = mask_value or (lambda value: value[:1] + MASK)
    return _USER_SEGMENT.sub(lambda m: m.group(1) + masker(unquote(m.group(2))), path)


def _user_path(user_id: str) -> str:
    # safe="": "/" "@" "+" and the like in an id must not change the path structure.
    return "/v2/users/" + quote(str(user_id), safe="")


def _looks_like_html(content_type: str, text: str | None) -> bool:
    if "html" in content_type.lower():
        return True
    return text is not None and text.lstrip()[:1] == "<"


_TAGS = re.compile(r"<[^>]+>")


def _html_text(html: str) -> str:
    """A one-line text preview of an HTML page (title and visible words)."""
    return " ".join(_TAGS.sub(" ", html).split())[:TEXT_PREVIEW_CHARS]


def _root_cause(exc: BaseException) -> str:
    """The innermost exception's class name: informative, and free of URLs (which may hold the api_key)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    name = type(exc).__name__
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        name = type(current).__name__
        reason = getattr(current, "reason", None)
        nxt: BaseException | None = None
        if isinstance(reason, BaseException):
            nxt = reason
        else:
            nxt = next((arg for arg in getattr(current, "args", ()) if isinstance(arg, BaseException)), None)
        current = nxt or current.__cause__ or current.__context__
    return name


def _never_connected(exc: requests.exceptions.ConnectionError) -> bool:
    """True when the TCP connection was never established (refused, DNS, connect timeout)."""
    current: BaseException | None = exc
    seen: set[int] = set()
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        # urllib3 2: NameResolutionError < NewConnectionError < ConnectTimeoutError.
        if isinstance(current, urllib3.exceptions.ConnectTimeoutError):
            return True
        if isinstance(current, urllib3.exceptions.ProtocolError):
            return False
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            current = reason
            continue
        current = next((arg for arg in getattr(current, "args", ()) if isinstance(arg, BaseException)), None)
    return False
