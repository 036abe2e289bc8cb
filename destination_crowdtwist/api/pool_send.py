"""One attempt through a urllib3 connection pool without ``urlopen``'s per-request work.

``HTTPConnectionPool.urlopen`` is urllib3's general entry point: on every call it re-parses and
re-encodes the URL (``_encode_target``: a tenth of the connector's CPU per request at zero latency,
docs/performance.md), builds a ``Retry`` from ``retries=False``, copies the headers to merge the
proxy's, clones the timeout, checks the host and looks for a file body to rewind, all to serve
options the transport never uses: it always sends a relative target it has already percent-encoded
(and signed: re-encoding would break the HMAC, so sending it untouched is also the safer choice),
bytes or no body, no retries, no redirects, a streamed answer.

:func:`send` is ``urlopen`` for exactly that call, built from the same pool's own steps, so that
everything the pool does per connection is unchanged: the connection is taken from the pool's
queue (a kept-alive connection the server dropped is detected and replaced there), a CONNECT
tunnel through a proxy is set up on a new connection, ``_make_request`` connects (TLS with the
pool's verification, CA bundle and SNI), sends, swallows a broken pipe after the request went out
(the answer may still be readable) and turns socket timeouts into urllib3's timeout errors. A
failure closes the connection and gives the pool an empty slot, never the broken connection, and
raises what ``urlopen(retries=False)`` raises (urllib3 re-raises the error it wrapped), so the
transport classifies the same exceptions as before. The answer holds its connection until
``release_conn`` (it is streamed under the size cap and the attempt deadline).

The answer: ``_make_request`` is the pool's own sequence too (connect and verify, send, read
timeout, status line and headers), except that an answer with one Content-Length and no coding is
not wrapped in urllib3's ``HTTPResponse`` (api/plain_answer.py reads it as urllib3 would); any other
answer is wrapped exactly as urllib3's ``getresponse`` wraps it. With a urllib3 that lacks what that
copies (``LEAN`` is False), the pool's ``_make_request`` runs instead.

A plain-HTTP URL through a proxy needs the absolute URL and the proxy manager: that case keeps
``urlopen`` (api/transport.py).
"""

from __future__ import annotations

import errno
import http.client
import inspect
import logging
from collections.abc import Mapping
from http.client import HTTPException
from typing import cast

import urllib3
from urllib3 import HTTPHeaderDict
from urllib3.connection import BaseSSLError, HTTPConnection
from urllib3.connectionpool import HTTPConnectionPool
from urllib3.exceptions import (
    HeaderParsingError,
    NewConnectionError,
    ProtocolError,
    ProxyError,
    ReadTimeoutError,
    SSLError,
)
from urllib3.util.proxy import connection_requires_http_tunnel
from urllib3.util.response import assert_header_parsing
from urllib3.util.ssl_match_hostname import CertificateError
from urllib3.util.timeout import Timeout

from destination_crowdtwist.api.one_write import OneWriteRequest, set_timeout
from destination_crowdtwist.api.plain_answer import PlainAnswer, StreamedAnswer, is_plain

try:
    from urllib3.connectionpool import _wrap_proxy_error
except ImportError:  # a urllib3 whose internals moved: USABLE is False, the transport keeps urlopen
    _wrap_proxy_error = None  # type: ignore[assignment]
try:
    from urllib3.connection import _normalize_header_values
except ImportError:  # an older or newer urllib3: LEAN is False, every answer goes through _make_request
    _normalize_header_values = None  # type: ignore[assignment]

__all__ = ["LEAN", "NO_RETRY", "USABLE", "send"]

# urllib3's own logger, for the one warning its getresponse gives (a header block that did not parse).
_urllib3_log = logging.getLogger("urllib3.connection")


def _usable() -> bool:
    """Whether this urllib3 has the pool internals :func:`send` is built from, as urllib3 2 has them.

    They are private: a release that changes them must make the connector fall back to ``urlopen``
    (slower, the same behaviour), never break a sync. Checked once, at import.
    """
    steps = ("_get_conn", "_put_conn", "_make_request", "_prepare_proxy", "_raise_timeout")
    if _wrap_proxy_error is None or not all(callable(getattr(HTTPConnectionPool, s, None)) for s in steps):
        return False
    try:
        params = inspect.signature(HTTPConnectionPool._make_request).parameters
    except (TypeError, ValueError):
        return False
    return {"conn", "method", "url", "body", "headers", "retries", "timeout", "chunked", "response_conn",
            "preload_content", "decode_content"} <= set(params)


#: Whether :func:`send` may be used with the installed urllib3 (else the transport calls ``urlopen``).
USABLE = _usable()


def _lean() -> bool:
    """Whether this urllib3 has what :func:`_make_request` copies from it (else ``pool._make_request``).

    Its request keeps ``_response_options`` for its own ``getresponse``, which :func:`_make_request`
    replaces, and ``_normalize_header_values`` is how that ``getresponse`` reads the headers.
    """
    if not USABLE or _normalize_header_values is None:
        return False
    if not callable(getattr(HTTPConnectionPool, "_validate_conn", None)):
        return False
    try:
        params = inspect.signature(urllib3.HTTPResponse).parameters
    except (TypeError, ValueError):
        return False
    return {"body", "headers", "status", "version", "version_string", "reason", "preload_content", "decode_content",
            "original_response", "enforce_content_length", "request_method", "request_url",
            "sock_shutdown"} <= set(params)


#: Whether plain answers are read straight from ``http.client`` (api/plain_answer.py).
LEAN = _lean()

# What urlopen builds from retries=False, redirect=False on every call: no retry, errors raised raw,
# a redirect returned as the answer. Retry objects are never changed (increment returns a new one).
NO_RETRY = urllib3.Retry(total=False, redirect=False)

# The exceptions after which urlopen drops the connection (urllib3 2's list, in its order).
_DROPPING = (TimeoutError, HTTPException, OSError, ProtocolError, BaseSSLError, SSLError, CertificateError,
             ProxyError)


def send(
    pool: HTTPConnectionPool, method: str, target: str, body: bytes | None, headers: Mapping[str, str],
    timeout: Timeout,
) -> StreamedAnswer:
    """``pool.urlopen(method, target, body=body, headers=headers, retries=False, redirect=False,
    timeout=timeout, preload_content=False, decode_content=True)``, without its per-request work.

    ``target`` is the path and query after the pool's origin, percent-encoded (sent as is). The
    answer is streamed and keeps its connection until ``release_conn()``.
    """
    if not target.startswith("/"):
        raise ValueError("send() takes a relative target; an absolute URL goes through urlopen")
    # A relative target has no scheme of its own: urlopen asks the same question with None.
    tunnel = connection_requires_http_tunnel(pool.proxy, pool.proxy_config, None)
    if not tunnel and pool.proxy_headers:
        headers = {**headers, **pool.proxy_headers}
    conn = pool._get_conn()
    clean_exit = False
    try:
        conn.timeout = timeout.connect_timeout  # type: ignore[assignment]
        if pool.proxy is not None and tunnel and conn.is_closed:
            # A new connection through a proxy: the CONNECT tunnel first (urlopen's own step).
            try:
                pool._prepare_proxy(conn)
            except (BaseSSLError, OSError, TimeoutError) as exc:
                pool._raise_timeout(err=exc, url=pool.proxy.url, timeout_value=conn.timeout)
                raise
        response: StreamedAnswer
        if LEAN and timeout.total is None:
            # The pool's ConnectionCls: urllib3's HTTPConnection (api/deadline.py's watched ones).
            response = _make_request(cast("HTTPConnection", conn), pool, method, target, body=body, headers=headers,
                                     timeout=timeout)
        else:
            response = pool._make_request(
                conn, method, target, body=body, headers=headers, retries=NO_RETRY, timeout=timeout,
                chunked=False, response_conn=conn, preload_content=False, decode_content=True,
            )
    except _DROPPING as exc:
        # urlopen's own wrapping; with retries off it re-raises the wrapped error.
        error: Exception = exc
        if isinstance(exc, BaseSSLError | CertificateError):
            error = SSLError(exc)
        if (isinstance(error, OSError | NewConnectionError | TimeoutError | SSLError | HTTPException)
                and conn.proxy and not conn.has_connected_to_proxy):
            error = _wrap_proxy_error(error, conn.proxy.scheme)
        elif isinstance(error, OSError | HTTPException):
            error = ProtocolError("Connection aborted.", error)
        raise error  # noqa: B904 - raised as urlopen raises it: the original is its context
    else:
        clean_exit = True
        return response
    finally:
        if not clean_exit:
            # Never back into the pool half-used: an empty slot, which the pool fills with a new connection.
            conn.close()
            pool._put_conn(None)


def _make_request(
    conn: HTTPConnection, pool: HTTPConnectionPool, method: str, target: str, *,
    body: bytes | None, headers: Mapping[str, str], timeout: Timeout,
) -> StreamedAnswer:
    """``pool._make_request`` for :func:`send`'s call, step for step, except the answer: a plain one
    (api/plain_answer.py) is read straight from ``http.client``, any other is wrapped in urllib3's
    ``HTTPResponse`` exactly as urllib3's ``getresponse`` wraps it.

    Not copied: urllib3's debug line, which would print the target (and an api_key in its query).
    ``timeout`` has no total, so its connect and read timeouts are fixed values.
    """
    pool.num_requests += 1
    conn.timeout = Timeout.resolve_default_timeout(timeout.connect_timeout)
    try:
        try:
            pool._validate_conn(conn)  # HTTPS: connect now, TLS verified (a kept-alive connection: nothing)
        except (TimeoutError, BaseSSLError) as exc:  # TimeoutError: socket.timeout
            pool._raise_timeout(err=exc, url=target, timeout_value=conn.timeout)
            raise
    except (OSError, NewConnectionError, TimeoutError, BaseSSLError, CertificateError, SSLError) as exc:
        error: Exception = exc
        if isinstance(exc, BaseSSLError | CertificateError):
            error = SSLError(exc)
        if (isinstance(error, OSError | NewConnectionError | TimeoutError | SSLError)
                and conn.proxy and not conn.has_connected_to_proxy):
            error = _wrap_proxy_error(error, conn.proxy.scheme)
        raise error  # noqa: B904 - raised as _make_request raises it
    try:
        if isinstance(conn, OneWriteRequest):
            # urllib3's request, the same bytes, without its per-header layers (api/one_write.py).
            conn.request_plain(method, target, body, headers)
        else:
            conn.request(method, target, body=body, headers=headers, chunked=False, preload_content=False,
                         decode_content=True, enforce_content_length=True)
    except BrokenPipeError:
        pass  # the server may have answered before reading the whole request: read the answer
    except OSError as exc:
        # urllib3's reading of macOS's EPROTOTYPE and of a reset while sending: the answer may be there.
        if exc.errno not in (errno.EPROTOTYPE, errno.ECONNRESET):
            raise
    read_timeout = timeout.read_timeout
    if not conn.is_closed:
        if read_timeout == 0:
            raise ReadTimeoutError(pool, target, f"Read timed out. (read timeout={read_timeout})")
        conn.timeout = read_timeout
    try:
        return _answer(conn, pool, method, target)
    except (BaseSSLError, OSError) as exc:
        pool._raise_timeout(err=exc, url=target, timeout_value=read_timeout)
        raise


def _answer(conn: HTTPConnection, pool: HTTPConnectionPool, method: str, target: str) -> StreamedAnswer:
    """urllib3's ``HTTPConnection.getresponse``, with a plain answer left unwrapped."""
    conn._response_options = None  # what urllib3's getresponse consumes; the options are the ones below
    sock = conn.sock
    set_timeout(sock, conn.timeout)  # the read timeout
    shutdown = getattr(sock, "shutdown", None)  # kept before an answer that closes hands the socket over
    raw = http.client.HTTPConnection.getresponse(conn)
    if is_plain(raw):
        return PlainAnswer(raw, conn, pool)
    try:
        assert_header_parsing(raw.msg)
    except (HeaderParsingError, TypeError) as exc:
        _urllib3_log.warning("Failed to parse headers (url=%s): %s", pool.scheme + "://" + str(pool.host), exc)
    response = urllib3.HTTPResponse(
        body=raw, headers=HTTPHeaderDict(_normalize_header_values(raw.msg)), status=raw.status,
        version=raw.version, version_string=getattr(conn, "_http_vsn_str", "HTTP/?"), reason=raw.reason,
        preload_content=False, decode_content=True, original_response=raw, enforce_content_length=True,
        request_method=method, request_url=target, sock_shutdown=shutdown,
    )
    response.retries = NO_RETRY
    response._connection = conn
    response._pool = pool
    return response
