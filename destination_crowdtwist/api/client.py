"""The CrowdTwist client: the one retry loop, stop and abort, and the endpoint helpers.

A request goes ``request()`` → one attempt (``_attempt``: a place in flight and a paced send slot
from the flow control, then ``Transport.exchange``, which classifies the answer once) → the verdict,
read off the status table's row: OK and REJECT answers are returned, CONFIG raises, anything else is
a failure that the pure ``retry.decide`` rules on (repeat after a delay, give up, or uncertain).

Decisions that matter for correctness:

- The JSON body is serialized once to bytes and those bytes are sent, so the HMAC (computed by the
  auth's ``apply`` from the exact target and body of the attempt) covers exactly what goes on the wire.
- Retries happen only in ``CrowdTwistClient.request`` (urllib3 retries are off): each attempt is
  signed anew by the transport, with a fresh timestamp. Whether and when to retry is
  decided by ``retry.decide`` from the row's meaning (its module docstring has the table).
- CrowdTwist has no idempotency key for activity credits (docs/crowdtwist-api-notes.md §3). A request sent
  with ``idempotent=False`` is therefore never retried once it may have reached the server (read
  timeout, connection dropped after sending, any 5xx, an unusable 2xx); ``UncertainOutcome`` is raised
  instead. Failures that prove nothing was sent (connection refused, DNS, connect timeout) and
  answers that say the request was not run (429, 408) are still retried.
- Every answer is classified once, by the status table (``errors.classify_response``), when its
  ``ApiResponse`` is built (api/response.py); callers read ``response.resolution`` and
  ``response.rejection()``.
- One attempt cannot stall or flood a worker, and redirects are never followed (api/transport.py);
  a Retry-After is honoured only up to ``retry_after_cap``.
- A stopping sync is not held up by waits: :meth:`CrowdTwistClient.stop` wakes every retry pause
  (a 429's Retry-After can be a minute) and lets no new attempt start; :meth:`CrowdTwistClient.abort`
  also cuts the attempts still on the wire (the end of SIGTERM's grace period).
- Every error carries a redacted request line: no api_key, no signature, user ids masked.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote, urlsplit

from destination_crowdtwist.api.errors import Action, Bound, ConfigError, TransientError, UncertainOutcome
from destination_crowdtwist.api.flow import FlowControl
from destination_crowdtwist.api.redaction import RequestLine, mask_user_segment, redact_text
from destination_crowdtwist.api.response import ApiResponse, Failure
from destination_crowdtwist.api.retry import GiveUp, Retry, RetryPolicy, Tally, decide
from destination_crowdtwist.api.stats import ClientStats
from destination_crowdtwist.api.targets import query_string, user_path
from destination_crowdtwist.api.transport import MAX_BODY_BYTES, Auth, Pool, Transport, Wire

__all__ = ["USER_AGENT", "CrowdTwistClient"]

# A child of the "airbyte" logger: the CDK configures only that one (INFO, console handler on the
# root), so a module-named logger would stay at WARNING and retries would never show in a sync.
logger = logging.getLogger("airbyte.crowdtwist")

USER_AGENT = "airbyte-destination-crowdtwist/0.4.0"
# The longest a request waits out maintenance (503) by default; see ``unavailable_timeout``.
_UNAVAILABLE_TIMEOUT = 300.0


class CrowdTwistClient:
    """Thread-safe CrowdTwist API client shared by all worker threads.

    Args:
        base_url: e.g. ``https://api123.crowdtwist.com`` (no trailing slash needed).
        auth: ``signing.ApiKeyAuth`` or ``signing.HmacAuth`` (anything with their ``apply``; its optional
            ``secrets`` attribute lists values to redact).
        timeout: (connect, read) seconds per attempt; read is the longest silence between two packets.
        max_retries: retries after the first attempt for failures bounded by count (5xx, network).
        pool_size: connections kept per host; set it to the number of worker threads.
        flow: the shared ``FlowControl`` (rate budget and in-flight gate) every attempt passes, and
            whose counters are ``stats``; None: unpaced, ungated, counted all the same.
        clock / sleep / rand / wall_clock: injected for exact, fast tests. ``wall_clock`` (Unix time)
            turns an HTTP-date Retry-After into seconds when the answer has no Date header. Without
            ``sleep``, a retry pause is a wait that :meth:`stop` ends at once.
        pool: what attempts are sent through instead of the client's own urllib3 pool (tests): anything
            with urllib3's ``urlopen``, given the target after the base URL's origin.
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
            down, so only with the client's own pool (not an injected one).
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
        auth: Auth,
        *,
        timeout: tuple[float, float] = (5.0, 30.0),
        max_retries: int = 3,
        pool_size: int = 10,
        flow: FlowControl | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] | None = None,
        rand: Callable[[], float] = random.random,
        retry_policy: RetryPolicy | None = None,
        pool: Pool | None = None,
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
        self._base_url = base_url.strip().rstrip("/")
        self._auth = auth
        secrets: tuple[str, ...] = tuple(getattr(auth, "secrets", ()))
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
        self._clock = clock
        self._stopping = stopping if stopping is not None else threading.Event()
        self._sleep = sleep if sleep is not None else self._stoppable_sleep
        self._rand = rand
        self._mask_path = mask_path or mask_user_segment
        mask = mask_text or (lambda text: text)
        self.flow = flow if flow is not None else FlowControl(clock=clock)
        self.stats: ClientStats = self.flow.stats
        self._transport = Transport(
            self._base_url,
            parts.hostname,
            auth,
            timeout=timeout,
            attempt_deadline=sum(timeout) if attempt_deadline is None else attempt_deadline,
            max_body_bytes=max_body_bytes,
            stats=self.stats,
            honour_retry_after=retry_policy.honoured_retry_after,
            clean=lambda text: mask(redact_text(text, secrets)),
            secrets=secrets,
            clock=clock,
            wall_clock=wall_clock,
            pool=pool,
            pool_size=pool_size,
            user_agent=USER_AGENT,
        )

    def __repr__(self) -> str:
        return f"CrowdTwistClient(base_url={self._base_url!r}, auth={self._auth!r})"

    def close(self) -> None:
        """Close the connection pool (only if this client built it) and stop the watchdog."""
        self._transport.close()

    def stop(self) -> None:
        """The sync is stopping: retry pauses end now and no new attempt starts (each such request raises
        ``TransientError``); attempts on the wire go on until they end (see :meth:`abort`).
        """
        self._stopping.set()

    def abort(self) -> None:
        """:meth:`stop`, and cut the attempts on the wire (their requests may have landed: uncertain)."""
        self._stopping.set()
        self._transport.abort()

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` or :meth:`abort` was called."""
        return self._stopping.is_set()

    def wait(self, seconds: float) -> None:
        """Sleep up to ``seconds``; return as soon as the sync stops (writers' waits use it)."""
        self._stopping.wait(max(0.0, seconds))

    _stoppable_sleep = wait

    def _raise_if_stopping(self, wire: Wire) -> None:
        if self._stopping.is_set():
            raise TransientError(
                "The sync is stopping, so this request was not sent (again); the next attempt sends it.",
                request_line=wire.line,
            )

    def __enter__(self) -> CrowdTwistClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

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
        wire = self._wire(method.upper(), path, params, body, endpoint)
        tally = Tally()
        first_failure: float | None = None
        maybe_applied = False
        while True:
            result = self._attempt(wire)
            if isinstance(result, ApiResponse):
                verdict = result.resolution
                if verdict.did_work:  # OK or REJECT: the caller's answer
                    return dataclasses.replace(result, after_uncertain=True) if maybe_applied else result
                if verdict.action is Action.CONFIG:
                    raise ConfigError(verdict.hint, **result.error_context())
                result = Failure.retry(result)
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
                logger.log(level, "Retrying %s in %.2fs (%s): %s", wire.line, decision.delay, decision.note, error)
                with self.flow.pausing():
                    self._sleep(decision.delay)  # ends early when the sync stops
                tally = decision.tally
                continue
            context: dict[str, Any] = {
                "status": error.status,
                "error_code": error.error_code,
                "api_message": error.api_message,
                "request_line": wire.line,
            }
            if isinstance(decision, GiveUp):
                raise TransientError(f"{error.message}. {decision.reason} {result.advice}", **context) from None
            self.stats.add("uncertain")
            raise UncertainOutcome(result.uncertain, **context) from None

    def _attempt(self, wire: Wire) -> ApiResponse | Failure:
        """One attempt inside the flow control: a place in flight, a paced slot, the exchange, what it taught."""
        self._raise_if_stopping(wire)
        with self.flow.attempt() as attempt:
            # A stop while waiting for a place or a send slot: nothing was sent, nothing is.
            self._raise_if_stopping(wire)
            self.stats.record_attempt(wire.endpoint)
            result = self._transport.exchange(wire)
            attempt.observe(result)
        return result

    def _wire(
        self, method: str, path: str, params: Mapping[str, Any] | None, body: Any, endpoint: str | None
    ) -> Wire:
        """The request as every attempt sends it: the body serialized once, the request line masked when read."""
        endpoint = endpoint or f"{method} {path}"
        headers = {"Accept": "application/json"}
        data: bytes | None = None
        if body is not None:
            # Serialized once; these exact bytes are signed and sent. allow_nan=False: NaN is not JSON.
            text = json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
            data = text.encode("utf-8")
            headers["Content-Type"] = "application/json"
        # As requests encoded params: None values left out, the rest form-encoded (lists repeat the key).
        query = query_string(params) if params else ""
        template = f"{method} {endpoint.partition(' ')[2] or path}"
        line = RequestLine(method, path, query, self._mask_path)
        return Wire(method, path + query, data, headers, line, template, endpoint)

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
            "GET", user_path(user_id), params={"id_type": id_type}, endpoint="GET /v2/users/{user_id}"
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
            user_path(user_id),
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
            "DELETE", user_path(user_id), params={"id_type": id_type}, endpoint="DELETE /v2/users/{user_id}"
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
            user_path(user_id) + "/activities",
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

