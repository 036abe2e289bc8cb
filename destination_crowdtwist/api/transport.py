"""One attempt on the wire: the connection pool, the attempt's deadline, the capped body, network errors.

:meth:`Transport.exchange` sends one prepared request once and brings back what came of it: a
classified :class:`~destination_crowdtwist.api.response.ApiResponse` for every complete answer, or a
:class:`~destination_crowdtwist.api.response.Failure` when there is no usable one. It never retries
and never sleeps (the client's loop does), and it decides nothing about statuses: the status line is
read through the status table (``errors.status_rule``).

- Attempts go straight to a urllib3 connection pool for the base URL's host (urllib3 is what
  requests sends through; requests' own layers, re-preparing, merging settings, cookies and hooks on
  every request, cost most of the connector's CPU per row: docs/performance.md). What requests did
  for us is kept, set up once: its proxy settings from the environment (``HTTPS_PROXY``,
  ``NO_PROXY``...), its CA bundle (``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE``, else certifi's),
  certificate verification, its ``Accept-Encoding``, keep-alive, and a pool of ``pool_size``
  connections that never blocks. Each attempt goes to that pool through ``pool_send.send``
  (urlopen's one call the transport makes, without urlopen's per-request work); a plain-HTTP URL
  through a proxy goes through the proxy manager's ``urlopen``.
- The pool never retries on its own (urllib3 would replay the old signature and could double an
  activity credit), never follows a redirect (it would carry the credentials to another URL), and
  keeps no cookies.
- A hostile or broken server cannot stall or flood a worker: bodies are streamed and capped
  (``max_body_bytes``), and each attempt has one total deadline (``attempt_deadline``) from
  connecting to the last byte of the body, status line and headers included, on top of the socket
  timeouts. urllib3 has no total timeout and a server trickling its status line at a byte a second
  never trips the read timeout, so a watchdog thread (``api/deadline.py``) shuts the attempt's
  socket down at its deadline.
- Network errors are told apart by whether the request may have reached the server: refused, DNS
  and connect timeouts prove nothing was sent (safe to repeat any request); a read timeout or a
  dropped connection may follow a request that was applied. TLS and URL errors are the user's to fix.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import urllib3
import urllib3.exceptions
from urllib3.connectionpool import HTTPConnectionPool
from urllib3.util import Timeout, make_headers

from destination_crowdtwist.api import pool_send
from destination_crowdtwist.api.connections import pool_manager_for
from destination_crowdtwist.api.deadline import Watch, Watchdog, current_watch
from destination_crowdtwist.api.errors import REDIRECT, Bound, ConfigError, Meaning, Pace, TransientError, status_rule
from destination_crowdtwist.api.net_errors import never_connected, root_cause
from destination_crowdtwist.api.plain_answer import PlainAnswer, StreamedAnswer
from destination_crowdtwist.api.redaction import RequestLine, redact_text, redact_url
from destination_crowdtwist.api.response import ApiResponse, Failure
from destination_crowdtwist.api.retry import LOST, UNREACHABLE, Outcome, parse_retry_after
from destination_crowdtwist.api.stats import ClientStats

__all__ = ["MAX_BODY_BYTES", "Auth", "Pool", "Transport", "Wire"]

# CrowdTwist answers are small JSON documents (a profile, a history page); a body above this is not
# one of them, and holding it would only cost memory in every worker.
MAX_BODY_BYTES = 1_000_000
# Bytes asked for per read of the body; read1 returns after a single socket read, whatever arrived.
_READ_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Wire:
    """One logical request as the client prepares it once; every attempt sends exactly this."""

    method: str
    target: str  # path and query after the base URL, percent-encoded once (no credentials yet)
    data: bytes | None  # the exact bytes that are signed and sent
    headers: Mapping[str, str]
    request_line: RequestLine  # secrets masked, ids masked: for errors, built only when one is
    template: str  # e.g. "PUT /v2/users/{user_id}", for the answer's classification
    endpoint: str  # the statistics key

    @property
    def line(self) -> str:
        """The request line, secrets and ids masked (computed on first use)."""
        return str(self.request_line)


class Auth(Protocol):
    """Signs one attempt (api/signing.py: ``ApiKeyAuth``, ``HmacAuth``)."""

    def apply(self, method: str, target: str, headers: dict[str, str], body: bytes | None) -> str:
        """Add this attempt's credentials to ``headers`` in place; return the target to send."""
        ...


class Pool(Protocol):
    """What the transport sends through: a urllib3 connection pool or pool manager (or a test's fake)."""

    def urlopen(self, method: str, url: str, **kwargs: Any) -> urllib3.BaseHTTPResponse:
        """Send one request (urllib3's ``urlopen``; the transport passes its keywords, see ``exchange``)."""
        ...


class Transport:
    """Sends one attempt at a time, from any thread (see the module docstring).

    Args:
        base_url: the API base URL (its proxies are resolved once).
        host: the host name, for "could not reach" messages.
        auth: signs every attempt (a fresh signature per attempt).
        timeout: (connect, read) seconds; read is the longest silence between two packets.
        attempt_deadline: total seconds for one attempt, from connecting to the last body byte.
        max_body_bytes: the largest answer body read; a larger one counts as a server error.
        stats: the counters this records answers by status and connection errors in.
        honour_retry_after: a server's Retry-After (seconds) as honoured (``RetryPolicy``'s cap).
        clean: redacts secrets and masks PII in CrowdTwist's message text.
        secrets: values to redact from a redirect target.
        clock / wall_clock: monotonic time for the deadline; Unix time for an HTTP-date Retry-After.
        pool: what to send through instead of the pool this builds (tests); it gets the targets after
            the base URL's origin, and sockets only its own connections hand to the watchdog.
        pool_size: connections kept to the host by the pool this builds.
        user_agent: the User-Agent header.
    """

    def __init__(  # noqa: PLR0913 - keyword options, injected clocks and limits
        self,
        base_url: str,
        host: str,
        auth: Auth,
        *,
        timeout: tuple[float, float],
        attempt_deadline: float,
        max_body_bytes: int,
        stats: ClientStats,
        honour_retry_after: Callable[[float], float],
        clean: Callable[[str], str],
        secrets: tuple[str, ...],
        clock: Callable[[], float],
        wall_clock: Callable[[], float],
        pool: Pool | None,
        pool_size: int,
        user_agent: str,
    ) -> None:
        if attempt_deadline <= 0:
            raise ValueError("attempt_deadline must be positive")
        if max_body_bytes < 1:
            raise ValueError("max_body_bytes must be positive")
        self._host = host
        self._auth = auth
        self._timeout = timeout
        self.attempt_deadline = attempt_deadline
        self._max_body_bytes = max_body_bytes
        self._stats = stats
        self._honour = honour_retry_after
        self._clean = clean
        self._secrets = secrets
        self._clock = clock
        self._wall_clock = wall_clock
        parts = urlsplit(base_url)
        origin = f"{parts.scheme}://{parts.netloc}"
        self._prefix = parts.path.rstrip("/")  # a base URL with a path: every target starts with it
        self._timeouts = Timeout(connect=timeout[0], read=timeout[1])
        # requests' default headers, minus its "Accept: */*" (every request says Accept itself).
        encodings = make_headers(accept_encoding=True)["accept-encoding"]
        self._headers = {"User-Agent": user_agent, "Accept-Encoding": encodings, "Connection": "keep-alive"}
        self._manager: urllib3.PoolManager | None = None
        if pool is None:
            self._manager, absolute = pool_manager_for(base_url, pool_size)
            # One pool per host; sending through it directly skips the manager's per-request URL parsing
            # and pool lookup. A plain-HTTP proxy needs absolute URLs and its headers: through the manager.
            pool = self._manager if absolute else self._manager.connection_from_url(base_url)
            if absolute:
                self._prefix = origin + self._prefix
        self.pool = pool
        # The pool this built for the host (direct, or tunnelled through a proxy) is sent to without
        # urlopen's per-request work (api/pool_send.py); the proxy manager and a test's pool get urlopen.
        self._direct = pool if isinstance(pool, HTTPConnectionPool) and pool_send.USABLE else None
        self._watchdog = Watchdog()

    def close(self) -> None:
        """Stop the watchdog and close the connection pool (only if this built it)."""
        self._watchdog.close()
        if self._manager is not None:
            self._manager.clear()

    def abort(self) -> None:
        """Cut every attempt on the wire now (their requests may have landed: they fail as lost)."""
        self._watchdog.abort_all()

    def exchange(self, wire: Wire) -> ApiResponse | Failure:
        """Send once: every complete answer, classified; a failure without one; ConfigError for TLS/URL/redirects."""
        deadline = self._clock() + self.attempt_deadline
        # The watchdog's deadline covers everything, from connecting to the last byte: a status line or
        # headers trickled a byte at a time never trip the socket's read timeout.
        headers = {**self._headers, **wire.headers}
        # Signed here, once per attempt: a retry never carries an old timestamp or signature.
        target = self._auth.apply(wire.method, self._prefix + wire.target, headers, wire.data)
        with self._watchdog.watching(Watch(time.monotonic() + self.attempt_deadline)) as watch:
            response: StreamedAnswer
            try:
                if self._direct is not None:
                    # The same call as below (no retry, no redirect, streamed), without urlopen's overhead.
                    response = pool_send.send(self._direct, wire.method, target, wire.data, headers, self._timeouts)
                else:
                    response = self.pool.urlopen(
                        wire.method,
                        target,
                        body=wire.data,
                        headers=headers,
                        # Never resend on its own (the old signature; a credit could land twice), never
                        # follow a redirect (the credentials would go along): errors come back raw, 3xx
                        # as answers.
                        retries=False,
                        redirect=False,
                        timeout=self._timeouts,
                        # Streamed, so the body is read under the size cap and the attempt deadline.
                        preload_content=False,
                        decode_content=True,
                    )
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                self._stats.add("connection_errors")
                if watch.was_cut:
                    return self._cut(watch, wire.line)
                return self._network_failure(exc, wire.line)
            try:
                return self._answer(response, wire, deadline, watch)
            finally:
                # After a complete read the connection is already back in the pool; otherwise this drops
                # it, so a half-read answer never reaches the next request on a reused connection.
                response.close()
                response.release_conn()

    def _answer(
        self, response: StreamedAnswer, wire: Wire, deadline: float, watch: Watch
    ) -> ApiResponse | Failure:
        status = response.status
        # The status line alone, read through the table: a redirect, what bounds its retries, what it
        # tells the rate budget (also when its body turns out unusable).
        head = status_rule(status)
        self._stats.record_status(status, throttled=head.meaning.pace is Pace.SLOW_DOWN)
        if head.cause == REDIRECT:
            target = response.headers.get("Location", "(no Location header)")
            # Never follow, never read: the redirected request would carry the api_key / signature elsewhere.
            raise ConfigError(head.advice(redact_text(redact_url(target), self._secrets)), status=status,
                              request_line=wire.line)
        retry_after: float | None = None
        if head.meaning.bound is not Bound.COUNT:
            # Honoured only where the wait is bounded by time (429, 503); capped, so that one odd header
            # cannot park a worker (or, through the budget, every worker) for an hour.
            parsed = parse_retry_after(response.headers.get("Retry-After"), self._server_now(response))
            retry_after = None if parsed is None else self._honour(parsed)
        body = self._read_body(response, deadline, wire, head.meaning, retry_after)
        if isinstance(body, Failure):
            return body
        answer = ApiResponse.from_body(status, response.headers, body, request_line=wire.request_line,
                                       endpoint=wire.template, clean=self._clean, retry_after=retry_after)
        if watch.was_cut and answer.resolution.did_work:
            # Cut while the body was read: a body without a length may look complete but is not.
            self._stats.add("connection_errors")
            return self._cut(watch, wire.line, head.meaning.pace, retry_after)
        return answer

    def _read_body(
        self, response: StreamedAnswer, deadline: float, wire: Wire, meaning: Meaning,
        retry_after: float | None,
    ) -> bytes | Failure:
        """The whole body, read in pieces under the size cap and the attempt deadline.

        The request line (``wire.line``) is built only for a failure.
        """
        status = response.status
        if isinstance(response, PlainAnswer):
            # One Content-Length, already parsed, and no Content-Encoding (api/plain_answer.py).
            plain, length = True, str(response.length_remaining)
        else:
            plain = "Content-Encoding" not in response.headers
            length = response.headers.get("Content-Length", "").strip()
        if length.isdigit() and int(length) > self._max_body_bytes:
            return self._too_large(status, wire.line, meaning, retry_after)
        chunks: list[bytes] = []
        size = 0
        try:
            while True:
                if self._clock() > deadline:
                    # A server trickling its answer: the socket timeout never fires, the deadline does.
                    self._stats.add("connection_errors")
                    return self._lost(f"no complete answer within {self.attempt_deadline:g}s", wire.line,
                                      meaning.pace, retry_after)
                # read1: one socket read (at most the read timeout), so the deadline is checked often.
                chunk = response.read1(_READ_CHUNK, decode_content=True)
                if not chunk:
                    return b"".join(chunks)
                size += len(chunk)
                if size > self._max_body_bytes:
                    return self._too_large(status, wire.line, meaning, retry_after)
                chunks.append(chunk)
                if plain and response.length_remaining == 0 and response.closed:
                    # Every byte of the Content-Length read and the connection back in the pool: the body
                    # is complete, so skip the read that would only find its end (nothing decoded can
                    # wait in urllib3's buffer without a Content-Encoding).
                    return b"".join(chunks)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            self._stats.add("connection_errors")
            watch = current_watch()
            if watch is not None and watch.was_cut:
                return self._cut(watch, wire.line, meaning.pace, retry_after)
            if isinstance(exc, urllib3.exceptions.ReadTimeoutError):
                description = f"no answer within {self._timeout[1]:g}s"
            elif isinstance(exc, urllib3.exceptions.ProtocolError | OSError):
                description = f"connection dropped: {root_cause(exc)}"
            else:
                description = f"unreadable answer: {root_cause(exc)}"
            return self._lost(description, wire.line, meaning.pace, retry_after)

    def _server_now(self, response: StreamedAnswer) -> float:
        """Unix time for an HTTP-date Retry-After: the server's Date header avoids local clock skew."""
        date = response.headers.get("Date")
        if date:
            server_now = parse_retry_after(date, 0.0)
            if server_now is not None:
                return server_now
        return self._wall_clock()

    # -- failures -----------------------------------------------------------------------------------

    def _too_large(self, status: int, line: str, meaning: Meaning, retry_after: float | None) -> Failure:
        # Judged by its status line, like a server error: a bug or a hostile server; for a credit it proves nothing.
        limit = f"{self._max_body_bytes:,} bytes"
        return Failure(
            Outcome(processed=meaning.processed, bound=meaning.bound, retry_after=retry_after, status=status),
            TransientError(
                f"CrowdTwist sent an answer larger than {limit}, which was not read",
                status=status,
                request_line=line,
            ),
            f"CrowdTwist answered HTTP {status} with a body larger than {limit} to a request that may already "
            "have been applied. It was not retried, so it is never applied twice; verify it before sending it again.",
            pace=meaning.pace,
            pause=retry_after,
        )

    def _cut(self, watch: Watch, line: str, pace: Pace = Pace.HOLD, pause: float | None = None) -> Failure:
        if watch.aborted:
            return self._lost("the sync is stopping and the request was cut off", line, pace, pause)
        return self._lost(f"no complete answer within {self.attempt_deadline:g}s", line, pace, pause)

    def _lost(self, description: str, line: str, pace: Pace = Pace.HOLD, pause: float | None = None) -> Failure:
        """No complete answer, and the request may have reached the server."""
        return Failure(
            LOST,
            TransientError(f"CrowdTwist did not answer ({description})", request_line=line),
            f"CrowdTwist may have applied this request, but no complete answer arrived ({description}). It was "
            "not retried, so it is never applied twice; verify it (e.g. the member's activity history) before "
            "sending it again.",
            pace=pace,
            pause=pause,
        )

    def _unreachable(self, description: str, line: str) -> Failure:
        """Nothing was sent: safe to retry any request."""
        what = f"Could not reach the CrowdTwist host {self._host} ({description})"
        advice = "Check the API base URL, DNS and firewall, then try again."
        return Failure(UNREACHABLE, TransientError(what, request_line=line), f"{what}. {advice}", advice)

    def _network_failure(self, exc: BaseException, line: str) -> Failure:
        """Classify a urllib3 (or socket) exception; raise ConfigError for TLS and URL problems.

        The same verdicts as requests' exceptions had: its SSLError, InvalidURL, ConnectTimeout,
        ReadTimeout and ConnectionError are urllib3's errors below, renamed.
        """
        reason = exc.reason if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason else exc
        if isinstance(reason, urllib3.exceptions.SSLError):
            raise ConfigError(
                f"TLS handshake with {self._host} failed ({root_cause(exc)}): the certificate could not be "
                "verified or the host does not speak TLS. Check that the API base URL is the https URL of "
                "your CrowdTwist API host.",
                request_line=line,
            ) from None
        if isinstance(reason, urllib3.exceptions.LocationValueError):
            raise ConfigError(
                f"The API base URL is not a valid URL ({type(reason).__name__}).", request_line=line
            ) from None
        cause = root_cause(exc)
        connect = urllib3.exceptions.ConnectTimeoutError
        if isinstance(reason, connect) and not isinstance(reason, urllib3.exceptions.NewConnectionError):
            return self._unreachable(f"connect timeout after {self._timeout[0]:g}s", line)
        if isinstance(reason, urllib3.exceptions.ReadTimeoutError):
            return self._lost(f"no answer within {self._timeout[1]:g}s", line)
        if never_connected(exc):
            return self._unreachable(f"connection failed: {cause}", line)
        # RemoteDisconnected / ProtocolError / ConnectionResetError / ChunkedEncodingError: the request
        # bytes may have been delivered and processed before the connection went away.
        return self._lost(f"connection dropped: {cause}", line)

