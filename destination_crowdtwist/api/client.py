"""The CrowdTwist HTTP client: one Session, timeouts, the one retry loop, endpoint helpers.

Decisions that matter for correctness:

- The JSON body is serialized once to bytes and those bytes are sent, so the HMAC (computed by the
  auth hook from the PreparedRequest) covers exactly what goes on the wire.
- Retries happen only in ``CrowdTwistClient.request`` (urllib3 retries are off): each attempt is a new
  PreparedRequest, so the auth hook re-signs it with a fresh timestamp. Whether and when to retry is
  decided by the pure ``retry.decide`` (its module docstring has the table).
- CrowdTwist has no idempotency key for activity credits (docs/crowdtwist-api-notes.md §3). A request sent
  with ``idempotent=False`` is therefore never retried once it may have reached the server (read
  timeout, connection dropped after sending, any 5xx, an unusable 2xx); ``UncertainOutcome`` is raised
  instead. Failures that prove nothing was sent (connection refused, DNS, connect timeout) and
  429/408 are still retried.
- Every answer is classified once, by the error table (``errors.classify_response``), when its
  ``ApiResponse`` is built; callers read ``response.resolution`` and ``response.rejection()``.
- A hostile or broken server cannot stall or flood a worker: bodies are streamed and capped
  (``max_body_bytes``), each attempt has one total deadline (``attempt_deadline``) from connecting to
  the last byte of the body, status line and headers included, on top of the socket timeouts, and a
  Retry-After is honoured only up to ``retry_after_cap``. requests and urllib3 have no total
  timeout and a server trickling its status line at a byte a second never trips the read timeout,
  so a watchdog thread (``api/deadline.py``) shuts the attempt's socket down at its deadline.
- A stopping sync is not held up by waits: :meth:`CrowdTwistClient.stop` wakes every retry pause
  (a 429's Retry-After can be a minute) and lets no new attempt start; :meth:`CrowdTwistClient.abort`
  also cuts the attempts still on the wire (the end of SIGTERM's grace period).
- Redirects are never followed: a redirected request would carry the credentials to another URL.
- Every error carries a redacted request line: no api_key, no signature, user ids masked.
"""

from __future__ import annotations

import dataclasses
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
from urllib.parse import quote, urlencode, urlsplit

import requests
import urllib3.exceptions
from requests.auth import AuthBase
from requests.structures import CaseInsensitiveDict

from destination_crowdtwist.api.concurrency import InFlightGate
from destination_crowdtwist.api.deadline import Watch, Watchdog, WatchedAdapter, current_watch
from destination_crowdtwist.api.errors import (
    REDIRECT,
    Action,
    Bound,
    ConfigError,
    Pace,
    Resolution,
    TransientError,
    UncertainOutcome,
    classify_response,
    status_rule,
)
from destination_crowdtwist.api.ratelimit import RateBudget
from destination_crowdtwist.api.redaction import mask_user_segment, redact_text, redact_url
from destination_crowdtwist.api.retry import (
    LOST,
    UNREACHABLE,
    GiveUp,
    Outcome,
    Retry,
    RetryPolicy,
    Tally,
    answered,
    decide,
    parse_retry_after,
)
from destination_crowdtwist.records.rejection import Rejection, server

__all__ = ["ApiResponse", "ClientStats", "CrowdTwistClient", "StatsSnapshot", "mask_user_segment"]

# A child of the "airbyte" logger: the CDK configures only that one (INFO, console handler on the
# root), so a module-named logger would stay at WARNING and retries would never show in a sync.
logger = logging.getLogger("airbyte.crowdtwist")

USER_AGENT = "airbyte-destination-crowdtwist/0.3.0"
# Non-JSON bodies (HTML maintenance pages, proxy errors) are kept only as a short preview.
TEXT_PREVIEW_CHARS = 500
# CrowdTwist answers are small JSON documents (a profile, a history page); a body above this is not
# one of them, and holding it would only cost memory in every worker.
MAX_BODY_BYTES = 1_000_000
# Bytes asked for per read of the body; read1 returns after a single socket read, whatever arrived.
_READ_CHUNK = 64 * 1024
# The longest a request waits out maintenance (503) by default; see ``unavailable_timeout``.
_UNAVAILABLE_TIMEOUT = 300.0

# Placeholder meaning "classify from the other fields" (a frozen dataclass default must be a value).
_UNCLASSIFIED = Resolution(Action.OK, "", cause="unclassified")


@dataclass(frozen=True)
class ApiResponse:
    """One CrowdTwist answer that the client returns instead of raising (2xx and record-level 4xx).

    ``data`` is the parsed JSON (unknown keys are simply there; callers read what they need) or None;
    ``text`` is a short preview of a non-JSON body, None for JSON. ``request_line`` is redacted and
    masked, ready for error messages; ``endpoint`` is the template, e.g. ``"PUT /v2/users/{user_id}"``.
    ``resolution`` is the error table's verdict, computed once when the answer is built (pass one
    only to stage an answer in a test); the client returns only OK and REJECT answers.
    """

    status: int
    data: Any
    headers: Mapping[str, str]
    text: str | None = None
    request_line: str = ""
    endpoint: str = ""
    safe_message: str | None = None  # error_message (or text preview) with secrets redacted, PII masked
    resolution: Resolution = _UNCLASSIFIED
    # True when an earlier attempt of the same logical request may have reached CrowdTwist (no
    # complete answer, or a 5xx): e.g. "already taken" may then be our own create.
    after_uncertain: bool = False

    def __post_init__(self) -> None:
        if self.resolution is _UNCLASSIFIED:
            path = self.endpoint.partition(" ")[2] or None
            verdict = classify_response(
                self.status, self.error_code, self.error_message,
                is_html=self.is_html, not_json=self.text is not None, path=path,
            )
            object.__setattr__(self, "resolution", verdict)

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

    def record_status(self, status: int, *, throttled: bool) -> None:
        """Count one answer by HTTP status (and as throttled when its row says so: 429)."""
        with self._lock:
            self.statuses[status] += 1
            if throttled:
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
class _Wire:
    """One logical request as ``request`` prepares it once; every attempt sends exactly this."""

    method: str
    url: str
    params: Mapping[str, Any] | None
    data: bytes | None  # the exact bytes that are signed and sent
    headers: Mapping[str, str]
    line: str  # the request line, secrets masked, for errors
    template: str  # e.g. "PUT /v2/users/{user_id}", for the answer's classification
    endpoint: str  # the statistics key


@dataclass(frozen=True)
class _Failure:
    """A failed attempt: what the retry decision needs, and the errors to raise if it stops here."""

    outcome: Outcome
    # What happened, without advice: the retry log line says it is retrying, so "try again later"
    # belongs only to the error raised when retries end (with the give-up reason and ``advice``).
    error: TransientError
    uncertain: str  # the UncertainOutcome message, when the request may have been applied
    advice: str = "Try the sync again later."


class CrowdTwistClient:
    """Thread-safe CrowdTwist API client shared by all worker threads.

    Args:
        base_url: e.g. ``https://api123.crowdtwist.com`` (no trailing slash needed).
        auth: ``signing.ApiKeyAuth`` or ``signing.HmacAuth`` (any requests AuthBase; its optional
            ``secrets`` attribute lists values to redact).
        timeout: (connect, read) seconds per attempt; read is the longest silence between two packets.
        max_retries: retries after the first attempt for failures bounded by count (5xx, network).
        pool_size: connections kept per host; set it to the number of worker threads.
        rate_budget: shared ``RateBudget``; ``acquire()`` before every attempt.
        in_flight: shared ``InFlightGate``; every attempt passes it (before the budget, so a place is
            never held while a paced slot goes unused) and reports its round-trip time to it.
        clock / sleep / rand / wall_clock: injected for exact, fast tests. ``wall_clock`` (Unix time)
            turns an HTTP-date Retry-After into seconds when the answer has no Date header. Without
            ``sleep``, a retry pause is a wait that :meth:`stop` ends at once.
        session: a prepared ``requests.Session`` (tests); the client then does not mount adapters.
        mask_path: masks user ids in request lines. It receives the path as sent (percent-encoded).
            Defaults to ``mask_user_segment`` (keeps the first character of the id).
        mask_text: masks PII that CrowdTwist echoes in error messages (identity by default).
        throttle_timeout: how long one request keeps retrying 429s (time, not max_retries).
        unavailable_timeout: how long one request keeps waiting out 503 / maintenance answers; None
            means the smaller of ``throttle_timeout`` and 300 s, so a caller that will not wait out
            throttling (``check``) does not wait out maintenance either.
        retry_after_cap: the longest single wait a Retry-After header can ask for (also what the
            rate budget is told), so ``Retry-After: 3600`` cannot park every worker for an hour.
        attempt_deadline: total seconds for one attempt, from connecting to the last body byte (status
            line and headers included); None means connect + read timeout. A server trickling bytes
            slower than that counts as a read timeout. Enforced by a watchdog that shuts the socket
            down, so only with the client's own session (not an injected one).
        max_body_bytes: the largest answer body read; a larger one counts as a server error.
        stopping: the event :meth:`stop` sets; share it with the waits of other parts (the rate budget's
            ``sleep``) so that they end when the sync stops too.
        retry_policy: the whole policy, when the knobs above are not enough (tests); when given,
            ``max_retries``, ``throttle_timeout``, ``unavailable_timeout`` and ``retry_after_cap``
            are ignored.
    """

    def __init__(  # noqa: PLR0913 - keyword options, most of them injected clock, sleep and limits
        self,
        base_url: str,
        auth: AuthBase,
        *,
        timeout: tuple[float, float] = (5.0, 30.0),
        max_retries: int = 3,
        pool_size: int = 10,
        rate_budget: RateBudget | None = None,
        in_flight: InFlightGate | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] | None = None,
        rand: Callable[[], float] = random.random,
        retry_policy: RetryPolicy | None = None,
        session: requests.Session | None = None,
        mask_path: Callable[[str], str] | None = None,
        mask_text: Callable[[str], str] | None = None,
        wall_clock: Callable[[], float] = time.time,
        throttle_timeout: float = 600.0,
        unavailable_timeout: float | None = None,
        retry_after_cap: float = 60.0,
        attempt_deadline: float | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
        stopping: threading.Event | None = None,
    ) -> None:
        parts = urlsplit(base_url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError("The API base URL must look like https://api123.crowdtwist.com")
        if max_body_bytes < 1:
            raise ValueError("max_body_bytes must be positive")
        self._base_url = base_url.strip().rstrip("/")
        self._host = parts.hostname
        self._auth = auth
        self._secrets: tuple[str, ...] = tuple(getattr(auth, "secrets", ()))
        self._timeout = timeout
        if retry_policy is None:
            # A 429 or 503 means "not now", not "failed": those are bounded by time (not by max_retries)
            # so a rate limit below our budget or a maintenance window slows the sync down instead of
            # failing it.
            if unavailable_timeout is None:
                unavailable_timeout = min(throttle_timeout, _UNAVAILABLE_TIMEOUT)
            retry_policy = RetryPolicy(
                max_retries=max_retries,
                retry_after_cap=retry_after_cap,
                throttle_timeout=throttle_timeout,
                unavailable_timeout=unavailable_timeout,
            )
        self._policy = retry_policy
        self._attempt_deadline = sum(timeout) if attempt_deadline is None else attempt_deadline
        if self._attempt_deadline <= 0:
            raise ValueError("attempt_deadline must be positive")
        self._max_body_bytes = max_body_bytes
        self._rate_budget = rate_budget
        self._in_flight = in_flight
        self._pausing = 0  # requests sleeping before a retry
        self._pausing_lock = threading.Lock()
        self._clock = clock
        self._stopping = stopping if stopping is not None else threading.Event()
        self._sleep = sleep if sleep is not None else self._stoppable_sleep
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
            adapter = WatchedAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
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
        self._watchdog = Watchdog()

    def __repr__(self) -> str:
        return f"CrowdTwistClient(base_url={self._base_url!r}, auth={self._auth!r})"

    def close(self) -> None:
        """Close the connection pool (only if this client created the session) and stop the watchdog."""
        self._watchdog.close()
        if self._owns_session:
            self._session.close()

    def stop(self) -> None:
        """The sync is stopping: retry pauses end now and no new attempt starts (each such request raises
        ``TransientError``); attempts on the wire go on until they end (see :meth:`abort`).
        """
        self._stopping.set()

    def abort(self) -> None:
        """:meth:`stop`, and cut the attempts on the wire (their requests may have landed: uncertain)."""
        self._stopping.set()
        self._watchdog.abort_all()

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` or :meth:`abort` was called."""
        return self._stopping.is_set()

    def wait(self, seconds: float) -> None:
        """Sleep up to ``seconds``; return as soon as the sync stops (writers' waits use it)."""
        self._stopping.wait(max(0.0, seconds))

    _stoppable_sleep = wait

    def _raise_if_stopping(self, line: str) -> None:
        if self._stopping.is_set():
            raise TransientError(
                "The sync is stopping, so this request was not sent (again); the next attempt sends it.",
                request_line=line,
            )

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
        template = f"{method} {endpoint.partition(' ')[2] or path}"
        wire = _Wire(method, url, params, data, headers, line, template, endpoint)
        tally = Tally()
        first_failure: float | None = None
        maybe_applied = False
        while True:
            result = self._gated_attempt(wire)
            if isinstance(result, ApiResponse):
                return dataclasses.replace(result, after_uncertain=True) if maybe_applied else result
            maybe_applied = maybe_applied or result.outcome.processed
            now = self._clock()
            first_failure = now if first_failure is None else first_failure
            decision = decide(
                result.outcome, tally, now - first_failure,
                idempotent=idempotent, policy=self._policy, rand=self._rand,
            )
            error = result.error
            if isinstance(decision, Retry):
                self.stats.add("retries")
                # Throttling is routine under a tight rate limit; the rate budget reports it in aggregate.
                level = logging.DEBUG if result.outcome.bound is Bound.THROTTLE else logging.INFO
                logger.log(level, "Retrying %s in %.2fs (%s): %s", line, decision.delay, decision.note, error)
                with self._pausing_lock:
                    self._pausing += 1
                try:
                    self._sleep(decision.delay)  # ends early when the sync stops
                finally:
                    with self._pausing_lock:
                        self._pausing -= 1
                tally = decision.tally
                continue
            context: dict[str, Any] = {
                "status": error.status,
                "error_code": error.error_code,
                "api_message": error.api_message,
                "request_line": line,
            }
            if isinstance(decision, GiveUp):
                raise TransientError(f"{error.message}. {decision.reason} {result.advice}", **context) from None
            self.stats.add("uncertain")
            raise UncertainOutcome(result.uncertain, **context) from None

    def _gated_attempt(self, wire: _Wire) -> ApiResponse | _Failure:
        """One attempt inside the in-flight gate and the rate budget; its round trip feeds the gate."""
        self._raise_if_stopping(wire.line)
        gate = self._in_flight
        if gate is not None:
            gate.enter()
        rtt: float | None = None
        try:
            if self._rate_budget is not None:
                self._rate_budget.acquire()
            # A stop while waiting for a place or a send slot: nothing was sent, nothing is.
            self._raise_if_stopping(wire.line)
            self.stats.record_attempt(wire.endpoint)
            sent = self._clock()
            result = self._attempt(wire)
            # Only an answer that did the work (2xx, or a record-level 4xx) is a round trip of the
            # path: a timeout would teach the gate a 30 s "RTT", and a 429, a 503 or a 5xx may come
            # from a gateway that refused at once (issue 20: fast 429s read the real round trip as
            # queueing and held the in-flight target far below what the limit allows).
            if isinstance(result, ApiResponse):
                rtt = self._clock() - sent
            return result
        finally:
            if gate is not None:
                gate.leave(rtt)

    def workers_wanted(self) -> int:
        """Worker threads that keep the in-flight gate busy: its capacity, plus the requests now
        pausing before a retry (a 429's Retry-After holds a thread, not a place in flight).
        """
        target = self._in_flight.capacity if self._in_flight is not None else 1
        with self._pausing_lock:
            return target + self._pausing

    def flow_status(self) -> str:
        """The in-flight target, smoothed RTT and paced rate, for progress lines (empty without them)."""
        parts = []
        if self._in_flight is not None:
            parts.append(self._in_flight.status())
        if self._rate_budget is not None:
            parts.append(self._rate_budget.status())
        return "; ".join(parts)

    def _attempt(self, wire: _Wire) -> ApiResponse | _Failure:
        """Send once: the answer (OK or REJECT), a failure to decide on, or raise ConfigError."""
        deadline = self._clock() + self._attempt_deadline
        # The watchdog's deadline covers everything, from connecting to the last byte: a status line or
        # headers trickled a byte at a time never trip the socket's read timeout.
        with self._watchdog.watching(Watch(time.monotonic() + self._attempt_deadline)) as watch:
            return self._send(wire, deadline, watch)

    def _send(self, wire: _Wire, deadline: float, watch: Watch) -> ApiResponse | _Failure:
        try:
            response = self._session.request(
                wire.method,
                wire.url,
                params=wire.params,
                data=wire.data,
                headers=wire.headers,
                auth=self._auth,
                timeout=self._timeout,
                allow_redirects=False,
                # Streamed, so the body is read under the size cap and the attempt deadline.
                stream=True,
            )
        except requests.RequestException as exc:
            self.stats.add("connection_errors")
            if watch.was_cut:
                return self._cut_failure(watch, wire.line)
            return self._network_failure(exc, wire.line)
        try:
            result = self._answer(response, wire.line, wire.template, deadline)
            if watch.was_cut and isinstance(result, ApiResponse):
                # Cut while the body was read: a body without a length may look complete but is not.
                self.stats.add("connection_errors")
                return self._cut_failure(watch, wire.line)
            return result
        finally:
            # After a complete read the connection is already back in the pool; otherwise this drops it,
            # so a half-read answer never reaches the next request on a reused connection.
            response.close()

    def _cut_failure(self, watch: Watch, line: str) -> _Failure:
        if watch.aborted:
            return self._lost("the sync is stopping and the request was cut off", line)
        return self._lost(f"no complete answer within {self._attempt_deadline:g}s", line)

    def _answer(self, response: requests.Response, line: str, endpoint: str, deadline: float) -> ApiResponse | _Failure:
        status = response.status_code
        # The status line alone: a redirect, what bounds its retries, what it tells the budget.
        head = status_rule(status)
        self.stats.record_status(status, throttled=head.meaning.pace is Pace.SLOW_DOWN)
        if head.cause == REDIRECT:
            target = response.headers.get("Location", "(no Location header)")
            location = redact_text(redact_url(target), self._secrets)
            # Never follow: the redirected request would carry the api_key / signature elsewhere.
            raise ConfigError(head.advice(location), status=status, request_line=line)
        retry_after: float | None = None
        if head.meaning.bound is not Bound.COUNT:
            # Honoured only where the wait is bounded by time (429, 503); capped as the decision caps it.
            parsed = parse_retry_after(response.headers.get("Retry-After"), self._server_now(response))
            retry_after = None if parsed is None else self._policy.honoured_retry_after(parsed)
        if self._rate_budget is not None:
            if head.meaning.pace is Pace.SLOW_DOWN:
                # The budget pauses every worker for a Retry-After: it gets the capped value too.
                self._rate_budget.on_throttled(retry_after)
            elif head.meaning.pace is Pace.CLIMB:
                # 5xx is no sign that we may speed up again; an overloaded server answers 503.
                self._rate_budget.on_success()
        body = self._read_body(response, deadline, line, retry_after)
        if isinstance(body, _Failure):
            return body
        api = self._api_response(status, response.headers, body, line, endpoint)
        resolution = api.resolution
        if resolution.action in (Action.OK, Action.REJECT):
            return api
        context: dict[str, Any] = {
            "status": status,
            "error_code": api.error_code,
            "api_message": api.safe_message,
            "request_line": line,
        }
        if resolution.action is Action.CONFIG:
            raise ConfigError(resolution.hint, **context)
        # RETRY. The hint's first clause says what happened ("CrowdTwist is throttling requests").
        what = resolution.hint.split(";")[0].rstrip(".")
        return _Failure(
            answered(status, retry_after),
            TransientError(what, **context),
            f"CrowdTwist answered HTTP {status} to a request that may already have been applied. It was not "
            "retried, so it is never applied twice; verify it before sending it again.",
        )

    def _read_body(
        self, response: requests.Response, deadline: float, line: str, retry_after: float | None
    ) -> bytes | _Failure:
        """The whole body, read in pieces under the size cap and the attempt deadline."""
        status = response.status_code
        length = response.headers.get("Content-Length", "").strip()
        if length.isdigit() and int(length) > self._max_body_bytes:
            return self._too_large(status, line, retry_after)
        chunks: list[bytes] = []
        size = 0
        try:
            while True:
                if self._clock() > deadline:
                    # A server trickling its answer: the socket timeout never fires, the deadline does.
                    self.stats.add("connection_errors")
                    return self._lost(f"no complete answer within {self._attempt_deadline:g}s", line)
                # read1: one socket read (at most the read timeout), so the deadline is checked often.
                chunk = response.raw.read1(_READ_CHUNK, decode_content=True)
                if not chunk:
                    return b"".join(chunks)
                size += len(chunk)
                if size > self._max_body_bytes:
                    return self._too_large(status, line, retry_after)
                chunks.append(chunk)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            self.stats.add("connection_errors")
            watch = current_watch()
            if watch is not None and watch.was_cut:
                return self._cut_failure(watch, line)
            if isinstance(exc, urllib3.exceptions.ReadTimeoutError):
                return self._lost(f"no answer within {self._timeout[1]:g}s", line)
            if isinstance(exc, urllib3.exceptions.ProtocolError | OSError):
                return self._lost(f"connection dropped: {_root_cause(exc)}", line)
            return self._lost(f"unreadable answer: {_root_cause(exc)}", line)

    def _too_large(self, status: int, line: str, retry_after: float | None) -> _Failure:
        # Handled like a server error: a bug or a hostile server, and for a credit it proves nothing.
        limit = f"{self._max_body_bytes:,} bytes"
        return _Failure(
            answered(status, retry_after),
            TransientError(
                f"CrowdTwist sent an answer larger than {limit}, which was not read",
                status=status,
                request_line=line,
            ),
            f"CrowdTwist answered HTTP {status} with a body larger than {limit} to a request that may already "
            "have been applied. It was not retried, so it is never applied twice; verify it before sending it again.",
        )

    def _lost(self, description: str, line: str) -> _Failure:
        """No complete answer, and the request may have reached the server."""
        return _Failure(
            LOST,
            TransientError(f"CrowdTwist did not answer ({description})", request_line=line),
            f"CrowdTwist may have applied this request, but no complete answer arrived ({description}). It was "
            "not retried, so it is never applied twice; verify it (e.g. the member's activity history) before "
            "sending it again.",
        )

    def _api_response(
        self, status: int, headers: Mapping[str, str], raw: bytes, line: str, endpoint: str
    ) -> ApiResponse:
        content_type = headers.get("Content-Type", "")
        data: Any = None
        text: str | None = None
        if raw:
            try:
                data = json.loads(raw)
            except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
                text = raw[: TEXT_PREVIEW_CHARS * 4].decode("utf-8", "replace")[:TEXT_PREVIEW_CHARS]
        if _looks_like_html(content_type, text):
            text = _html_text(text or "")
        message = data.get("message") if isinstance(data, dict) else None
        raw_message = message if isinstance(message, str) else text
        safe = self._mask_text(redact_text(raw_message, self._secrets)) if raw_message is not None else None
        return ApiResponse(
            status=status,
            data=data,
            headers=CaseInsensitiveDict(headers),
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

    def _network_failure(self, exc: requests.RequestException, line: str) -> _Failure:
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
            return self._unreachable(f"connect timeout after {self._timeout[0]:g}s", line)
        if isinstance(exc, requests.exceptions.ReadTimeout):
            return self._lost(f"no answer within {self._timeout[1]:g}s", line)
        if isinstance(exc, requests.exceptions.ConnectionError) and _never_connected(exc):
            return self._unreachable(f"connection failed: {cause}", line)
        # RemoteDisconnected / ProtocolError / ConnectionResetError / ChunkedEncodingError: the request
        # bytes may have been delivered and processed before the connection went away.
        return self._lost(f"connection dropped: {cause}", line)

    def _unreachable(self, description: str, line: str) -> _Failure:
        """Nothing was sent: safe to retry any request."""
        what = f"Could not reach the CrowdTwist host {self._host} ({description})"
        advice = "Check the API base URL, DNS and firewall, then try again."
        return _Failure(
            UNREACHABLE, TransientError(what, request_line=line), f"{what}. {advice}", advice
        )

    def _request_line(self, method: str, path: str, params: Mapping[str, Any] | None) -> str:
        query = f"?{urlencode(params, doseq=True)}" if params else ""
        return f"{method} {redact_url(self._mask_path(path) + query)}"

    # -- endpoint helpers -------------------------------------------------------------------------

    def list_activities(self) -> list[dict[str, Any]]:
        """``GET /v2/activities``: the program's active activities (the connection check)."""
        response = self.request("GET", "/v2/activities", endpoint="GET /v2/activities")
        if not response.ok:
            # The client raised for everything but OK and REJECT; a REJECT here is no row's fault.
            raise ConfigError(
                "CrowdTwist refused GET /v2/activities, which every program allows: check the base URL and "
                "the API key permissions. " + response.resolution.hint,
                status=response.status,
                error_code=response.error_code,
                api_message=response.safe_message,
                request_line=response.request_line,
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

    def delete_user(self, user_id: str, id_type: str) -> ApiResponse:
        """``DELETE /v2/users/{user_id}?id_type=...``: queue the member's erasure (200 ``{"user_id", "status"}``).

        Retry-safe: a member already queued is answered "Queued" again and an erased one 404 (both
        assumed in docs/crowdtwist-api-notes.md §2.4), so a repeat can neither erase twice nor harm.
        """
        return self.request(
            "DELETE", _user_path(user_id), params={"id_type": id_type}, endpoint="DELETE /v2/users/{user_id}"
        )

    def deletion_status(self, crowdtwist_id: str) -> ApiResponse:
        """``GET /v2/users/delete/{user_id}``: the status of a queued erasure, by CrowdTwist id only.

        200 ``{"user_id", "initiated_by", "status", "status_history"}``; 404 when the member does not
        exist or is not queued (docs/crowdtwist-api-notes.md §2.4).
        """
        return self.request(
            "GET", "/v2/users/delete/" + quote(str(crowdtwist_id), safe=""), endpoint="GET /v2/users/delete/{user_id}"
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

    def activity_history(
        self, user_id: str, id_type: str, date_start: int, date_end: int, *, page: int | None = None,
        page_size: int | None = None,
    ) -> ApiResponse:
        """``GET /v2.1/users/{user_id}/activity_history`` between two epoch-second dates (read-back).

        ``page`` and ``page_size`` ask for one page of the list (v2.1 lists are paged,
        docs/crowdtwist-api-notes.md §6); the caller follows ``paging.next_page``.
        """
        params: dict[str, Any] = {"id_type": id_type, "date_start": int(date_start), "date_end": int(date_end)}
        if page is not None:
            params["page"] = int(page)
        if page_size is not None:
            params["page_size"] = int(page_size)
        return self.request(
            "GET",
            f"/v2.1/users/{quote(str(user_id), safe='')}/activity_history",
            params=params,
            endpoint="GET /v2.1/users/{user_id}/activity_history",
        )


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
